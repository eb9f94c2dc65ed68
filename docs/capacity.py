#!/usr/bin/env python3
"""Capacity plan for memberlake: reproduces the table in docs/capacity.md.

    python3 docs/capacity.py            (edit MEASURED / ASSUMED below, or pass --json)

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
}


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

    replicated_writes = ingest_rate * a["replication_factor"]
    writes_per_core = a["scylla_writes_per_core_s"] * m["store_batch_gain"]
    scylla_cores = replicated_writes / (writes_per_core * a["scylla_write_headroom"])
    scylla_nodes = max(a["replication_factor"], math.ceil(scylla_cores / a["scylla_cores_per_node"]))

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


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", help="JSON object overriding MEASURED/ASSUMED keys")
    args = p.parse_args()
    m, a = dict(MEASURED), dict(ASSUMED)
    for k, v in (json.loads(args.json) if args.json else {}).items():
        (m if k in m else a)[k] = v
    print("| item | basis | capacity |")
    print("|---|---|---|")
    for row in plan(m, a):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
