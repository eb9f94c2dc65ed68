//! The matcher's request grammar on any input: never panics; what it accepts is valid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memberlake_records::requests::{parse_match_query, parse_suppress_body, MAX_SUPPRESS_ADVERTISERS};

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        if let Ok((advertiser, hash)) = parse_match_query(query) {
            assert!(!advertiser.as_str().is_empty() && advertiser.as_str().len() <= 64);
            assert_eq!(hash.to_hex().len(), 32);
        }
    }
    match parse_suppress_body(data) {
        Ok((_, advertisers)) => {
            assert!(advertisers.len() <= MAX_SUPPRESS_ADVERTISERS);
            let mut names: Vec<_> = advertisers.iter().map(|a| a.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), advertisers.len(), "deduplicated");
        }
        Err(e) => assert!(e.0.len() < 400, "error messages stay short"),
    }
});
