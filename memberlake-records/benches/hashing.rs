//! Hashing core: parse + normalize + MD5 (and SHA-256), in emails per second, on one core and on
//! all cores (rayon), against the ceiling of raw MD5 (SHA-256) over the same, already-normalized
//! strings.
//!
//! `cargo bench -p memberlake-records --bench hashing`. Results: BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use md5::{Digest, Md5};
use memberlake_records::ids::HashScheme;
use memberlake_records::md5x4::md5_many;
use memberlake_records::records::{parse_line, parse_lines, parse_lines_as, Record};
use rayon::prelude::*;
use sha2::Sha256;

/// A realistic list: mixed-length local parts and domains, some upper case, quotes and
/// whitespace, ~1% invalid rows, a few pre-hashed rows.
fn generate(n: usize) -> Vec<Vec<u8>> {
    let domains = ["gmail.com", "example.org", "mail.corp-example.co.uk", "yahoo.fr", "outlook.com", "x.io"];
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let r = next();
            let local_len = 3 + (r % 20) as usize;
            let local: String = (0..local_len).map(|j| (b'a' + ((r >> (j % 50)) % 26) as u8) as char).collect();
            let domain = domains[(r >> 8) as usize % domains.len()];
            match r % 100 {
                0 => b"not-an-email".to_vec(),
                1 => format!("{:032x}", r as u128 * 0x9E3779B97F4A7C15).into_bytes(),
                2..=9 => format!("  {}.{i}@{} ", local.to_uppercase(), domain.to_uppercase()).into_bytes(),
                10..=14 => format!("\"{local}.{i}@{domain}\"").into_bytes(),
                _ => format!("{local}.{i}@{domain}").into_bytes(),
            }
        })
        .collect()
}

fn normalized(lines: &[Vec<u8>]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .filter_map(|l| {
            let t = l.trim_ascii();
            let t = t.strip_prefix(b"\"").and_then(|x| x.strip_suffix(b"\"")).unwrap_or(t);
            let s = std::str::from_utf8(t).ok()?.to_ascii_lowercase();
            s.contains('@').then(|| s.into_bytes())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let lines = generate(200_000);
    let norm = normalized(&lines);
    let mut g = c.benchmark_group("hashing");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.sample_size(20);
    g.bench_function("parse_normalize_md5/1-core", |b| {
        b.iter(|| {
            let mut members = 0usize;
            for l in &lines {
                if let Record::Member(h) = parse_line(black_box(l), false) {
                    members += h.as_bytes()[0] as usize & 1;
                }
            }
            members
        })
    });
    let items: Vec<(u64, &[u8])> = lines.iter().enumerate().map(|(i, l)| (i as u64 + 1, l.as_slice())).collect();
    g.bench_function("parse_normalize_md5x4_batched/1-core", |b| b.iter(|| parse_lines(black_box(&items)).len()));
    g.bench_function("parse_normalize_md5x4_batched/all-cores", |b| {
        b.iter(|| items.par_chunks(4096).map(|c| parse_lines(black_box(c)).len()).sum::<usize>())
    });
    g.bench_function("parse_normalize_md5/all-cores", |b| {
        b.iter(|| {
            lines
                .par_iter()
                .with_min_len(2048)
                .map(|l| match parse_line(black_box(l), false) {
                    Record::Member(h) => h.as_bytes()[0] as usize & 1,
                    _ => 0,
                })
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Elements(norm.len() as u64));
    g.bench_function("ceiling_raw_md5/1-core", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for s in &norm {
                acc ^= Md5::digest(black_box(s))[0];
            }
            acc
        })
    });
    let refs: Vec<&[u8]> = norm.iter().map(Vec::as_slice).collect();
    g.bench_function("ceiling_raw_md5x4/1-core", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            md5_many(black_box(&refs), &mut out);
            out.len()
        })
    });
    g.bench_function("ceiling_raw_md5/all-cores", |b| {
        b.iter(|| norm.par_iter().with_min_len(2048).map(|s| Md5::digest(black_box(s))[0] as usize).sum::<usize>())
    });
    g.finish();

    // SHA-256 deployments (MEMBERLAKE_HASH=sha256): the same lines, and sha2's raw ceiling over
    // the same normalized strings (sha2 uses the CPU's SHA extensions when it has them).
    let mut g = c.benchmark_group("hashing_sha256");
    g.sample_size(20);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse_normalize_sha256/1-core", |b| {
        b.iter(|| parse_lines_as(black_box(&items), HashScheme::Sha256).len())
    });
    g.throughput(Throughput::Elements(norm.len() as u64));
    g.bench_function("ceiling_raw_sha256/1-core", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for s in &norm {
                acc ^= Sha256::digest(black_box(s))[0];
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
