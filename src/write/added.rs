//! The ids a snapshot run has added, for dedup within the run: the one part
//! of the store's state that grows with the amount of new data.
//!
//! The newest ids (at most [`AddedIds::RECENT_MAX`]) are kept in memory,
//! sorted. Older ones are spilled to disk in sorted runs, each an unnamed
//! file in the repository's cache directory (gone when the run ends, even
//! after a crash), read back with `pread`, so what they hold lives in the
//! page cache and not in the process. In memory each run keeps a blocked
//! Bloom filter (about 10 bits an id, the index cache's) and one fence id
//! per 4 KiB page of the file: about 1.5–2.8 bytes an id, against 36 for
//! ids held in memory. A lookup costs one cache line per run and a page
//! read in a run whose filter says "maybe" (about 1% of misses per run).
//!
//! Runs are merged like a binary counter (a new run merges with the one
//! before it while that one is no larger), so there are at most
//! log2(n / RECENT_MAX) + 1 of them and an id is rewritten that many times.
//! If the cache directory cannot hold a run, the ids stay in memory: the
//! run goes on as before this module existed, only without the bound.

use crate::error::{Error, Result};
use crate::ids::ChunkId;
use crate::index::filter;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const ID_LEN: usize = 32;
/// Ids per page of a run file: one fence each.
const PAGE_IDS: usize = 128;

/// The ids added by this run.
pub struct AddedIds {
    /// The newest ids, split by their first byte into sorted vectors (ids
    /// are keyed hashes, so the parts fill evenly).
    recent: Vec<Vec<ChunkId>>,
    recent_len: usize,
    recent_max: usize,
    /// Where runs go; `None` once spilling failed (everything stays in memory).
    dir: Option<PathBuf>,
    runs: Vec<Run>,
}

/// One sorted run of ids on disk.
struct Run {
    file: File,
    len: usize,
    /// The first id of every page of `PAGE_IDS` ids.
    fences: Vec<ChunkId>,
    filter: Vec<u64>,
    blocks: u64,
}

impl AddedIds {
    /// Ids held in memory before they are spilled: 512 KiB of ids.
    pub const RECENT_MAX: usize = 16 * 1024;

    /// An empty set that spills to `dir` (created if missing) once it holds
    /// more than `RECENT_MAX` ids; `None` keeps every id in memory.
    pub fn new(dir: Option<&Path>) -> AddedIds {
        AddedIds::with_limit(dir, Self::RECENT_MAX)
    }

    fn with_limit(dir: Option<&Path>, recent_max: usize) -> AddedIds {
        AddedIds {
            recent: (0..256).map(|_| Vec::new()).collect(),
            recent_len: 0,
            recent_max,
            dir: dir.map(Path::to_path_buf),
            runs: Vec::new(),
        }
    }

    /// Ids held, in memory and on disk.
    pub fn len(&self) -> usize {
        self.recent_len + self.runs.iter().map(|r| r.len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if `id` is among the ids still in memory (no I/O).
    pub fn contains_recent(&self, id: &ChunkId) -> bool {
        self.recent[usize::from(id.0[0])].binary_search(id).is_ok()
    }

    /// True if `id` is among the spilled ids; reads a page of a run file
    /// when its filter cannot rule `id` out.
    pub fn contains_spilled(&self, id: &ChunkId) -> Result<bool> {
        for run in &self.runs {
            if run.contains(id).map_err(|e| self.spill_error(e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.contains_recent(id) || self.contains_spilled(id)?)
    }

    /// Adds an id the caller knows is not held yet (`contains` said so).
    pub fn insert(&mut self, id: ChunkId) {
        let part = &mut self.recent[usize::from(id.0[0])];
        let at = part.partition_point(|p| p < &id);
        debug_assert!(part.get(at) != Some(&id), "{id} inserted twice");
        if part.len() == part.capacity() {
            part.reserve_exact((part.len() / 8).max(4));
        }
        part.insert(at, id);
        self.recent_len += 1;
        if self.recent_len >= self.recent_max && self.dir.is_some() {
            self.spill();
        }
    }

    /// Writes the ids in memory as a new run and merges runs of equal
    /// size. On failure the ids stay in memory and spilling stops.
    fn spill(&mut self) {
        let dir = self.dir.clone().expect("spill needs a directory");
        let sorted = self.recent.iter().flatten().map(|id| Ok(*id));
        match write_run(&dir, self.recent_len, sorted) {
            Ok(run) => {
                self.runs.push(run);
                self.recent.iter_mut().for_each(Vec::clear);
                self.recent_len = 0;
            }
            Err(_) => {
                self.dir = None;
                return;
            }
        }
        while let [.., a, b] = &self.runs[..] {
            if a.len > b.len {
                break;
            }
            let merged = match merge_runs(&dir, a, b) {
                Ok(m) => m,
                // Both runs are still whole; just stop merging and spilling.
                Err(_) => {
                    self.dir = None;
                    return;
                }
            };
            self.runs.truncate(self.runs.len() - 2);
            self.runs.push(merged);
        }
    }

    fn spill_error(&self, e: std::io::Error) -> Error {
        let dir = self
            .dir
            .as_deref()
            .unwrap_or(Path::new("the cache directory"));
        Error::io(dir.join("(unnamed file of this run's added chunk ids)"), e)
    }
}

impl Run {
    fn contains(&self, id: &ChunkId) -> std::io::Result<bool> {
        let word = |i: usize| self.filter[i];
        if !filter::may_contain(word, self.blocks, id) {
            return Ok(false);
        }
        let page = self.fences.partition_point(|f| f <= id);
        if page == 0 {
            return Ok(false);
        }
        let first = (page - 1) * PAGE_IDS;
        let count = PAGE_IDS.min(self.len - first);
        let mut buf = [0u8; PAGE_IDS * ID_LEN];
        let buf = &mut buf[..count * ID_LEN];
        self.file.read_exact_at(buf, (first * ID_LEN) as u64)?;
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match buf[mid * ID_LEN..(mid + 1) * ID_LEN].cmp(&id.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(true),
            }
        }
        Ok(false)
    }
}

/// Writes `len` ids, ascending, as a run, with its fences and filter.
fn write_run(
    dir: &Path,
    len: usize,
    ids: impl Iterator<Item = std::io::Result<ChunkId>>,
) -> std::io::Result<Run> {
    let file = crate::sys::files::unnamed_file(dir)?;
    let blocks = filter::blocks_for(len as u64);
    let mut run = Run {
        file,
        len: 0,
        fences: Vec::with_capacity(len.div_ceil(PAGE_IDS)),
        filter: vec![0u64; blocks as usize * filter::BLOCK_WORDS],
        blocks,
    };
    let mut out = BufWriter::with_capacity(64 * 1024, &run.file);
    for id in ids {
        let id = id?;
        if run.len % PAGE_IDS == 0 {
            run.fences.push(id);
        }
        filter::insert(&mut run.filter, blocks, &id);
        out.write_all(&id.0)?;
        run.len += 1;
    }
    out.flush()?;
    drop(out);
    if run.len != len {
        return Err(std::io::Error::other(format!(
            "run of added ids: expected {len} ids, found {}",
            run.len
        )));
    }
    Ok(run)
}

/// Reads a run's ids in order.
fn read_run(run: &Run) -> impl Iterator<Item = std::io::Result<ChunkId>> + '_ {
    let mut r = BufReader::with_capacity(
        64 * 1024,
        FileAt {
            file: &run.file,
            at: 0,
        },
    );
    (0..run.len).map(move |_| {
        let mut id = [0u8; ID_LEN];
        r.read_exact(&mut id)?;
        Ok(ChunkId(id))
    })
}

/// Merges two runs (which share no id) into a new one.
fn merge_runs(dir: &Path, a: &Run, b: &Run) -> std::io::Result<Run> {
    let mut xs = read_run(a).peekable();
    let mut ys = read_run(b).peekable();
    // An error comes first, and ends the write.
    let merged = std::iter::from_fn(|| match (xs.peek(), ys.peek()) {
        (Some(Err(_)), _) => xs.next(),
        (_, Some(Err(_))) => ys.next(),
        (Some(Ok(x)), Some(Ok(y))) if x > y => ys.next(),
        (Some(_), _) => xs.next(),
        (None, _) => ys.next(),
    });
    write_run(dir, a.len + b.len, merged)
}

/// Reads a file from a position with `pread`, leaving its offset alone.
struct FileAt<'f> {
    file: &'f File,
    at: u64,
}

impl Read for FileAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> ChunkId {
        ChunkId(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    /// Ids spill into merged runs and are all found again; ids never added
    /// are not, whatever the filters say.
    #[test]
    fn spilled_ids_are_found_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = AddedIds::with_limit(Some(dir.path()), 1000);
        for i in 0..10_500 {
            assert!(!set.contains(&id(i)).unwrap());
            set.insert(id(i));
        }
        assert_eq!(set.len(), 10_500);
        // 10 spills of 1000 merge into runs of 8000 and 2000; 500 stay in memory.
        let lens: Vec<usize> = set.runs.iter().map(|r| r.len).collect();
        assert_eq!(lens, [8000, 2000]);
        assert_eq!(set.recent_len, 500);
        for i in 0..10_500 {
            assert!(set.contains(&id(i)).unwrap(), "id {i} lost");
        }
        let spilled = (0..10_000).filter(|&i| set.contains_spilled(&id(i)).unwrap());
        assert_eq!(spilled.count(), 10_000);
        for i in 10_500..30_000 {
            assert!(!set.contains(&id(i)).unwrap(), "id {i} invented");
        }
        // Extremes: below every fence, above every id.
        assert!(!set.contains(&ChunkId([0; 32])).unwrap());
        assert!(!set.contains(&ChunkId([0xff; 32])).unwrap());
        // The run files have no name: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Without a usable directory every id stays in memory, and is found.
    #[test]
    fn ids_stay_in_memory_when_they_cannot_spill() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("a-file");
        std::fs::write(&blocked, b"not a directory").unwrap();
        let mut set = AddedIds::with_limit(Some(&blocked), 100);
        for i in 0..1000 {
            set.insert(id(i));
        }
        assert!(set.runs.is_empty() && set.dir.is_none());
        assert!((0..1000).all(|i| set.contains(&id(i)).unwrap()));
        assert!(!set.contains(&id(1000)).unwrap());
    }
}
