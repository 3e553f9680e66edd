//! Write-ahead log in front of sled.
//!
//! sled 0.34 makes a write durable only with a flush of its own log, which waits for the
//! device twice (see `flush_durably`). This log makes a write durable with one `pwrite` and
//! one fdatasync into a segment file whose blocks were allocated in advance, so the write
//! does not change the file's size. sled's own flushes then run as checkpoints in the
//! background, and a checkpoint lets the log drop the segments it covers.
//!
//! Every batch of the writer becomes one record that lists the keys it put and removed,
//! with their values. Records are numbered without gaps. Opening the store applies every
//! record that is still in the log, in order: a change sets a key to its logged value, so
//! applying a record that sled already contains changes nothing.
//!
//! A segment is named after the number of its first record. A record is a 16-byte header,
//! `[payload length: u32][crc32 of number and payload: u32][number: u64]`, all
//! little-endian, then the payload. The zeros after the last record end a segment, and a
//! record cut short by a crash fails its checksum.

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// Space allocated for each segment. A record larger than this gets a segment of its own size.
pub(super) const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const HEADER_BYTES: usize = 16;
const EXTENSION: &str = "wal";

const OP_REMOVE: u8 = 0;
const OP_PUT: u8 = 1;

/// The log's append side, owned by the writer.
pub(super) struct Wal {
    dir: PathBuf,
    segment: Segment,
    next_number: u64,
}

struct Segment {
    path: PathBuf,
    file: File,
    offset: u64,
    capacity: u64,
}

impl Wal {
    /// Starts a new segment in `dir` whose first record will be `next_number`.
    pub(super) fn create(dir: &Path, next_number: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let segment = Segment::create(dir, next_number, SEGMENT_BYTES)?;
        Ok(Self { dir: dir.to_owned(), segment, next_number })
    }

    /// Number that the next record gets.
    #[cfg(test)]
    pub(super) fn next_number(&self) -> u64 {
        self.next_number
    }

    /// Starts a new segment when fewer than `bytes` are left in this one, and returns the
    /// path of the finished segment.
    pub(super) fn reserve(&mut self, bytes: u64) -> io::Result<Option<PathBuf>> {
        if self.segment.capacity - self.segment.offset >= bytes {
            return Ok(None);
        }
        if self.segment.offset == 0 {
            // An empty segment already bears the next record's number, so it grows instead.
            allocate(&self.segment.file, bytes)?;
            self.segment.file.sync_all()?;
            self.segment.capacity = bytes;
            return Ok(None);
        }
        let next = Segment::create(&self.dir, self.next_number, SEGMENT_BYTES.max(bytes))?;
        Ok(Some(std::mem::replace(&mut self.segment, next).path))
    }

    /// Writes `payload` as the next record and waits until it is on the device. Returns the
    /// path of a segment that this append finished, if any.
    pub(super) fn append(&mut self, payload: &[u8]) -> io::Result<Option<PathBuf>> {
        let record = encode_record(self.next_number, payload);
        let finished = self.reserve(record.len() as u64)?;
        self.segment.file.write_all_at(&record, self.segment.offset)?;
        self.segment.file.sync_data()?;
        self.segment.offset += record.len() as u64;
        self.next_number += 1;
        Ok(finished)
    }
}

impl Segment {
    /// Creates the segment file, allocates its blocks and makes both durable.
    fn create(dir: &Path, first_number: u64, capacity: u64) -> io::Result<Self> {
        let path = segment_path(dir, first_number);
        let file = File::options().read(true).write(true).create_new(true).open(&path)?;
        let prepared = allocate(&file, capacity).and_then(|()| file.sync_all()).and_then(|()| sync_dir(dir));
        if let Err(error) = prepared {
            if let Err(remove_error) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %remove_error, "cannot remove a log segment that failed to start");
            }
            return Err(error);
        }
        Ok(Self { path, file, offset: 0, capacity })
    }
}

/// Allocates the file's blocks (`posix_fallocate`), so appends do not grow the file.
// NOTE: ext4 marks such blocks unwritten, and the first write to each one changes extent
// metadata that the next fdatasync commits too. Writing zeros instead would avoid that,
// but a C loop of 700-byte appends with fdatasync showed no measurable difference.
fn allocate(file: &File, bytes: u64) -> io::Result<()> {
    fs2::FileExt::allocate(file, bytes)
}

/// Makes the directory's entries durable, such as a new or removed segment.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn segment_path(dir: &Path, first_number: u64) -> PathBuf {
    dir.join(format!("{first_number:020}.{EXTENSION}"))
}

fn encode_record(number: u64, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a log record is smaller than 4 GiB");
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
    record.extend_from_slice(&length.to_le_bytes());
    record.extend_from_slice(&checksum(number, payload).to_le_bytes());
    record.extend_from_slice(&number.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn checksum(number: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&number.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Segment files in `dir`, oldest first. A missing directory has none.
pub(super) fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let is_segment = path.extension().is_some_and(|extension| extension == EXTENSION)
            && path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|byte| byte.is_ascii_digit()));
        if is_segment {
            found.push(path);
        }
    }
    // Zero-padded numbers sort like the numbers.
    found.sort();
    Ok(found)
}

/// End of the records of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SegmentEnd {
    /// After the last record come the zeros of the allocated space, or the file's end.
    Clean,
    /// The record at this byte offset was cut short or fails its checksum, and no intact
    /// record follows it: an append that a crash interrupted, so it was never acknowledged.
    Torn { offset: usize },
}

/// Records after a damaged one that the search for intact records considers. A record
/// numbered further away would follow more than this many appends in one segment.
const INTACT_SEARCH_NUMBERS: u64 = 1 << 24;

/// Reads the records of one segment, in order, and calls `apply` with each number and
/// payload. A damaged record with intact records after it is an error: the appends after
/// it were acknowledged, so the log cannot be replayed without losing them.
pub(super) fn read_segment(path: &Path, mut apply: impl FnMut(u64, &[u8]) -> Result<(), String>) -> Result<SegmentEnd, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut expected = first_number(path).unwrap_or(0);
    let mut offset = 0;
    while offset + HEADER_BYTES <= bytes.len() {
        let (length, stored_checksum, number) = header_at(&bytes, offset);
        if length == 0 && stored_checksum == 0 && number == 0 {
            return Ok(SegmentEnd::Clean);
        }
        let start = offset + HEADER_BYTES;
        match bytes.get(start..start + length) {
            Some(payload) if checksum(number, payload) == stored_checksum => {
                apply(number, payload)?;
                expected = number + 1;
                offset = start + length;
            }
            _ => {
                if let Some((later_offset, later_number)) = find_intact_record(&bytes, offset + 1, expected) {
                    return Err(format!(
                        "log segment {} is damaged at byte {offset}, yet an intact record ({later_number}, at byte \
                         {later_offset}) follows, so acknowledged writes would be lost; restore the data directory \
                         from a backup, or move the segment out of the log directory to start without the records \
                         from the damaged one on",
                        path.display()
                    ));
                }
                return Ok(SegmentEnd::Torn { offset });
            }
        }
    }
    Ok(SegmentEnd::Clean)
}

fn header_at(bytes: &[u8], offset: usize) -> (usize, u32, u64) {
    let header = &bytes[offset..offset + HEADER_BYTES];
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let stored_checksum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let number = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    (length, stored_checksum, number)
}

/// Number of the first record of a segment, from its file name.
fn first_number(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Finds an intact record that starts at or after `from` and is numbered at least
/// `min_number`: its header names a plausible number and length, and its checksum matches.
fn find_intact_record(bytes: &[u8], from: usize, min_number: u64) -> Option<(usize, u64)> {
    let numbers = min_number..min_number.saturating_add(INTACT_SEARCH_NUMBERS);
    (from..bytes.len().saturating_sub(HEADER_BYTES - 1)).find_map(|offset| {
        let (length, stored_checksum, number) = header_at(bytes, offset);
        if !numbers.contains(&number) {
            return None;
        }
        let start = offset + HEADER_BYTES;
        let payload = bytes.get(start..start + length)?;
        (checksum(number, payload) == stored_checksum).then_some((offset, number))
    })
}

/// The keys that one transaction put and removed, encoded as a record payload: per change
/// a kind byte, a tree byte, the key's length (u32) and the key, and for a put the value's
/// length (u32) and the value.
#[derive(Default)]
pub(super) struct Changes {
    bytes: Vec<u8>,
}

impl Changes {
    pub(super) fn put(&mut self, tree: u8, key: &[u8], value: &[u8]) {
        self.start(OP_PUT, tree, key);
        self.push_bytes(value);
    }

    pub(super) fn remove(&mut self, tree: u8, key: &[u8]) {
        self.start(OP_REMOVE, tree, key);
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn start(&mut self, kind: u8, tree: u8, key: &[u8]) {
        self.bytes.push(kind);
        self.bytes.push(tree);
        self.push_bytes(key);
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        let length = u32::try_from(bytes.len()).expect("a key or value is smaller than 4 GiB");
        self.bytes.extend_from_slice(&length.to_le_bytes());
        self.bytes.extend_from_slice(bytes);
    }
}

/// One change decoded from a record payload.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change<'a> {
    Put { tree: u8, key: &'a [u8], value: &'a [u8] },
    Remove { tree: u8, key: &'a [u8] },
}

/// Decodes a payload written by [`Changes`].
pub(super) fn decode_changes(mut payload: &[u8]) -> Result<Vec<Change<'_>>, String> {
    fn take<'a>(payload: &mut &'a [u8], count: usize) -> Result<&'a [u8], String> {
        if payload.len() < count {
            return Err(format!("a change needs {count} more bytes, {} are left", payload.len()));
        }
        let (taken, rest) = payload.split_at(count);
        *payload = rest;
        Ok(taken)
    }
    fn take_bytes<'a>(payload: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let length = u32::from_le_bytes(take(payload, 4)?.try_into().expect("4 bytes")) as usize;
        take(payload, length)
    }

    let mut changes = Vec::new();
    while !payload.is_empty() {
        let [kind, tree] = take(&mut payload, 2)? else { unreachable!("take returned 2 bytes") };
        let key = take_bytes(&mut payload)?;
        changes.push(match *kind {
            OP_PUT => Change::Put { tree: *tree, key, value: take_bytes(&mut payload)? },
            OP_REMOVE => Change::Remove { tree: *tree, key },
            other => return Err(format!("unknown change kind {other}")),
        });
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path) -> (Vec<(u64, Vec<u8>)>, bool) {
        let mut records = Vec::new();
        let end = read_segment(path, |number, payload| {
            records.push((number, payload.to_vec()));
            Ok(())
        })
        .unwrap();
        (records, end == SegmentEnd::Clean)
    }

    #[test]
    fn appended_records_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 7).unwrap();
        assert!(wal.append(b"first").unwrap().is_none());
        assert!(wal.append(b"second").unwrap().is_none());
        assert_eq!(wal.next_number(), 9);

        let segments = segments(dir.path()).unwrap();
        assert_eq!(segments.len(), 1);
        let (records, clean) = read_all(&segments[0]);
        assert!(clean);
        assert_eq!(records, [(7, b"first".to_vec()), (8, b"second".to_vec())]);
        // The blocks were allocated up front.
        assert_eq!(std::fs::metadata(&segments[0]).unwrap().len(), SEGMENT_BYTES);
    }

    #[test]
    fn segment_read_stops_at_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        wal.append(b"kept").unwrap();
        wal.append(b"torn by a crash").unwrap();
        let path = segments(dir.path()).unwrap().remove(0);
        // Zero the last bytes of the second record, as a crash during its write can.
        let file = File::options().write(true).open(&path).unwrap();
        let second_end = (2 * HEADER_BYTES + 4 + 15) as u64;
        file.write_all_at(&[0; 4], second_end - 4).unwrap();

        let (records, clean) = read_all(&path);
        assert!(!clean);
        assert_eq!(records, [(1, b"kept".to_vec())]);
    }

    #[test]
    fn damaged_record_before_intact_ones_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        for payload in [b"first", b"flips", b"third", b"forth"] {
            wal.append(payload).unwrap();
        }
        let path = segments(dir.path()).unwrap().remove(0);
        // Flip bytes in the payload of the second record, as a failing disk can.
        let file = File::options().write(true).open(&path).unwrap();
        file.write_all_at(b"XX", (2 * HEADER_BYTES + 5 + 1) as u64).unwrap();

        let mut applied = Vec::new();
        let error = read_segment(&path, |number, _| {
            applied.push(number);
            Ok(())
        })
        .unwrap_err();
        assert!(error.contains("damaged at byte 21"), "{error}");
        assert!(error.contains("intact record (3"), "{error}");
        assert_eq!(applied, [1]);
    }

    #[test]
    fn damaged_last_header_is_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        wal.append(b"kept").unwrap();
        wal.append(b"cut short").unwrap();
        let path = segments(dir.path()).unwrap().remove(0);
        let file = File::options().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff; 4], (HEADER_BYTES + 4) as u64).unwrap();

        let end = read_segment(&path, |_, _| Ok(())).unwrap();
        assert_eq!(end, SegmentEnd::Torn { offset: HEADER_BYTES + 4 });
    }

    #[test]
    fn segment_full_starts_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        let big = vec![7u8; (SEGMENT_BYTES / 2) as usize];
        assert!(wal.append(&big).unwrap().is_none());
        let finished = wal.append(&big).unwrap().expect("the second record does not fit");
        assert_eq!(finished, segment_path(dir.path(), 1));

        let segments = segments(dir.path()).unwrap();
        assert_eq!(segments, [segment_path(dir.path(), 1), segment_path(dir.path(), 2)]);
        assert_eq!(read_all(&segments[1]).0[0].0, 2);
    }

    #[test]
    fn segment_grows_for_oversized_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        let huge = vec![1u8; SEGMENT_BYTES as usize + 10];
        // The empty first segment grows to hold it.
        assert!(wal.append(&huge).unwrap().is_none());
        // A full segment makes way for a larger one.
        assert!(wal.append(&huge).unwrap().is_some());
        let segments = segments(dir.path()).unwrap();
        assert_eq!(segments.len(), 2);
        for (number, segment) in (1..).zip(&segments) {
            let (records, clean) = read_all(segment);
            assert!(clean);
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].0, number);
            assert_eq!(records[0].1.len(), huge.len());
        }
    }

    #[test]
    fn changes_round_trip() {
        let mut changes = Changes::default();
        changes.put(3, b"key", b"value");
        changes.remove(9, b"gone");
        changes.put(0, b"", b"");
        assert_eq!(
            decode_changes(changes.as_bytes()).unwrap(),
            [
                Change::Put { tree: 3, key: b"key", value: b"value" },
                Change::Remove { tree: 9, key: b"gone" },
                Change::Put { tree: 0, key: b"", value: b"" },
            ]
        );
        let truncated = &changes.as_bytes()[..changes.as_bytes().len() - 1];
        assert!(decode_changes(truncated).is_err());
    }

    #[test]
    fn other_files_are_not_segments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        std::fs::write(dir.path().join("12.wal"), b"").unwrap();
        Wal::create(dir.path(), 3).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), [segment_path(dir.path(), 3)]);
    }
}
