//! Foundation smoke tests against the real local stack: schemas, the CQL driver, both lakes,
//! and the services' start-up checks.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use memberlake::ids::{AdvertiserId, EmailHash, ListVersion};
use memberlake::lake::{Lake, LakeEntry};
use memberlake::ranges::ByteRange;
use memberlake::schema;
use memberlake::store::{member_at, ChangeOp};
use memberlake_tests::*;

#[tokio::test]
async fn migrations_apply_twice_without_harm() {
    let world = TestWorld::new().await;
    // TestWorld already applied both once; again is a no-op that leaves the check green.
    schema::migrate_postgres(world.catalog.pool()).await.unwrap();
    schema::check_postgres(world.catalog.pool()).await.unwrap();
    let applied = schema::migrate_cql(
        world.store.session(),
        &world.keyspace,
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        memberlake::ids::HashScheme::Md5,
    )
    .await
    .unwrap();
    assert!(applied.is_empty(), "second CQL migration applied {applied:?}");
    schema::check_cql(world.store.session(), &world.keyspace).await.unwrap();
    schema::check_hash_scheme(world.store.session(), &world.keyspace, memberlake::ids::HashScheme::Md5).await.unwrap();
    let refused =
        schema::check_hash_scheme(world.store.session(), &world.keyspace, memberlake::ids::HashScheme::Sha256).await;
    assert!(refused.unwrap_err().to_string().contains("set MEMBERLAKE_HASH=md5"));
    // The migrate command itself, twice, against the same database and keyspace.
    for _ in 0..2 {
        let out = std::process::Command::new(binary("memberlake"))
            .arg("migrate")
            .env("MEMBERLAKE_DATABASE_URL", &world.database_url)
            .env("MEMBERLAKE_SCYLLA_NODES", &world.stack.scylla_nodes)
            .env("MEMBERLAKE_SCYLLA_KEYSPACE", &world.keyspace)
            .output()
            .unwrap();
        assert!(out.status.success(), "migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    }
}

#[tokio::test]
async fn services_refuse_an_unmigrated_or_newer_schema() {
    let stack = Stack::from_env();
    let url = fresh_database(&stack).await;
    let run = |url: &str| {
        std::process::Command::new(binary("splitter"))
            .env("MEMBERLAKE_DATABASE_URL", url)
            .env("MEMBERLAKE_SCYLLA_NODES", &stack.scylla_nodes)
            .env("MEMBERLAKE_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap()
    };
    let out = run(&url);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not migrated") && stderr.contains("memberlake migrate"), "{stderr}");

    // A schema from the future: the service must not run against it.
    let catalog = memberlake::catalog::Catalog::open(&stack.database_args(&url, 1)).await.unwrap();
    let pool = catalog.pool();
    schema::migrate_postgres(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999999, 'from the future', true, '\\x00', 0)",
    )
    .execute(pool)
    .await
    .unwrap();
    let out = run(&url);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("newer than this build"), "{stderr}");
}

#[tokio::test]
async fn cql_change_rows_round_trip_and_answer_the_newest_at_or_below_a_version() {
    let world = TestWorld::new().await;
    let adv = AdvertiserId::parse("acme").unwrap();
    let hashes: Vec<_> = emails(0, 500).iter().map(|e| md5_email(e)).collect();
    let present = ChangeOp::Set { present: true };
    // v7 writes every member, in batches and single rows; v9 removes the first 10.
    world.store.apply_changes(present, &adv, ListVersion(7), &hashes[..300], 8, 64).await.unwrap();
    world.store.apply_changes(present, &adv, ListVersion(7), &hashes[300..], 32, 1).await.unwrap();
    let absent = ChangeOp::Set { present: false };
    world.store.apply_changes(absent, &adv, ListVersion(9), &hashes[..10], 4, 64).await.unwrap();
    let member = |rows: &[memberlake::store::ChangeRow], v: i64| {
        member_at(rows.iter().map(|r| (r.advertiser_id.as_str(), r.since.0, r.present)), "acme", v)
    };
    for (i, h) in hashes[..20].iter().enumerate() {
        let rows = world.store.read_changes(h).await.unwrap();
        assert!(!member(&rows, 6), "not a member before v7");
        assert!(member(&rows, 7) && member(&rows, 8));
        assert_eq!(member(&rows, 9), i >= 10, "v9 removed the first 10");
        assert!(!member_at(rows.iter().map(|r| (r.advertiser_id.as_str(), r.since.0, r.present)), "globex", 9));
    }
    assert_eq!(world.count_rows().await, 510);
    // Retiring through v9 the hashes v9 removed leaves them without a row; undoing v7 of the
    // others removes exactly its rows.
    world.store.apply_changes(ChangeOp::RetireThrough, &adv, ListVersion(9), &hashes[..10], 4, 64).await.unwrap();
    world.store.apply_changes(ChangeOp::Undo, &adv, ListVersion(7), &hashes[10..], 4, 64).await.unwrap();
    assert_eq!(world.count_rows().await, 0);
    let nobody = md5_email("nobody@nowhere.example");
    assert!(world.store.read_changes(&nobody).await.unwrap().is_empty());
}

#[tokio::test]
async fn cql_legacy_rows_round_trip() {
    let world = TestWorld::new().await;
    let adv = AdvertiserId::parse("acme").unwrap();
    let hashes: Vec<_> = emails(0, 50).iter().map(|e| md5_email(e)).collect();
    world.store.insert_legacy_members(&adv, ListVersion(7), &hashes, 8).await.unwrap();
    let rows = world.store.read_legacy_partition(&hashes[0]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].advertiser_id.as_str(), rows[0].list_version), ("acme", ListVersion(7)));
    assert_eq!(world.count_legacy_rows().await, 50);
}

async fn lake_lists_and_range_reads(lake: &Lake) {
    let adv = AdvertiserId::parse("acme").unwrap();
    let key = lake.member_list_key(&adv, "list.csv");
    let body: Vec<u8> = (0..10_000u32).flat_map(|i| format!("{i:05}\n").into_bytes()).collect();
    lake.put(&key, Bytes::from(body.clone())).await.unwrap();
    lake.put(&lake.key("stray/object.txt"), Bytes::from_static(b"x")).await.unwrap();

    let entries: Vec<LakeEntry> = lake.list().try_collect().await.unwrap();
    let members: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            LakeEntry::Member(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(members.len(), 1, "{entries:?}");
    let object = members[0];
    assert_eq!(object.advertiser_id, adv);
    assert_eq!(object.size, body.len() as u64);
    assert!(entries.iter().any(|e| matches!(e, LakeEntry::Ignored { key } if key.ends_with("stray/object.txt"))));

    let window = ByteRange::new(12_345, 23_456);
    let bytes: Vec<Bytes> =
        lake.read(&object.key, &object.etag, Some(window)).await.unwrap().try_collect().await.unwrap();
    let got: Vec<u8> = bytes.concat();
    assert_eq!(got, body[12_345..23_456]);

    // A read naming a stale etag is refused, not served from the new object.
    let err = match lake.read(&object.key, "\"not-the-etag\"", Some(window)).await {
        Ok(s) => s.try_collect::<Vec<_>>().await.expect_err("stale etag refused"),
        Err(e) => e,
    };
    assert!(err.is_permanent(), "{err}");
}

#[tokio::test]
async fn file_lake_lists_and_range_reads() {
    let stack = Stack::from_env();
    let dir = stack.scratch.join(unique("lake"));
    let lake = Lake::open(&format!("file://{}", dir.display())).unwrap();
    lake_lists_and_range_reads(&lake).await;
}

#[tokio::test]
async fn s3_lake_lists_and_range_reads() {
    let stack = Stack::from_env();
    let lake = Lake::open(&format!("{}/{}", stack.s3_lake_url(), unique("smoke"))).unwrap();
    lake_lists_and_range_reads(&lake).await;
}

#[tokio::test]
async fn services_serve_health_ready_and_metrics() {
    let world = TestWorld::new().await;
    let splitter = world.spawn("splitter", "splitter-1", &[]);
    let (status, body) = wait_for(Duration::from_secs(20), "splitter /readyz", || async {
        splitter.get("/readyz").await.ok().filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"postgres\"") && body.contains("\"cql\""), "{body}");
    let (status, _) = splitter.get("/healthz").await.unwrap();
    assert_eq!(status, 200);
    let metrics = wait_for(Duration::from_secs(10), "leader metric", || async {
        let (_, m) = splitter.get("/metrics").await.ok()?;
        (metric_value(&m, "memberlake_splitter_is_leader") == 1.0).then_some(m)
    })
    .await;
    assert!(metrics.contains("memberlake_splitter_is_leader"));
    // The effective configuration is logged at start, with the password masked.
    let log = splitter.log_text();
    assert!(log.contains("MEMBERLAKE_RANGE_SIZE=64MiB (default)"), "{log}");
    assert!(log.contains("MEMBERLAKE_LEADER_TTL=3s (env)"), "{log}");
}

#[test]
fn help_lists_every_variable_with_its_default() {
    for (bin, vars) in [
        (
            "meta-service",
            &[
                "MEMBERLAKE_LAKE_URL",
                "MEMBERLAKE_DATABASE_URL",
                "MEMBERLAKE_ADMIN_ADDR",
                "MEMBERLAKE_ADMIN_TOKENS",
                "MEMBERLAKE_ADMIN_RATE_LIMIT",
                "MEMBERLAKE_ADMIN_MAX_CONCURRENCY",
                "MEMBERLAKE_ADMIN_REQUEST_TIMEOUT",
                "MEMBERLAKE_METRICS_ADDR",
            ][..],
        ),
        (
            "splitter",
            &["MEMBERLAKE_RANGE_SIZE", "MEMBERLAKE_DATABASE_URL", "MEMBERLAKE_SCYLLA_NODES", "MEMBERLAKE_METRICS_ADDR"]
                [..],
        ),
        (
            "compute-worker",
            &["MEMBERLAKE_LAKE_URL", "MEMBERLAKE_SCYLLA_KEYSPACE", "MEMBERLAKE_LEASE_TTL", "MEMBERLAKE_METRICS_ADDR"][..],
        ),
        (
            "matcher-api",
            &[
                "MEMBERLAKE_MATCHER_ADDR",
                "MEMBERLAKE_MATCHER_TOKENS",
                "MEMBERLAKE_SCYLLA_NODES",
                "MEMBERLAKE_MATCHER_RATE_LIMIT",
                "MEMBERLAKE_MATCHER_MAX_CONCURRENCY",
                "MEMBERLAKE_MATCHER_REQUEST_TIMEOUT",
                "MEMBERLAKE_METRICS_ADDR",
            ][..],
        ),
    ] {
        let out = std::process::Command::new(binary(bin))
            .arg("--help")
            .env("MEMBERLAKE_ADMIN_TOKENS", "s3cret")
            .env("MEMBERLAKE_MATCHER_TOKENS", "s3cret")
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for var in vars {
            assert!(help.contains(var), "{bin} --help lacks {var}:\n{help}");
        }
        assert!(help.contains("[default: "), "{bin} --help shows no defaults");
        assert!(!help.contains("s3cret"), "{bin} --help shows a secret");
    }
}

/// A run written to the work location is read back one bucket at a time: one suffix GET for the
/// index, one ranged GET per bucket — on a real S3 server and on a local directory.
async fn work_location_serves_one_bucket_per_ranged_read(work: &memberlake::work::WorkLocation) {
    use memberlake::manifest::{encode_run, Buckets, RunIndex};
    let buckets = Buckets::new(4).unwrap();
    let mut hashes: Vec<EmailHash> = emails(0, 3_000).iter().map(|e| md5_email(e)).collect();
    let expected: std::collections::BTreeSet<EmailHash> = hashes.iter().copied().collect();
    let run = encode_run(&mut hashes, buckets);
    let dir = memberlake::work::VersionDir::new(&AdvertiserId::parse("acme").unwrap(), ListVersion(7));
    work.put(&dir.run(0, 0), run.clone().into()).await.unwrap();

    let tail = work.get_suffix(&dir.run(0, 0), RunIndex::tail_len(buckets)).await.unwrap();
    let index = RunIndex::from_tail(&tail).unwrap();
    assert_eq!(index.object_len(), run.len() as u64);
    let mut seen = std::collections::BTreeSet::new();
    for b in 0..buckets.count() {
        let range = index.bucket_byte_range(b);
        let bytes = work.get_range(&dir.run(0, 0), range.start..range.end).await.unwrap();
        for h in index.bucket_entries(b, &bytes).unwrap() {
            assert_eq!(buckets.bucket_of(h.as_bytes()), b);
            seen.insert(h);
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(work.get(&dir.run(0, 0)).await.unwrap().len(), run.len());
    assert_eq!(work.list(dir.prefix()).await.unwrap(), [dir.run(0, 0)]);
    assert_eq!(work.delete_prefix(dir.prefix()).await.unwrap(), 1);
    assert!(work.list(dir.prefix()).await.unwrap().is_empty());
}

#[tokio::test]
async fn work_location_on_s3() {
    let stack = Stack::from_env();
    let lake = Lake::open(&format!("{}/{}", stack.s3_lake_url(), unique("lake"))).unwrap();
    let work_url = format!("{}/{}", stack.s3_lake_url(), unique("work"));
    let work = memberlake::work::WorkLocation::open(Some(&work_url), &lake).unwrap();
    work_location_serves_one_bucket_per_ranged_read(&work).await;
}

#[tokio::test]
async fn work_location_beside_a_file_lake() {
    let stack = Stack::from_env();
    let dir = stack.scratch.join(unique("beside"));
    let lake = Lake::open(&format!("file://{}/lake", dir.display())).unwrap();
    let work = memberlake::work::WorkLocation::open(None, &lake).unwrap();
    assert_eq!(work.url(), format!("file://{}/work", dir.display()));
    work_location_serves_one_bucket_per_ranged_read(&work).await;
}
