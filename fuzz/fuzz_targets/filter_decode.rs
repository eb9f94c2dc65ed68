//! A membership filter from any bytes: decoding never panics, and a filter it accepts never
//! panics when probed. The input is the object without its checksum, which is added here (a
//! checksum is easy to forge, so the decoder's bounds checks are what keeps probes in bounds).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memberlake_records::filter::MemberFilter;
use memberlake_records::ids::EmailHash;

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"MLFUSE\0\x01".to_vec();
    bytes.extend_from_slice(data);
    let checksum = fnv1a64(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    if let Ok(filter) = MemberFilter::decode(&bytes, 16) {
        for i in 0..64u64 {
            let mut h = [0u8; 16];
            h[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            h[8..].copy_from_slice(&fnv1a64(data).wrapping_add(i).to_le_bytes());
            let _ = filter.contains(&EmailHash::md5(h));
        }
        let _ = filter.memory_bytes();
    }
});
