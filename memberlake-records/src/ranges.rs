//! Byte ranges of a lake object and the range-boundary rule.
//!
//! **Rule.** A record belongs to the range that contains its first byte. A record starts at
//! offset 0 or right after a `\n`. So a reader of `[start, end)` skips the partial line it lands
//! in (unless `start == 0` or the byte before `start` is `\n`) and reads past `end` to finish its
//! last line. This is the rule of Hadoop's `LineRecordReader` and DataFusion's
//! `calculate_range`.
//!
//! **Bounded reads.** A line longer than [`MAX_LINE_BYTES`] is rejected, so the owner of a line
//! never needs more than `MAX_LINE_BYTES + 1` bytes of it. A range's reader therefore fetches one
//! window, `[start - 1, end + MAX_LINE_BYTES)` clamped to the object, with a single ranged GET:
//! the byte before `start` says whether `start` begins a line, and the overread finishes (or
//! proves over-long) the last line that starts before `end`.
//!
//! [`RangeScanner`] applies the rule to that window as it streams in, chunk by chunk, and hands
//! out [`Block`]s of complete lines for parallel parsing; its memory is bounded by the block size
//! plus one line, whatever the file.

use bytes::{Bytes, BytesMut};
use memchr::{memchr, memrchr};
use serde::{Deserialize, Serialize};

use crate::records::{parse_line, Record, RejectReason, MAX_LINE_BYTES};

/// `[start, end)` in bytes of a lake object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn new(start: u64, end: u64) -> Self {
        assert!(start <= end, "range start {start} after end {end}");
        Self { start, end }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn contains(&self, offset: u64) -> bool {
        self.start <= offset && offset < self.end
    }

    /// The bytes a reader of this range fetches from an object of `object_len` bytes.
    pub fn read_window(&self, object_len: u64) -> ByteRange {
        let start = self.start.saturating_sub(1);
        let end = self.end.saturating_add(MAX_LINE_BYTES as u64).min(object_len);
        ByteRange::new(start.min(end), end)
    }
}

/// Cuts an object of `object_len` bytes into ranges of `range_size` bytes. An empty object has
/// no ranges; an object that cannot be split (compressed) is one range.
pub fn plan_ranges(object_len: u64, range_size: u64, splittable: bool) -> Vec<ByteRange> {
    assert!(range_size > 0, "range size must be positive");
    if object_len == 0 {
        return Vec::new();
    }
    if !splittable {
        return vec![ByteRange::new(0, object_len)];
    }
    (0..object_len.div_ceil(range_size))
        .map(|i| ByteRange::new(i * range_size, ((i + 1) * range_size).min(object_len)))
        .collect()
}

/// Complete lines, ready to parse. `offset` is the absolute offset of `data[0]`, which is a line
/// start except for the very first block of a range whose window starts before the range.
#[derive(Debug, Clone)]
pub struct Block {
    pub offset: u64,
    pub data: Bytes,
}

/// What a [`RangeScanner`] produces.
#[derive(Debug, Clone)]
pub enum ScanItem {
    Lines(Block),
    /// A line owned by the range, longer than [`MAX_LINE_BYTES`]; its bytes were dropped.
    OverlongLine {
        offset: u64,
    },
}

/// Streams a range's read window and yields the lines the range owns, per the boundary rule.
#[derive(Debug)]
pub struct RangeScanner {
    range: ByteRange,
    /// Absolute offset of `buf[0]`.
    buf_offset: u64,
    buf: BytesMut,
    /// Dropping an over-long line's bytes until its `\n`.
    discarding: bool,
    /// Emit a block once this many bytes of complete lines are buffered.
    block_bytes: usize,
}

impl RangeScanner {
    /// `window_start` is where the bytes fed to [`push`](Self::push) begin (normally
    /// `range.read_window(len).start`; 0 for a decompressed stream).
    pub fn new(range: ByteRange, window_start: u64, block_bytes: usize) -> Self {
        Self {
            range,
            buf_offset: window_start,
            buf: BytesMut::new(),
            discarding: false,
            block_bytes: block_bytes.max(1),
        }
    }

    /// Feeds the next chunk of the window; appends what is ready to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<ScanItem>) {
        while !chunk.is_empty() {
            if self.discarding {
                match memchr(b'\n', chunk) {
                    Some(i) => {
                        self.discarding = false;
                        self.buf_offset += (i + 1) as u64;
                        chunk = &chunk[i + 1..];
                    }
                    None => {
                        self.buf_offset += chunk.len() as u64;
                        return;
                    }
                }
                continue;
            }
            self.buf.extend_from_slice(chunk);
            chunk = &[];
            self.drain(out);
        }
    }

    /// Emits complete lines when enough are buffered, and cuts an over-long pending line.
    fn drain(&mut self, out: &mut Vec<ScanItem>) {
        let complete = memrchr(b'\n', &self.buf).map_or(0, |i| i + 1);
        let pending = self.buf.len() - complete;
        if complete > 0 && (complete >= self.block_bytes || pending > MAX_LINE_BYTES) {
            self.emit_through(complete, out);
        }
        if pending > MAX_LINE_BYTES {
            // `buf` now holds only the pending line's first bytes.
            let line_start = self.buf_offset;
            if self.owns(line_start) {
                out.push(ScanItem::OverlongLine { offset: line_start });
            }
            // The rest of the line arrives later; drop it as it comes.
            self.buf_offset += self.buf.len() as u64;
            self.buf.clear();
            self.discarding = true;
        }
    }

    fn emit_through(&mut self, n: usize, out: &mut Vec<ScanItem>) {
        let data = self.buf.split_to(n).freeze();
        let offset = self.buf_offset;
        self.buf_offset += n as u64;
        if offset < self.range.end {
            out.push(ScanItem::Lines(Block { offset, data }));
        }
    }

    /// Call at the end of the window. `at_object_end` says the window reached the end of the
    /// object, so an unterminated last line is a record.
    pub fn finish(mut self, at_object_end: bool, out: &mut Vec<ScanItem>) {
        if self.discarding {
            return;
        }
        let len = self.buf.len();
        let last_nl = memrchr(b'\n', &self.buf);
        let complete = last_nl.map_or(0, |i| i + 1);
        if complete > 0 {
            self.emit_through(complete, out);
        }
        if len > complete {
            let line_start = self.buf_offset;
            if at_object_end {
                self.emit_through(len - complete, out);
            } else if self.owns(line_start) {
                // The window ends MAX_LINE_BYTES past the range, so an owned line cut by it is
                // over-long; `drain` normally reports it first. Kept for safety.
                out.push(ScanItem::OverlongLine { offset: line_start });
            }
        }
    }

    fn owns(&self, line_start: u64) -> bool {
        self.range.contains(line_start)
    }

    pub fn range(&self) -> ByteRange {
        self.range
    }
}

impl Block {
    /// The lines of this block that `range` owns: `(offset, line without '\n')`.
    pub fn owned_lines<'a>(&'a self, range: ByteRange) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let mut pos = 0usize;
        let data = &self.data[..];
        let base = self.offset;
        // The first segment starts at a line start only if the block does; a block never
        // begins mid-line except at the window start, which lies before `range.start`.
        std::iter::from_fn(move || {
            while pos < data.len() {
                let start = pos;
                let end = memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
                pos = end + 1;
                let offset = base + start as u64;
                if offset >= range.end {
                    pos = data.len();
                    return None;
                }
                if offset >= range.start {
                    return Some((offset, &data[start..end]));
                }
            }
            None
        })
    }
}

/// Turns an owned line into a record: the length cap first (a complete line can exceed it
/// when its end arrived in the same chunk), then the hashing contract.
pub fn line_record(offset: u64, line: &[u8]) -> Record {
    if line.len() > MAX_LINE_BYTES {
        Record::Rejected(RejectReason::LineTooLong)
    } else {
        parse_line(line, offset == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Everything a range yields, as (offset, record), with over-long lines as rejections.
    fn scan_range(file: &[u8], range: ByteRange, chunk_sizes: &[usize], block_bytes: usize) -> Vec<(u64, Record)> {
        let window = range.read_window(file.len() as u64);
        let bytes = &file[window.start as usize..window.end as usize];
        let mut scanner = RangeScanner::new(range, window.start, block_bytes);
        let mut items = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < bytes.len() {
            let n = chunk_sizes[i % chunk_sizes.len()].max(1).min(bytes.len() - pos);
            scanner.push(&bytes[pos..pos + n], &mut items);
            pos += n;
            i += 1;
        }
        scanner.finish(window.end == file.len() as u64, &mut items);
        let mut records = Vec::new();
        for item in items {
            match item {
                ScanItem::Lines(block) => {
                    for (offset, line) in block.owned_lines(range) {
                        records.push((offset, line_record(offset, line)));
                    }
                }
                ScanItem::OverlongLine { offset } => {
                    records.push((offset, Record::Rejected(RejectReason::LineTooLong)))
                }
            }
        }
        records
    }

    /// The independent sequential reading: split the whole file on '\n'.
    fn sequential(file: &[u8]) -> Vec<(u64, Record)> {
        let mut out = Vec::new();
        let mut start = 0usize;
        while start < file.len() {
            let end = file[start..].iter().position(|b| *b == b'\n').map_or(file.len(), |i| start + i);
            let line = &file[start..end];
            let rec = if line.len() > MAX_LINE_BYTES {
                Record::Rejected(RejectReason::LineTooLong)
            } else {
                parse_line(line, start == 0)
            };
            out.push((start as u64, rec));
            start = end + 1;
        }
        out
    }

    fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[a-zA-Z0-9.+]{1,12}@[a-z]{1,8}\\.[a-z]{2,3}".prop_map(|s| s.into_bytes()),
            1 => Just(Vec::new()),
            1 => "[ \t]{0,3}\"[a-z]{1,6}@[a-z]{1,6}\\.io\"[ \t]{0,3}".prop_map(|s| s.into_bytes()),
            1 => "[0-9a-fA-F]{32}".prop_map(|s| s.into_bytes()),
            1 => "[a-z@]{0,10}".prop_map(|s| s.into_bytes()),
            1 => proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..20),
            1 => (MAX_LINE_BYTES - 2..MAX_LINE_BYTES + 3).prop_map(|n| vec![b'x'; n]),
            1 => (MAX_LINE_BYTES * 2..MAX_LINE_BYTES * 3).prop_map(|n| vec![b'y'; n]),
        ]
    }

    fn file_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec((line_strategy(), any::<bool>()), 0..60),
            any::<bool>(),
        )
            .prop_map(|(bom, header, lines, trailing_newline)| {
                let mut file = Vec::new();
                if bom {
                    file.extend_from_slice(b"\xEF\xBB\xBF");
                }
                if header {
                    file.extend_from_slice(b"email\n");
                }
                for (i, (line, crlf)) in lines.iter().enumerate() {
                    file.extend_from_slice(line);
                    if i + 1 < lines.len() || trailing_newline {
                        file.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
                    }
                }
                file
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// The contract's property: for any file and any range size, the union of all ranges'
        /// records equals a sequential read of the whole file, each record exactly once.
        #[test]
        fn ranges_partition_records_exactly(
            file in file_strategy(),
            range_size in 1u64..20_000,
            chunk_sizes in proptest::collection::vec(1usize..5000, 1..5),
            block_bytes in 1usize..3000,
        ) {
            let expected = sequential(&file);
            let mut union = Vec::new();
            for range in plan_ranges(file.len() as u64, range_size, true) {
                union.extend(scan_range(&file, range, &chunk_sizes, block_bytes));
            }
            union.sort_by_key(|(offset, _)| *offset);
            prop_assert_eq!(union, expected);
        }
    }

    #[test]
    fn plan_covers_object_exactly() {
        assert!(plan_ranges(0, 10, true).is_empty());
        assert_eq!(plan_ranges(10, 10, true), vec![ByteRange::new(0, 10)]);
        assert_eq!(plan_ranges(20, 10, true), vec![ByteRange::new(0, 10), ByteRange::new(10, 20)]);
        assert_eq!(plan_ranges(21, 10, true).len(), 3);
        assert_eq!(plan_ranges(1000, 10, false), vec![ByteRange::new(0, 1000)]);
    }

    #[test]
    fn range_starting_right_after_newline_owns_that_line() {
        let file = b"a@b.c\nd@e.f\n";
        let r = scan_range(file, ByteRange::new(6, 12), &[3], 4);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, 6);
        let r = scan_range(file, ByteRange::new(0, 6), &[100], 4);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn a_ten_megabyte_line_is_one_rejection() {
        let mut file = b"a@b.c\n".to_vec();
        file.extend(std::iter::repeat_n(b'z', 10 << 20));
        file.extend_from_slice(b"\nd@e.f");
        let mut all = Vec::new();
        for range in plan_ranges(file.len() as u64, 1 << 20, true) {
            all.extend(scan_range(&file, range, &[64 << 10], 1 << 16));
        }
        all.sort_by_key(|x| x.0);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1], (6, Record::Rejected(RejectReason::LineTooLong)));
        assert!(matches!(all[2].1, Record::Member(_)));
    }
}
