//! Multi-buffer MD5: four single-block messages hashed at once in the four 32-bit lanes of SSE2
//! registers (x86-64 always has SSE2). A normalized email fits one MD5 block when it is at most
//! 55 bytes, which nearly all are; longer ones go through the scalar `md-5`.
//!
//! MD5 is a chain of dependent 32-bit operations, so one message leaves most of a core's
//! execution units idle; four independent messages in lanes fill them. Tested against `md-5`
//! for identical digests (unit tests and a property test); measured in BENCHMARKS.md.

/// Longest message that fits one block (64 bytes minus the 0x80 marker and the 8-byte length).
pub const MAX_SINGLE_BLOCK: usize = 55;

const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501, 0x698098d8,
    0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340,
    0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87,
    0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
    0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039,
    0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92,
    0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
    0xeb86d391,
];
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15,
    21,
];

/// The one padded block of a message of at most [`MAX_SINGLE_BLOCK`] bytes, as 16 words.
fn padded_block(msg: &[u8]) -> [u32; 16] {
    debug_assert!(msg.len() <= MAX_SINGLE_BLOCK);
    let mut block = [0u8; 64];
    block[..msg.len()].copy_from_slice(msg);
    block[msg.len()] = 0x80;
    block[56..].copy_from_slice(&((msg.len() as u64) * 8).to_le_bytes());
    let mut words = [0u32; 16];
    for (w, chunk) in words.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}

/// MD5 of four messages of at most [`MAX_SINGLE_BLOCK`] bytes each.
#[cfg(target_arch = "x86_64")]
pub fn md5_x4(msgs: [&[u8]; 4]) -> [[u8; 16]; 4] {
    use std::arch::x86_64::*;
    assert!(msgs.iter().all(|m| m.len() <= MAX_SINGLE_BLOCK), "md5_x4 takes single-block messages");
    let blocks = msgs.map(padded_block);
    // SAFETY: SSE2 is part of the x86-64 baseline; every intrinsic below is SSE2.
    unsafe {
        let mut m = [_mm_setzero_si128(); 16];
        for (j, word) in m.iter_mut().enumerate() {
            *word = _mm_set_epi32(blocks[3][j] as i32, blocks[2][j] as i32, blocks[1][j] as i32, blocks[0][j] as i32);
        }
        let init = [0x67452301u32, 0xefcdab89, 0x98badcfe, 0x10325476].map(|v| _mm_set1_epi32(v as i32));
        let (mut a, mut b, mut c, mut d) = (init[0], init[1], init[2], init[3]);
        let ones = _mm_set1_epi32(-1);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => (_mm_or_si128(_mm_and_si128(b, c), _mm_andnot_si128(b, d)), i),
                1 => (_mm_or_si128(_mm_and_si128(d, b), _mm_andnot_si128(d, c)), (5 * i + 1) % 16),
                2 => (_mm_xor_si128(_mm_xor_si128(b, c), d), (3 * i + 5) % 16),
                _ => (_mm_xor_si128(c, _mm_or_si128(b, _mm_xor_si128(d, ones))), (7 * i) % 16),
            };
            let sum = _mm_add_epi32(_mm_add_epi32(f, a), _mm_add_epi32(_mm_set1_epi32(K[i] as i32), m[g]));
            let rotated = _mm_or_si128(
                _mm_sll_epi32(sum, _mm_cvtsi32_si128(S[i] as i32)),
                _mm_srl_epi32(sum, _mm_cvtsi32_si128(32 - S[i] as i32)),
            );
            a = d;
            d = c;
            c = b;
            b = _mm_add_epi32(b, rotated);
        }
        let state = [
            _mm_add_epi32(a, init[0]),
            _mm_add_epi32(b, init[1]),
            _mm_add_epi32(c, init[2]),
            _mm_add_epi32(d, init[3]),
        ];
        let mut lanes = [[0u32; 4]; 4]; // [register][lane]
        for (r, reg) in state.iter().enumerate() {
            _mm_storeu_si128(lanes[r].as_mut_ptr().cast(), *reg);
        }
        let mut out = [[0u8; 16]; 4];
        for (lane, digest) in out.iter_mut().enumerate() {
            for r in 0..4 {
                digest[r * 4..r * 4 + 4].copy_from_slice(&lanes[r][lane].to_le_bytes());
            }
        }
        out
    }
}

/// Portable fallback: four scalar digests.
#[cfg(not(target_arch = "x86_64"))]
pub fn md5_x4(msgs: [&[u8]; 4]) -> [[u8; 16]; 4] {
    use md5::{Digest, Md5};
    msgs.map(|m| Md5::digest(m).into())
}

/// MD5 of every message: four at a time where they fit one block, scalar otherwise.
pub fn md5_many(msgs: &[&[u8]], out: &mut Vec<[u8; 16]>) {
    use md5::{Digest, Md5};
    out.clear();
    out.resize(msgs.len(), [0u8; 16]);
    let mut pending: [(usize, &[u8]); 4] = [(0, &[]); 4];
    let mut n = 0;
    for (i, m) in msgs.iter().enumerate() {
        if m.len() > MAX_SINGLE_BLOCK {
            out[i] = Md5::digest(m).into();
            continue;
        }
        pending[n] = (i, m);
        n += 1;
        if n == 4 {
            let digests = md5_x4(pending.map(|(_, m)| m));
            for (k, (idx, _)) in pending.iter().enumerate() {
                out[*idx] = digests[k];
            }
            n = 0;
        }
    }
    for (idx, m) in &pending[..n] {
        out[*idx] = Md5::digest(m).into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use proptest::prelude::*;

    fn scalar(m: &[u8]) -> [u8; 16] {
        Md5::digest(m).into()
    }

    #[test]
    fn known_vectors_and_edges() {
        let msgs: [&[u8]; 4] = [b"", b"alice@example.com", &[b'x'; 55], b"a"];
        let got = md5_x4(msgs);
        for (m, d) in msgs.iter().zip(got) {
            assert_eq!(d, scalar(m));
        }
        assert_eq!(hex::encode(got[1]), "c160f8cc69a4f0bf2b0362752353d060");
    }

    proptest! {
        #[test]
        fn identical_digests_to_md5(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..40)) {
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            md5_many(&refs, &mut out);
            let expected: Vec<[u8; 16]> = refs.iter().map(|m| scalar(m)).collect();
            prop_assert_eq!(out, expected);
        }
    }
}
