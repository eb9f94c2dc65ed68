//! Any bytes as one line: the parser never panics, and what it accepts obeys the contract.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memberlake_records::records::{normalize_and_hash, parse_line, Record, MAX_EMAIL_BYTES};

fuzz_target!(|data: &[u8]| {
    for first_line in [false, true] {
        match parse_line(data, first_line) {
            Record::Member(h) => {
                // Accepted rows are a 32-hex-digit hash, or an email of the contract's shape.
                // The BOM is only recognized as the very first bytes of the object.
                let t = if first_line { data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data) } else { data };
                let t = t.trim_ascii();
                let inner =
                    t.strip_prefix(b"\"").and_then(|x| x.strip_suffix(b"\"")).map(<[u8]>::trim_ascii).unwrap_or(t);
                if inner.len() == 32 && inner.iter().all(u8::is_ascii_hexdigit) {
                    assert_eq!(h.to_hex(), String::from_utf8_lossy(inner).to_ascii_lowercase());
                } else {
                    let s = std::str::from_utf8(inner).expect("an accepted email is UTF-8").to_lowercase();
                    assert!(s.len() <= MAX_EMAIL_BYTES);
                    assert_eq!(s.matches('@').count(), 1);
                    assert_eq!(normalize_and_hash(s.as_bytes()), Ok(h), "normalization is idempotent");
                }
            }
            Record::Skipped | Record::Rejected(_) => {}
        }
    }
});
