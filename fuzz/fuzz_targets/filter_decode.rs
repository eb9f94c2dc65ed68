//! A membership filter from any bytes: decoding never panics, and a filter it accepts never
//! panics when probed. The input's first byte picks the format (even: v2, odd: v1), the rest is
//! the object after its magic, without its binding (v2) and checksum, which are added here (a
//! checksum is easy to forge, so the decoder's bounds checks are what keeps probes in bounds).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memberlake_records::filter::{FilterBinding, MemberFilter};
use memberlake_records::ids::EmailHash;

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The key the fuzzed filters are bound to.
const KEY: &str = "versions/fuzz/1/filter/00000.fuse";

fuzz_target!(|input: &[u8]| {
    let Some((&format, data)) = input.split_first() else { return };
    let mut bytes = Vec::with_capacity(data.len() + 24);
    if format % 2 == 0 {
        // v2: the binding at offset 48 (40 bytes into the header after the magic).
        let cut = data.len().min(40);
        bytes.extend_from_slice(b"MLFUSE\0\x02");
        bytes.extend_from_slice(&data[..cut]);
        if cut == 40 {
            bytes.extend_from_slice(&fnv1a64(KEY.as_bytes()).to_le_bytes());
        }
        bytes.extend_from_slice(&data[cut..]);
    } else {
        bytes.extend_from_slice(b"MLFUSE\0\x01");
        bytes.extend_from_slice(data);
    }
    let checksum = fnv1a64(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    if let Ok(filter) = MemberFilter::decode(&bytes, 16, FilterBinding::of_key(KEY)) {
        for i in 0..64u64 {
            let mut h = [0u8; 16];
            h[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            h[8..].copy_from_slice(&fnv1a64(data).wrapping_add(i).to_le_bytes());
            let _ = filter.contains(&EmailHash::md5(h));
        }
        let _ = filter.memory_bytes();
    }
});
