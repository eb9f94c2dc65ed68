//! The ingestion pipeline end to end, with real processes: lake → catalog → workers → store →
//! matcher, including killed workers and leaders, list replacement and bad input.

use memberlake::catalog::{FileRecord, FileState};
use std::time::Duration;

use memberlake::ids::EmailHash;
use memberlake_tests::*;

const FINISH: Duration = Duration::from_secs(120);

/// A list of `members` emails in assorted shapes, with `invalid` bad rows and some blank lines.
fn messy_list(members: &[String], invalid: usize) -> Vec<u8> {
    let mut out = b"Email\r\n".to_vec();
    let mut bad = 0;
    for (i, e) in members.iter().enumerate() {
        let line = match i % 5 {
            0 => format!("{e}\n"),
            1 => format!("  {}  \r\n", e.to_uppercase()),
            2 => format!("\"{e}\"\n"),
            3 => format!("{}\n", hex_of(&md5_email(e))),
            _ => format!("{e}\r\n"),
        };
        out.extend_from_slice(line.as_bytes());
        if i % 997 == 0 {
            out.extend_from_slice(b"\n   \n");
        }
        if bad < invalid && i % (members.len() / invalid.max(1)).max(1) == 0 {
            out.extend_from_slice(b"not-an-email\n");
            bad += 1;
        }
    }
    while bad < invalid {
        out.extend_from_slice(b"still@not@valid\n");
        bad += 1;
    }
    out
}

/// The CQL node's own log (Cassandra's `system.log` under the stack directory) holds no
/// batch-size warning. A ScyllaDB node logs to the journal: not checked there.
fn assert_no_batch_size_warning(world: &TestWorld) {
    let stack_dir = std::path::PathBuf::from(env("MEMBERLAKE_STACK_DIR"));
    let log = stack_dir.join("cassandra/logs/system.log");
    if stack_dir.join("scylla").exists() && !log.exists() {
        return;
    }
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("reading {}: {e}", log.display()));
    assert!(text.len() > 1000, "the node's log is empty");
    let keyspace = &world.keyspace;
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Batch for") || l.contains("exceeding specified threshold"))
        .filter(|l| l.contains(keyspace.as_str()))
        .collect();
    assert!(warnings.is_empty(), "batch-size warnings in {} (keyspace {keyspace}): {warnings:#?}", log.display());
}

fn hex_of(h: &EmailHash) -> String {
    h.to_hex().to_uppercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_100k_members_two_workers_on_s3() {
    let world = TestWorld::new_s3().await;
    let members = emails(0, 100_000);
    let data = messy_list(&members, 37);
    let range_size = 48 * 1024;
    let expected_ranges = (data.len() as u64).div_ceil(range_size);
    assert!(expected_ranges >= 50, "{expected_ranges} ranges");
    let pipeline = world.start_pipeline(&range_size.to_string(), 2).await;
    let key = world.upload("acme", "members.csv", data).await;

    let file = world.wait_finished(&key, FINISH).await;
    assert_eq!(file.state, FileState::Ingested, "{file:?}");
    assert!(file.active);
    assert_eq!(file.ranges_total as u64, expected_ranges);
    assert_eq!(file.ranges_done, file.ranges_total);
    assert_eq!(file.rows_ingested, 100_000);
    assert_eq!(file.rows_rejected, 37);
    let owners = sql_i64(&world.catalog, "SELECT count(DISTINCT lease_owner) FROM ranges").await;
    assert_eq!(owners, 2, "both workers took ranges");

    let hashes: Vec<EmailHash> = members.iter().map(|e| md5_email(e)).collect();
    assert_eq!(stored_members(&world.store, "acme", file.file_id, &hashes).await, 100_000);
    assert_eq!(world.count_rows().await, 100_000, "exactly one row per member");

    let client = reqwest::Client::new();
    for h in hashes.iter().step_by(200) {
        assert!(is_member(&client, &pipeline.matcher_url, "acme", *h).await);
        assert!(!is_member(&client, &pipeline.matcher_url, "globex", *h).await);
    }
    for e in emails(500_000, 200) {
        assert!(!is_member(&client, &pipeline.matcher_url, "acme", md5_email(&e)).await);
    }
    // No service logged any member in plaintext.
    assert_logs_free_of(&pipeline.logs(), &members);
    // The workers wrote in batches (well under one request per row), none of them over the
    // node's batch-size warning threshold.
    let mut worker_rows = 0.0;
    let mut worker_batches = 0.0;
    for w in &pipeline.workers {
        let (_, m) = w.get("/metrics").await.unwrap();
        worker_rows += metric_value(&m, "memberlake_store_rows_written_total");
        worker_batches += metric_value(&m, "memberlake_store_batches_written_total");
    }
    assert!(worker_rows >= 100_000.0, "{worker_rows}");
    assert!(
        worker_batches > 0.0 && worker_batches < worker_rows / 4.0,
        "{worker_batches} batches for {worker_rows} rows"
    );
    assert_no_batch_size_warning(&world);
    let samples = world.catalog.rejection_samples(file.file_id).await.unwrap();
    assert!(!samples.is_empty());
    assert!(samples.iter().all(|s| matches!(
        s.reason,
        memberlake::records::RejectReason::MissingAt | memberlake::records::RejectReason::MultipleAt
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_range_is_retried_after_lease_expiry() {
    let world = TestWorld::new().await;
    let members = emails(0, 60_000);
    let data: Vec<u8> = members.iter().flat_map(|e| format!("{e}\n").into_bytes()).collect();
    let _meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "256KiB")]);
    // A deliberately slow writer (single rows, two in flight), so that it is killed in the middle
    // of a merge unit, the unit that writes rows: hashing a range into runs is over in moments.
    let slow_env = [("MEMBERLAKE_WRITE_CONCURRENCY", "2"), ("MEMBERLAKE_WRITE_BATCH_ROWS", "1")];
    let mut slow = world.spawn("compute-worker", "worker-slow", &slow_env);
    let key = world.upload("acme", "members.csv", data).await;

    wait_for(Duration::from_secs(30), "the slow worker to hold a merge lease", || async {
        let n = sql_i64(
            &world.catalog,
            "SELECT count(*) FROM ranges WHERE state = 'leased' AND lease_owner = 'worker-slow' AND stage = 'merge'",
        )
        .await;
        (n > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.kill9().await;
    let _healthy = world.spawn("compute-worker", "worker-healthy", &[]);

    let file = world.wait_finished(&key, FINISH).await;
    assert_eq!(file.state, FileState::Ingested, "{file:?}");
    assert_eq!(file.rows_ingested, 60_000);
    assert_eq!(file.rows_rejected, 0);
    let retried =
        sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE attempts >= 2 AND lease_owner = 'worker-healthy'")
            .await;
    assert!(retried >= 1, "the killed worker's range was re-leased");
    let hashes: Vec<EmailHash> = members.iter().map(|e| md5_email(e)).collect();
    assert_eq!(stored_members(&world.store, "acme", file.file_id, &hashes).await, 60_000);
    assert_eq!(world.count_rows().await, 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_splitters_one_leader_and_failover_after_kill() {
    let world = TestWorld::new().await;
    let admin =
        |n: &str| world.spawn("meta-service", n, &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _meta = [admin("meta-a"), admin("meta-b")];
    let mut splitters = vec![
        world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "64KiB")]),
        world.spawn("splitter", "splitter-b", &[("MEMBERLAKE_RANGE_SIZE", "64KiB")]),
    ];
    let _worker = world.spawn("compute-worker", "worker-0", &[]);

    let first = emails(0, 20_000);
    let key1 = world
        .upload("acme", "v1.csv", first.iter().flat_map(|e| format!("{e}\n").into_bytes()).collect::<Vec<u8>>())
        .await;
    let f1 = world.wait_finished(&key1, FINISH).await;
    assert_eq!(f1.state, FileState::Ingested);
    let (leader, term) = world.catalog.leader("splitter").await.unwrap().map(|l| (l.holder, l.term)).expect("a leader");
    assert!(leader == "splitter-a" || leader == "splitter-b");
    // Exactly one leader over a few ticks: the other process reports standby.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut leaders = 0;
    for s in &splitters {
        let (_, m) = s.get("/metrics").await.unwrap();
        leaders += metric_value(&m, "memberlake_splitter_is_leader") as i32;
    }
    assert_eq!(leaders, 1);

    let idx = if leader == "splitter-a" { 0 } else { 1 };
    splitters[idx].kill9().await;
    let killed_at = std::time::Instant::now();
    let second = emails(100_000, 20_000);
    let key2 = world
        .upload("globex", "v1.csv", second.iter().flat_map(|e| format!("{e}\n").into_bytes()).collect::<Vec<u8>>())
        .await;
    let (new_leader, new_term) = wait_for(Duration::from_secs(15), "a new leader", || async {
        world.catalog.leader("splitter").await.unwrap().map(|l| (l.holder, l.term)).filter(|(h, _)| *h != leader)
    })
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(3 + 3), "takeover within the lease TTL");
    assert!(new_term > term, "a takeover bumps the term");
    assert_ne!(new_leader, leader);
    let f2 = world.wait_finished(&key2, FINISH).await;
    assert_eq!(f2.state, FileState::Ingested);
    assert_eq!(f2.rows_ingested, 20_000);

    // Two meta-services polled the same lake: each object registered once, ranges once.
    assert_eq!(sql_i64(&world.catalog, "SELECT count(*) FROM files").await, 2);
    let ranges = sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE stage = 'ingest'").await;
    let planned = sql_i64(&world.catalog, "SELECT sum(ranges_total)::bigint FROM files").await;
    assert_eq!(ranges, planned);
    assert_eq!(world.count_rows().await, 40_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_replacement_is_atomic_and_the_old_version_is_retired() {
    let world = TestWorld::new().await;
    let _meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "32KiB")]);
    let (_matcher, url) = world.start_matcher(&[]).await;
    let client = reqwest::Client::new();
    let only_v1 = emails(0, 3_000);
    let both = emails(3_000, 3_000);
    let only_v2 = emails(6_000, 3_000);
    let list = |parts: &[&Vec<String>]| -> Vec<u8> {
        parts.iter().flat_map(|p| p.iter()).flat_map(|e| format!("{e}\n").into_bytes()).collect()
    };

    let mut worker = world.spawn("compute-worker", "worker-0", &[]);
    let key1 = world.upload("acme", "list-v1.csv", list(&[&only_v1, &both])).await;
    let v1 = world.wait_finished(&key1, FINISH).await;
    assert!(v1.active && v1.rows_ingested == 6_000);
    let member = |e: &String| is_member(&client, &url, "acme", md5_email(e));
    wait_for(Duration::from_secs(5), "v1 visible", || async { member(&only_v1[0]).await.then_some(()) }).await;

    // v2 is uploaded while no worker runs: it is registered and split, but not complete.
    worker.terminate().await;
    let key2 = world.upload("acme", "list-v2.csv", list(&[&both, &only_v2])).await;
    wait_for(Duration::from_secs(20), "v2 split", || async {
        world.files().await.into_iter().find(|f| f.object_key.ends_with(&key2) && f.state == FileState::Ingesting)
    })
    .await;
    for e in only_v1.iter().step_by(300).chain(both.iter().step_by(300)) {
        assert!(member(e).await, "v1 keeps answering until v2 completes");
    }
    for e in only_v2.iter().step_by(300) {
        assert!(!member(e).await, "v2 members do not match before activation");
    }

    let _worker = world.spawn("compute-worker", "worker-1", &[]);
    let v2 = world.wait_finished(&key2, FINISH).await;
    assert!(v2.active && v2.rows_ingested == 6_000, "{v2:?}");
    // The matcher learns the activation within its refresh interval.
    wait_for(Duration::from_secs(5), "v2 visible", || async { (!member(&only_v1[0]).await).then_some(()) }).await;
    for e in only_v1.iter().step_by(150) {
        assert!(!member(e).await, "members absent from v2 stop matching");
    }
    for e in both.iter().chain(only_v2.iter()).step_by(150) {
        assert!(member(e).await);
    }

    // v1's rows are retired from the store, and nothing of v2's.
    let retired = wait_for(Duration::from_secs(30), "v1 retired", || async {
        Some(world.file(v1.file_id).await).filter(|f| f.retired_at.is_some())
    })
    .await;
    assert_eq!(retired.state, FileState::Ingested);
    assert!(!retired.active);
    assert_eq!(world.count_rows().await, 6_000, "only v2's rows remain");
    let v2_hashes: Vec<_> = both.iter().chain(only_v2.iter()).map(|e| md5_email(e)).collect();
    assert_eq!(stored_members(&world.store, "acme", v2.file_id, &v2_hashes).await, 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_reported_and_nothing_else_is_lost() {
    use memberlake::records::RejectReason::*;
    let world = TestWorld::new().await;
    let range = 64 * 1024u64;
    let pipeline = world.start_pipeline(&range.to_string(), 1).await;

    // 1. Everything odd at once. Members: 6 (a duplicate hash is still a row). Rejected: 5.
    let mut odd = b"\xEF\xBB\xBFemail\r\n".to_vec();
    odd.extend_from_slice(b"Alice@Example.com\r\n"); // member
    odd.extend_from_slice(b"\"bob@example.com\"\n"); // member (quoted)
    odd.extend_from_slice(b"C160F8CC69A4F0BF2B0362752353D060\n"); // member (pre-hashed alice: duplicate hash)
    odd.extend_from_slice(b"\n  \n"); // blank: skipped
    odd.extend_from_slice(b"no-at-sign\n"); // rejected: missing_at
    odd.extend_from_slice(b"caf\xE9@example.com\n"); // rejected: not_utf8 (latin-1 byte)
    odd.extend_from_slice(b"a@b@c\n"); // rejected: multiple_at
    odd.extend_from_slice(b"@example.com\n"); // rejected: empty_local_part
    odd.extend_from_slice("jörg@bücher.de\n".as_bytes()); // member (UTF-8)
    let long_line_at = odd.len() as u64;
    odd.extend(std::iter::repeat_n(b'x', 10 << 20)); // rejected: 10 MB line, no newline...
    odd.extend_from_slice(b"\nlast@example.com\n"); // ...then a member
    odd.extend_from_slice(b"final@example.com"); // member, no trailing newline
    let key = world.upload("odd", "odd.csv", odd).await;
    let f = world.wait_finished(&key, FINISH).await;
    assert_eq!(f.state, FileState::Ingested, "{f:?}");
    assert_eq!((f.rows_ingested, f.rows_rejected), (6, 5), "{f:?}");
    let samples = world.catalog.rejection_samples(f.file_id).await.unwrap();
    let reasons: Vec<_> = samples.iter().map(|s| s.reason).collect();
    assert_eq!(reasons, vec![MissingAt, NotUtf8, MultipleAt, EmptyLocalPart, LineTooLong]);
    assert_eq!(samples[4].offset, long_line_at);
    // The worker counts them by reason (memberlake_worker_rows_rejected_total{reason}; a range
    // redone after a lost lease counts its rows again, hence at least once).
    let (_, m) = pipeline.workers[0].get("/metrics").await.unwrap();
    for reason in [MissingAt, NotUtf8, MultipleAt, EmptyLocalPart, LineTooLong] {
        let series = format!("memberlake_worker_rows_rejected_total{{reason=\"{}\"}} ", reason.as_str());
        let count = m.lines().find_map(|l| l.strip_prefix(&series)?.parse::<f64>().ok());
        assert!(count >= Some(1.0), "{series}in:\n{m}");
    }
    assert!(!m.contains("reason=\"empty_domain\""), "no row was rejected for an empty domain");
    for e in ["alice@example.com", "bob@example.com", "jörg@bücher.de", "last@example.com", "final@example.com"] {
        assert_eq!(stored_members(&world.store, "odd", f.file_id, &[md5_email(e)]).await, 1, "{e}");
    }

    // 2. An empty file: ingested, zero rows, active (an empty list is a valid snapshot).
    let key = world.upload("empty", "empty.csv", Vec::new()).await;
    let f = world.wait_finished(&key, FINISH).await;
    assert_eq!((f.state.as_str(), f.ranges_total, f.rows_ingested, f.active), ("ingested", 0, 0, true));

    // 3. A file whose size is an exact multiple of the range size: no record lost at the seams.
    let mut exact = Vec::new();
    let mut n = 0;
    while exact.len() < 3 * range as usize {
        let line = format!("m{n}@exact.example\n");
        if exact.len() + line.len() > 3 * range as usize {
            let pad = 3 * range as usize - exact.len() - 1;
            exact.extend(std::iter::repeat_n(b' ', pad));
            exact.push(b'\n');
            break;
        }
        exact.extend_from_slice(line.as_bytes());
        n += 1;
    }
    assert_eq!(exact.len() as u64, 3 * range);
    let key = world.upload("exact", "exact.csv", exact).await;
    let f = world.wait_finished(&key, FINISH).await;
    assert_eq!((f.state.as_str(), f.ranges_total, f.rows_ingested, f.rows_rejected), ("ingested", 3, n, 0));

    // 4. A gzip file: one range whatever its size; offsets are in decompressed bytes.
    let members = emails(0, 5_000);
    let plain: Vec<u8> = members.iter().flat_map(|e| format!("{e}\n").into_bytes()).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let key = world.upload("gz", "members.csv.gz", gz.finish().unwrap()).await;
    let f = world.wait_finished(&key, FINISH).await;
    assert_eq!((f.state.as_str(), f.ranges_total, f.rows_ingested), ("ingested", 1, 5_000), "{f:?}");
    let hashes: Vec<_> = members.iter().map(|e| md5_email(e)).collect();
    assert_eq!(stored_members(&world.store, "gz", f.file_id, &hashes).await, 5_000);

    // 5. Mostly garbage: the file is held for an operator before it writes a row, and never
    // activates unless approved; rejected, it is cancelled.
    let garbage: Vec<u8> = (0..100)
        .flat_map(|i| if i < 10 { format!("ok{i}@x.io\n") } else { format!("junk{i}\n") }.into_bytes())
        .collect();
    let key = world.upload("garbage", "g.csv", garbage).await;
    let f = wait_for(FINISH, "the garbage file held", || async {
        world.files().await.into_iter().find(|f| f.object_key.ends_with(&key) && f.state == FileState::Held)
    })
    .await;
    assert!(!f.active);
    assert_eq!(f.version.rows_written, 0);
    assert!(f.version.held_reason.as_deref().unwrap().contains("too many rejected rows: 90 of 100"), "{f:?}");
    let knobs = memberlake::catalog::PriorityKnobs {
        per_level: 1.0,
        per_log_weight: 0.0,
        aging_per_second: 0.0,
        per_size_doubling: 0.0,
    };
    let detail = world.catalog.file_detail(f.file_id, &knobs).await.unwrap().unwrap();
    let by_reason: Vec<(String, i64)> = detail.rejected_by_reason.into_iter().map(|r| (r.reason, r.rows)).collect();
    assert_eq!(by_reason, [("missing_at".to_owned(), 90)], "rejected rows by reason");
    let f = world.catalog.reject_file("ops", f.file_id).await.unwrap();
    assert_eq!((f.state, f.active), (FileState::Cancelled, false));

    // Neither the valid nor the rejected rows appear in any log.
    let mut secrets: Vec<String> = [
        "alice@example.com",
        "bob@example.com",
        "jörg@bücher.de",
        "last@example.com",
        "final@example.com",
        "a@b@c",
        "@example.com",
        "no-at-sign",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    secrets.extend(members.iter().cloned());
    assert_logs_free_of(&pipeline.logs(), &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_fails_its_file_with_the_reason() {
    let world = TestWorld::new().await;
    let _meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let _splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let data: Vec<u8> = emails(0, 5_000).iter().flat_map(|e| format!("{e}\n").into_bytes()).collect();
    let key = world.upload("acme", "doomed.csv", data).await;
    wait_for(Duration::from_secs(20), "file split", || async {
        world.files().await.into_iter().find(|f| f.state == FileState::Ingesting)
    })
    .await;
    world.lake.delete(&key).await.unwrap();
    let _worker = world.spawn("compute-worker", "worker-0", &[]);
    let f = world.wait_finished(&key, FINISH).await;
    assert_eq!(f.state, FileState::Failed);
    assert!(!f.active);
    let reason = f.failure_reason.unwrap();
    assert!(reason.contains("not found"), "{reason}");
    let pending = sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE state IN ('queued', 'leased')").await;
    assert_eq!(pending, 0, "a failed file's ranges are not leased again");
}

/// Starts a meta-service and a splitter (16 KiB ranges) but no worker, uploads `n` members for
/// `acme` and waits until the list is cut into ranges; returns the services, the key and the file.
async fn split_list_without_workers(world: &TestWorld, n: usize) -> (Vec<Service>, String, FileRecord) {
    let meta =
        world.spawn("meta-service", "meta-a", &[("MEMBERLAKE_ADMIN_ADDR", &format!("127.0.0.1:{}", free_port()))]);
    let splitter = world.spawn("splitter", "splitter-a", &[("MEMBERLAKE_RANGE_SIZE", "16KiB")]);
    let data: Vec<u8> = emails(0, n).iter().flat_map(|e| format!("{e}\n").into_bytes()).collect();
    let key = world.upload("acme", "members.csv", data).await;
    let split = wait_for(Duration::from_secs(20), "file split", || async {
        world.files().await.into_iter().find(|f| f.state == FileState::Ingesting)
    })
    .await;
    (vec![meta, splitter], key, split)
}

/// A configuration fault of one replica never changes a file's state: a worker started with a
/// wrong `MEMBERLAKE_LAKE_URL` claims nothing (it only ever claims files registered from its
/// own lake), so the list waits for, and is ingested by, the healthy workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_wrong_lake_never_fails_a_file() {
    let world = TestWorld::new().await;
    let (_services, key, split) = split_list_without_workers(&world, 20_000).await;
    assert!(split.ranges_total > 10, "{split:?}");

    // The misconfigured worker alone, polling fast, for long enough to have claimed every range.
    let wrong_lake = world.stack.scratch.join(unique("wrong-lake"));
    std::fs::create_dir_all(&wrong_lake).unwrap();
    let wrong_url = format!("file://{}", wrong_lake.display());
    let mut wrong = world.spawn(
        "compute-worker",
        "wrong-worker",
        &[("MEMBERLAKE_LAKE_URL", &wrong_url), ("MEMBERLAKE_WORKER_POLL_INTERVAL", "20ms")],
    );
    wait_for(Duration::from_secs(20), "the wrong worker's /healthz", || async {
        wrong.get("/healthz").await.ok().filter(|(s, _)| *s == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let detail = world.catalog.file_detail(
        split.file_id,
        &memberlake::catalog::PriorityKnobs {
            per_level: 1000.0,
            per_log_weight: 100.0,
            aging_per_second: 0.2,
            per_size_doubling: 50.0,
        },
    );
    let detail = detail.await.unwrap().unwrap();
    assert_eq!(detail.file.state, FileState::Ingesting, "{detail:?}");
    assert_eq!(
        (detail.ranges.queued, detail.ranges.leased, detail.ranges.failed),
        (i64::from(split.ranges_total), 0, 0),
        "the wrong worker claimed nothing"
    );
    assert!(detail.last_errors.is_empty(), "{:?}", detail.last_errors);

    // A healthy worker beside it ingests the list.
    let _healthy = world.spawn("compute-worker", "worker-0", &[]);
    let f = world.wait_finished(&key, FINISH).await;
    assert_eq!((f.state, f.rows_ingested, f.active), (FileState::Ingested, 20_000, true), "{f:?}");
    let (_, metrics) = wrong.get("/metrics").await.unwrap();
    assert_eq!(metric_value(&metrics, "memberlake_worker_ranges_done_total"), 0.0);
    assert_eq!(metric_value(&metrics, "memberlake_worker_ranges_failed_total"), 0.0);
    // A worker that has done nothing still shows its unlabelled counters, at zero.
    for name in ["memberlake_worker_ranges_done_total", "memberlake_worker_rows_written_total"] {
        assert!(metrics.lines().any(|l| l == format!("{name} 0")), "{name} at zero: {metrics}");
    }
    let owners = sql_i64(&world.catalog, "SELECT count(*) FROM ranges WHERE lease_owner = 'wrong-worker'").await;
    assert_eq!(owners, 0);
    wrong.terminate().await;
}

/// A worker whose lake credentials are refused (403) gives each range back without spending an
/// attempt, so it can never fail a file; a healthy worker ingests the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_refused_credentials_spends_no_attempts() {
    let world = TestWorld::new_s3().await;
    let (_services, key, split) = split_list_without_workers(&world, 5_000).await;

    let secret = "0".repeat(64);
    let mut refused = world.spawn(
        "compute-worker",
        "refused-worker",
        &[("AWS_SECRET_ACCESS_KEY", &secret), ("MEMBERLAKE_WORKER_POLL_INTERVAL", "20ms")],
    );
    // It claims ranges and gives them back, each time without spending the attempt.
    let (_, metrics) = wait_for(Duration::from_secs(30), "the refused worker to give a range back", || async {
        refused
            .get("/metrics")
            .await
            .ok()
            .filter(|(_, m)| metric_value(m, "memberlake_worker_ranges_failed_total") >= 1.0)
    })
    .await;
    assert!(metrics.contains("kind=\"replica_fault\""), "{metrics}");
    assert_eq!(metric_value(&metrics, "memberlake_worker_ranges_done_total"), 0.0);
    let f = world.file(split.file_id).await;
    assert_eq!(f.state, FileState::Ingesting, "{f:?}");
    assert_eq!(
        sql_i64(&world.catalog, "SELECT coalesce(max(attempts), 0)::bigint FROM ranges WHERE state <> 'leased'").await,
        0
    );
    assert!(refused.log_text().contains("credentials"), "the log says what is wrong");

    let _healthy = world.spawn("compute-worker", "worker-0", &[]);
    let f = world.wait_finished(&key, FINISH).await;
    assert_eq!((f.state, f.rows_ingested, f.active), (FileState::Ingested, 5_000, true), "{f:?}");
    refused.terminate().await;
}
