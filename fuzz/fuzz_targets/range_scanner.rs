//! Any file, any range size, any chunking: the ranges' records are exactly a sequential read's
//! (the range-boundary contract), and the scanner never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memberlake_records::ranges::{line_record, plan_ranges, RangeScanner, ScanItem};
use memberlake_records::records::{Record, RejectReason, MAX_LINE_BYTES};

fn scan(file: &[u8], range_size: u64, chunk: usize) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    for range in plan_ranges(file.len() as u64, range_size, true) {
        let w = range.read_window(file.len() as u64);
        let mut scanner = RangeScanner::new(range, w.start, 97);
        let mut items = Vec::new();
        for c in file[w.start as usize..w.end as usize].chunks(chunk) {
            scanner.push(c, &mut items);
        }
        scanner.finish(w.end == file.len() as u64, &mut items);
        for item in items {
            match item {
                ScanItem::Lines(b) => out.extend(b.owned_lines(range).map(|(o, l)| (o, line_record(o, l)))),
                ScanItem::OverlongLine { offset } => out.push((offset, Record::Rejected(RejectReason::LineTooLong))),
            }
        }
    }
    out.sort_by_key(|r| r.0);
    out
}

fuzz_target!(|input: (u16, u8, Vec<u8>)| {
    let (range_size, chunk, file) = input;
    let range_size = u64::from(range_size % 9000) + 1;
    let chunk = usize::from(chunk) + 1;
    let mut expected = Vec::new();
    let mut start = 0;
    while start < file.len() {
        let end = file[start..].iter().position(|b| *b == b'\n').map_or(file.len(), |i| start + i);
        let line = &file[start..end];
        expected.push((
            start as u64,
            if line.len() > MAX_LINE_BYTES {
                Record::Rejected(RejectReason::LineTooLong)
            } else {
                line_record(start as u64, line)
            },
        ));
        start = end + 1;
    }
    assert_eq!(scan(&file, range_size, chunk), expected);
});
