//! Write-behind for restored data: a restore keeps only a small window of
//! what it wrote in the page cache.
//!
//! Written through the page cache alone, a restore leaves every byte it wrote
//! dirty in memory and then cached: restoring a 50 GB dump onto a server
//! pushes out the working set of whatever runs there, and the kernel flushes
//! the dirty gigabytes at a moment of its choosing, stalling other writers.
//! So, as PostgreSQL's `*_flush_after` settings do, every range of a restored
//! file starts its writeback as soon as it is written
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Once more than
//! [`SOFT_WINDOW`] bytes are in flight, the oldest range is dropped from the
//! cache (`POSIX_FADV_DONTNEED`, which keeps whatever is not yet written
//! back); once more than [`HARD_WINDOW`] bytes (or [`MAX_RANGES`] ranges,
//! which bounds the open files) are, the oldest is waited for and dropped
//! again. A restore thus reuses the same few megabytes of pages, never waits
//! for the disk unless it is [`HARD_WINDOW`] behind, and, since the rest is
//! waited for at the end ([`WriteBehind::drain`]), returns with its data on
//! the disk (metadata follows the file system's own schedule: nothing is
//! fsynced).
//!
//! Files smaller than [`SMALL`] are left to the page cache: each would cost
//! an I/O submission of its own, where the kernel's flusher batches them, and
//! they hold few of a tree's bytes (29 MB of the corpus tree's 341 MB, in
//! 2842 of its 3500 files).
//!
//! Where the file system or the file does not support it (a pipe, some
//! network and FUSE file systems), write-behind switches itself off and the
//! data goes through the page cache as usual. A write error that shows at
//! writeback (`EIO`, or `ENOSPC` on file systems that allocate late) is kept
//! and returned by [`WriteBehind::take_error`], naming the file: a plain
//! buffered write would lose it when the file is closed.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes in flight past which the oldest range is dropped from the cache.
pub const SOFT_WINDOW: u64 = 16 * 1024 * 1024;
/// Bytes in flight past which the oldest range is waited for.
pub const HARD_WINDOW: u64 = 64 * 1024 * 1024;
/// Ranges in flight at most; each holds its file open.
pub const MAX_RANGES: usize = 256;
/// A file being written hands over a range at least this large (whole pages).
pub const STEP: u64 = 2 * 1024 * 1024;
/// Files smaller than this are left to the page cache.
pub const SMALL: u64 = 64 * 1024;
const PAGE: u64 = 4096;

/// A range of a file whose writeback has started.
struct Range {
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
    /// 0: to the end of the file (so that its last, partial page goes too).
    len: u64,
    /// Bytes it counts against the windows.
    bytes: u64,
}

/// Ranges in flight, oldest first: `fresh` ones only started, `advised` ones
/// also dropped from the cache once.
#[derive(Default)]
struct Queue {
    fresh: VecDeque<Range>,
    advised: VecDeque<Range>,
    fresh_bytes: u64,
    bytes: u64,
}

/// The write-behind of one restore, shared by the threads writing its files.
pub struct WriteBehind {
    queue: Mutex<Queue>,
    /// Cleared when the file system refuses `sync_file_range`.
    supported: AtomicBool,
    /// The first error writeback reported.
    error: Mutex<Option<Error>>,
    soft: u64,
    hard: u64,
    max_ranges: usize,
}

impl Default for WriteBehind {
    fn default() -> Self {
        WriteBehind::with_windows(SOFT_WINDOW, HARD_WINDOW, MAX_RANGES)
    }
}

impl WriteBehind {
    /// A write-behind with the given windows (see the module's documentation).
    pub fn with_windows(soft: u64, hard: u64, max_ranges: usize) -> WriteBehind {
        WriteBehind {
            queue: Mutex::new(Queue::default()),
            supported: AtomicBool::new(true),
            error: Mutex::new(None),
            soft,
            hard: hard.max(soft),
            max_ranges: max_ranges.max(1),
        }
    }

    /// A writer for `file`, which `path` names in errors. Bytes go to the
    /// file's current position, as with `&File`'s `Write`.
    pub fn writer<'a>(&'a self, file: Arc<File>, path: &Path) -> BehindWriter<'a> {
        BehindWriter {
            behind: self,
            file,
            path: path.to_path_buf(),
            pending: 0,
            handed: false,
        }
    }

    /// Starts writeback of `[offset, offset + len)` (`len` 0: to the end of
    /// the file), then drops and retires the oldest ranges beyond the windows.
    fn push(&self, file: &Arc<File>, path: &Path, offset: u64, len: u64, bytes: u64) {
        if !self.is_supported() {
            return;
        }
        if let Err(e) = sync_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE) {
            self.failed(path, e);
            return;
        }
        let (advise, retire) = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.fresh.push_back(Range {
                file: Arc::clone(file),
                path: path.to_path_buf(),
                offset,
                len,
                bytes,
            });
            q.fresh_bytes += bytes;
            q.bytes += bytes;
            let mut advise = Vec::new();
            while q.fresh.len() > 1 && q.fresh_bytes > self.soft {
                let r = q.fresh.pop_front().expect("more than one range");
                q.fresh_bytes -= r.bytes;
                advise.push((Arc::clone(&r.file), r.offset, r.len));
                q.advised.push_back(r);
            }
            let mut retire = Vec::new();
            while q.fresh.len() + q.advised.len() > 1
                && (q.bytes > self.hard || q.fresh.len() + q.advised.len() > self.max_ranges)
            {
                let r = match q.advised.pop_front() {
                    Some(r) => r,
                    None => {
                        let r = q.fresh.pop_front().expect("more than one range");
                        q.fresh_bytes -= r.bytes;
                        r
                    }
                };
                q.bytes -= r.bytes;
                retire.push(r);
            }
            (advise, retire)
        };
        for (file, offset, len) in advise {
            drop_cached(&file, offset, len);
        }
        for r in retire {
            self.retire(r);
        }
    }

    /// Waits for a range's writeback and drops its pages from the cache.
    fn retire(&self, r: Range) {
        let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        match sync_range(&r.file, r.offset, r.len, wait) {
            Ok(()) => drop_cached(&r.file, r.offset, r.len),
            Err(e) => self.failed(&r.path, e),
        }
    }

    /// Records a failure: an unsupported file switches write-behind off; any
    /// other error is kept for [`WriteBehind::take_error`].
    fn failed(&self, path: &Path, e: std::io::Error) {
        if matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::ESPIPE | libc::EOPNOTSUPP | libc::ENOSYS)
        ) {
            self.supported.store(false, Ordering::Relaxed);
            return;
        }
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(Error::io(path, e));
        }
    }

    /// Waits for every range still in flight and drops it from the cache.
    pub fn drain(&self) {
        let all: Vec<Range> = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.fresh_bytes = 0;
            q.bytes = 0;
            let advised = std::mem::take(&mut q.advised);
            advised.into_iter().chain(q.fresh.drain(..)).collect()
        };
        for r in all {
            self.retire(r);
        }
    }

    /// The first error writeback reported, if any (taken: reported once).
    pub fn take_error(&self) -> Result<()> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether write-behind is still on (off once the file system refused it).
    pub fn is_supported(&self) -> bool {
        self.supported.load(Ordering::Relaxed)
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.drain();
    }
}

fn sync_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: a valid open descriptor; the call reads no memory of ours.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Asks the kernel to drop a range's clean pages (it keeps dirty ones and
/// those being written). Advice only: nothing is lost if it is ignored.
fn drop_cached(file: &File, offset: u64, len: u64) {
    // SAFETY: a valid open descriptor; the call reads no memory of ours.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

/// Writes to one file and hands what it wrote to the write-behind, in whole
/// pages every [`STEP`] bytes and the rest at [`BehindWriter::finish`].
pub struct BehindWriter<'a> {
    behind: &'a WriteBehind,
    file: Arc<File>,
    path: PathBuf,
    /// Bytes written and not yet handed over (they end at the file's position).
    pending: u64,
    /// Whether a range of this file was handed over already.
    handed: bool,
}

impl BehindWriter<'_> {
    /// The file's position, or `None` (and write-behind off) if it has none:
    /// a pipe has nothing to write back.
    fn position(&self) -> Option<u64> {
        match (&*self.file).stream_position() {
            Ok(pos) => Some(pos),
            Err(_) => {
                self.behind.supported.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// Hands over the rest of what was written, to the end of the file
    /// (nothing, for a file smaller than [`SMALL`]).
    pub fn finish(mut self) {
        if self.pending == 0 || !self.behind.is_supported() {
            return;
        }
        if !self.handed && self.pending < SMALL {
            return;
        }
        if let Some(pos) = self.position() {
            let bytes = std::mem::take(&mut self.pending);
            let offset = pos.saturating_sub(bytes);
            self.behind.push(&self.file, &self.path, offset, 0, bytes);
        }
    }
}

impl Write for BehindWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (&*self.file).write(buf)?;
        self.pending += n as u64;
        if self.pending >= STEP && self.behind.is_supported() {
            let Some(pos) = self.position() else {
                return Ok(n);
            };
            // Whole pages only: a page cut by a range boundary would be
            // dropped by neither range.
            let start = pos.saturating_sub(self.pending);
            let end = pos & !(PAGE - 1);
            if end > start {
                self.behind
                    .push(&self.file, &self.path, start, end - start, end - start);
                self.pending = pos - end;
                self.handed = true;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;

    /// Pages of `path` resident in the page cache, by `mincore`.
    fn resident_pages(path: &Path) -> usize {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: the test's own file, not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let pages = len.div_ceil(PAGE as usize);
        let mut vec = vec![0u8; pages];
        // SAFETY: the mapping is `len` bytes long and `vec` has a byte per page.
        let r = unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, len, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    fn on_tmpfs(path: &Path) -> bool {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs is plain old data; all zeroes is a valid value.
        let mut s: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a statfs to fill.
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut s) }, 0);
        s.f_type == libc::TMPFS_MAGIC
    }

    #[test]
    fn written_data_is_intact_and_leaves_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        // Windows so small that every stage runs: ranges dropped once,
        // waited for and dropped again, and the rest drained at the end.
        let behind = WriteBehind::with_windows(2 * STEP, 4 * STEP, 8);
        let mut expected = Vec::new();
        // Files of odd sizes, small ones among them and one much larger than
        // the windows, written in odd pieces.
        for (i, len) in [
            1usize,
            4097,
            SMALL as usize - 1,
            SMALL as usize,
            100_000,
            3 * STEP as usize + 12_345,
            17 * STEP as usize + 1,
            STEP as usize,
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("f{i}"));
            let file = Arc::new(File::create(&path).unwrap());
            let bytes = noise(len, i as u64);
            let mut w = behind.writer(file, &path);
            for piece in bytes.chunks(65_537) {
                w.write_all(piece).unwrap();
            }
            w.finish();
            expected.push((path, bytes));
        }
        behind.drain();
        behind.take_error().unwrap();
        if on_tmpfs(dir.path()) {
            eprintln!("tmpfs keeps every page: residency not checked");
        } else {
            assert!(
                behind.is_supported(),
                "sync_file_range refused on this file system"
            );
            for (path, bytes) in &expected {
                if bytes.len() as u64 >= SMALL {
                    assert_eq!(
                        resident_pages(path),
                        0,
                        "{} stayed in the page cache",
                        path.display()
                    );
                }
            }
        }
        for (path, bytes) in &expected {
            assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
        }
    }

    #[test]
    fn a_pipe_switches_write_behind_off_and_loses_nothing() {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let file = Arc::new(File::from(std::os::fd::OwnedFd::from(writer)));
        let behind = WriteBehind::default();
        let bytes = noise(3 * STEP as usize, 7);
        let reading = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
            got
        });
        let mut w = behind.writer(file, Path::new("pipe"));
        w.write_all(&bytes).unwrap();
        w.finish();
        drop(behind);
        assert_eq!(reading.join().unwrap(), bytes);
    }
}
