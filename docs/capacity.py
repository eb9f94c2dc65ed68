#!/usr/bin/env python3
"""Capacity plan for memberlake: reproduces the tables in docs/capacity.md.

    python3 docs/capacity.py            (edit MEASURED / ASSUMED below, or pass --json)

The first table is the full-rewrite plan (every daily re-upload writes every row); the second
puts it next to change-proportional versions (docs/versions.md, issue 16: a re-upload writes
only what changed) at the daily churn rates in ASSUMED["daily_churn"].

Measured figures come from BENCHMARKS.md (this repository's 2-core machine, with the store and
the load generator on the same cores). Assumed figures are the ones no single-machine run can
give (a production ScyllaDB cluster's per-core write rate); each is named and can be changed.
"""
import argparse
import json
import math

MEASURED = {
    # BENCHMARKS.md § Hashing core: parse + normalize + multi-buffer MD5 (batched), one core.
    "hash_emails_per_core_s": 7.81e6,
    # BENCHMARKS.md § Matcher (b): cached lookups per second on 2 cores, load generator included.
    "matcher_cached_rps_per_2_cores": 73_217,
    # BENCHMARKS.md § Matcher (d): uncached lookups, store-bound, Cassandra on the same 2 cores.
    "matcher_uncached_rps_per_2_cores": 16_337,
    # BENCHMARKS.md § Ingestion, replica-grouped batches (2026-11-26): rows per worker
    # CPU-second (read + parse + hash + driver), the lower of the two pipeline runs on the
    # 5M-row list (2 workers; 980K with 1). Single-row requests did 58K (the 2.3 GB list):
    # the driver's per-request path was most of a worker's CPU.
    "worker_rows_per_cpu_s": 909_091,
    # BENCHMARKS.md § Ingestion, replica-grouped batches: rows per CQL-node CPU-second with
    # 64-row UNLOGGED batches over single-row inserts, same node, same run (57,471 / 30,303):
    # most of the node's cost is per request. Scales the per-core write assumption below.
    "store_batch_gain": 1.90,
    # BENCHMARKS.md § Ingestion, replica-grouped batches: one worker's rows/s (16 batches of 64 in
    # flight) against the local node, store-bound: what one worker's write window carries. A
    # floor (the node shared the worker's cores); it bounds rows/s per worker pod.
    "worker_rows_s": 102_904,
    # (Not an input, a cross-check of the ScyllaDB assumption below: BENCHMARKS.md § Ingestion,
    # the 2.3 GB list, the local Cassandra node wrote 18.3-19.3K rows per CPU-second, RF 1,
    # commitlog and compaction included; ScyllaDB does more per core than Cassandra.)
    # BENCHMARKS.md § Ingestion (a): the local Cassandra node's ceiling on 2 shared cores.
    "local_store_ceiling_rows_s": 58_852,
    # BENCHMARKS.md § Change-proportional versions (issue 16): store mutations of a refresh of a
    # 1M-row list, retirement of its predecessor included, counted by the CQL node itself
    # (system_views.local_write_latency), per changed member (added + removed): 1.50 at 1 % and
    # at 5 % churn (30,000 for 20,000 changed; 150,000 for 100,000). An added member costs 1
    # (its row), a removed one 2 (its "absent" row, then the range delete that retires it with
    # its predecessor's row), so 1.5 holds while as many are added as removed; between 1 and 2
    # otherwise (docs/versions.md § Costs).
    "store_writes_per_changed_member": 1.50,
    # Same runs: rows of a refreshed list per worker CPU-second, the whole step (ranged reads,
    # parse, hash, sorted runs, manifest merge and diff, the change written, the predecessor
    # retired): 1M rows in at most 0.6 worker CPU-seconds at 5 % churn (0.5-0.6 s in two runs;
    # 0.3-0.4 s at 1 %; /proc ticks, read to 0.1 s). Every row is still read and hashed,
    # whatever changed.
    "worker_refresh_rows_per_cpu_s": 1_666_667,
}

ASSUMED = {
    "avg_line_bytes": 30,               # an email plus newline, as in the generated lists
    "big_file_gb": 100,
    "sla_hours": 2.0,                   # a file queryable within 2 h of upload
    "advertisers": 10_000,
    "avg_list_rows": 1_000_000,         # per advertiser
    "uploads_per_advertiser_per_day": 1,
    "peak_factor": 3.0,                 # peak upload rate over the daily average
    "replication_factor": 3,
    # ScyllaDB replicated writes per core for 16-byte-key rows sent one per request (vendor
    # figures are 10-30k/core; take the low-middle); batches multiply it by store_batch_gain.
    # The local Cassandra-on-2-shared-cores figure is far below this.
    "scylla_writes_per_core_s": 15_000,
    "scylla_cores_per_node": 16,
    "scylla_write_headroom": 0.6,       # run nodes at 60% of their write capacity
    "worker_cpu_utilization": 0.7,      # run workers at 70% CPU (the HPA target)
    "worker_cores_per_pod": 2,
    "matcher_target_rps": 10_000,
    "matcher_headroom": 3.0,            # serve 3x the target (bursts, a zone down)
    "matcher_cache_hit_ratio": 0.8,
    "matcher_min_replicas": 3,
    "matcher_cores_per_pod": 2,
    # Change-proportional model: a daily refresh removes this share of a list's members and adds
    # as many new ones (so 2x this share of the list changes). Not measured here: an assumption
    # about advertisers' lists (docs/versions.md: "a few percent"); the plan is given at each.
    "daily_churn": [0.01, 0.05],
    # The 100 GB file of the SLA is taken to be a new list (a first version: every row written).
    # A re-upload of an existing 100 GB list would cost its change only.
}


def scylla(write_rate, m, a):
    """Cores and nodes (at least RF) for `write_rate` rows/s written by the workers."""
    replicated = write_rate * a["replication_factor"]
    per_core = a["scylla_writes_per_core_s"] * m["store_batch_gain"]
    cores = replicated / (per_core * a["scylla_write_headroom"])
    return replicated, cores, max(a["replication_factor"], math.ceil(cores / a["scylla_cores_per_node"]))


def plan(m, a):
    rows_big = a["big_file_gb"] * 1e9 / a["avg_line_bytes"]
    big_rate = rows_big / (a["sla_hours"] * 3600)
    daily_rows = a["advertisers"] * a["avg_list_rows"] * a["uploads_per_advertiser_per_day"]
    steady_rate = daily_rows / 86400 * a["peak_factor"]
    ingest_rate = big_rate + steady_rate

    hash_cores = ingest_rate / m["hash_emails_per_core_s"]
    worker_cores = ingest_rate / (m["worker_rows_per_cpu_s"] * a["worker_cpu_utilization"])
    # A pod needs the CPU, and its write window carries at most worker_rows_s.
    worker_pods = max(math.ceil(worker_cores / a["worker_cores_per_pod"]), math.ceil(ingest_rate / m["worker_rows_s"]))

    replicated_writes, scylla_cores, scylla_nodes = scylla(ingest_rate, m, a)
    writes_per_core = a["scylla_writes_per_core_s"] * m["store_batch_gain"]

    rps = a["matcher_target_rps"] * a["matcher_headroom"]
    cached_per_core = m["matcher_cached_rps_per_2_cores"] / 2
    matcher_cores = rps / cached_per_core
    matcher_pods = max(a["matcher_min_replicas"], math.ceil(matcher_cores / a["matcher_cores_per_pod"]))
    store_reads = rps * (1 - a["matcher_cache_hit_ratio"])

    return [
        ("100 GB file", f"{rows_big / 1e9:.1f} B rows", f"{big_rate / 1e3:.0f}K rows/s to finish in {a['sla_hours']:.0f} h"),
        ("10k advertisers re-uploading", f"{daily_rows / 1e9:.0f} B rows/day", f"{steady_rate / 1e3:.0f}K rows/s at {a['peak_factor']:.0f}x peak"),
        ("ingest rate to provision", "", f"{ingest_rate / 1e3:.0f}K rows/s"),
        ("hashing (parse + normalize + MD5)", f"{m['hash_emails_per_core_s'] / 1e6:.1f}M emails/s/core (measured)", f"{hash_cores:.2f} cores"),
        ("compute-worker", f"{m['worker_rows_per_cpu_s'] / 1e3:.0f}K rows per CPU-second (measured; hashing included), {a['worker_cpu_utilization']:.0%} CPU", f"{worker_cores:.1f} cores; {worker_pods} pods x {a['worker_cores_per_pod']} cores (each window carries {m['worker_rows_s'] / 1e3:.0f}K rows/s, measured)"),
        ("ScyllaDB", f"RF {a['replication_factor']}: {replicated_writes / 1e6:.2f}M replica writes/s at {writes_per_core / 1e3:.1f}K/core ({a['scylla_writes_per_core_s'] / 1e3:.0f}K single-row x {m['store_batch_gain']:.2f} batched, measured gain), {a['scylla_write_headroom']:.0%} load", f"{scylla_cores:.0f} cores = {scylla_nodes} nodes x {a['scylla_cores_per_node']} cores"),
        ("matcher-api", f"{rps / 1e3:.0f}K RPS ({a['matcher_headroom']:.0f}x of {a['matcher_target_rps'] / 1e3:.0f}K) at {cached_per_core / 1e3:.0f}K cached RPS/core (measured)", f"{matcher_cores:.1f} cores = {matcher_pods} pods x {a['matcher_cores_per_pod']} cores"),
        ("matcher store reads", f"{1 - a['matcher_cache_hit_ratio']:.0%} misses", f"{store_reads / 1e3:.0f}K partition reads/s (small next to the writes)"),
    ]


def churn_plan(m, a):
    """Daily refreshes, full rewrite vs change-proportional: store writes, ScyllaDB nodes and
    compute-worker pods, alone and with the 100 GB file of the SLA (a new list, written in full)."""
    rows_big = a["big_file_gb"] * 1e9 / a["avg_line_bytes"]
    big_rate = rows_big / (a["sla_hours"] * 3600)
    daily_rows = a["advertisers"] * a["avg_list_rows"] * a["uploads_per_advertiser_per_day"]
    per_s = a["peak_factor"] / 86400
    refresh_rows_rate = daily_rows * per_s  # rows read and hashed, whatever the model
    full_rows_per_cpu, refresh_rows_per_cpu = m["worker_rows_per_cpu_s"], m["worker_refresh_rows_per_cpu_s"]
    # (name, basis, store writes a day, of which through the workers' write windows, worker rows per CPU-s)
    models = [
        ("full rewrite (the plan above)", "every row of every list, once a day (its retirement not counted, as above)",
         daily_rows, daily_rows, full_rows_per_cpu),
        ("full rewrite, with its retirement", "every row written, and the replaced version's rows deleted by the splitter's "
         "token-ring pass (at the batched write rate; the pass's full-table read not counted)",
         2 * daily_rows, daily_rows, full_rows_per_cpu),
    ]
    for c in a["daily_churn"]:
        writes = daily_rows * 2 * c * m["store_writes_per_changed_member"]
        models.append((
            f"change-proportional, {c:.0%} churn",
            f"{2 * c:.0%} of each list changes ({c:.0%} removed, {c:.0%} added) x "
            f"{m['store_writes_per_changed_member']:.2f} mutations per changed member (measured), retirement included",
            writes, writes, refresh_rows_per_cpu,
        ))
    rows = []
    for name, basis, daily_writes, window_writes, rows_per_cpu in models:
        refresh_rate = daily_writes * per_s
        _, cores_alone, nodes_alone = scylla(refresh_rate, m, a)
        _, cores, nodes = scylla(refresh_rate + big_rate, m, a)
        # Pods: the CPU (every row read and hashed) and what the write windows carry.
        cpu = (refresh_rows_rate / rows_per_cpu + big_rate / full_rows_per_cpu) / a["worker_cpu_utilization"]
        pods = max(math.ceil(cpu / a["worker_cores_per_pod"]), math.ceil((window_writes * per_s + big_rate) / m["worker_rows_s"]))
        rows.append((
            name, basis, f"{daily_writes / 1e9:.2f} B", f"{refresh_rate / 1e3:.1f}K",
            f"{cores_alone:.0f} cores = {nodes_alone} nodes", f"{(refresh_rate + big_rate) / 1e3:.0f}K",
            f"{cores:.0f} cores = **{nodes} nodes**", f"{cpu:.1f} cores; {pods} pods",
        ))
    return rows


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", help="JSON object overriding MEASURED/ASSUMED keys")
    args = p.parse_args()
    m, a = dict(MEASURED), dict(ASSUMED)
    for k, v in (json.loads(args.json) if args.json else {}).items():
        (m if k in m else a)[k] = v
    table(("item", "basis", "capacity"), plan(m, a))
    print()
    table(
        ("daily refreshes", "store writes per refresh", "writes a day", "store rows/s at peak", "ScyllaDB, the refreshes alone",
         "with the 100 GB file", "ScyllaDB, with the 100 GB file", "compute-workers, with the 100 GB file"),
        churn_plan(m, a),
    )

if __name__ == "__main__":
    main()
