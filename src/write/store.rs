//! The write side of the data flow: dedup, seal in parallel, pack, store, index.
//!
//! [`BlobStore::add`] computes a blob's keyed id on the caller's thread and
//! drops it at once if the repository or this run already holds it. New
//! blobs are batched and handed to a writer thread, which seals each batch in
//! parallel (compress, encrypt, verify) and passes it on to a pack thread,
//! which appends the results to data or tree packs in the order they were
//! added, so output is deterministic (and the next batch is sealed while the
//! last one is appended).
//! Where the backend can (a local directory), an open pack's bytes go to a
//! temporary file as they are added, leave memory, and are synced in the
//! background, so the last fsync has little left to wait for; a full pack
//! is then only completed, synced and linked into place. Full packs are
//! written first; every few packs, and at the end, an index file lists the
//! packs written so far. Memory is bounded by the batch size and the
//! channels' depth (one batch each), plus two whole packs where they cannot
//! be staged (an object store), whatever the size of the input; what grows
//! is the set of ids this run added (for dedup within the run), by about
//! two bytes an id once [`AddedIds`] spills them to disk.
//!
//! A batch keeps its blobs back to back in one buffer, is sealed into
//! another, and each buffer goes back to the stage that fills it once the
//! next stage is done with it; a full pack's buffer, drained to its staged
//! file, passes on to the next pack, and only the footer travels with the
//! full pack. So a long run allocates its chunk-sized memory once: buffers
//! of every size freed and allocated again, chunk after chunk, are what
//! spread glibc's arenas (and the RSS) as a stream goes on.

use crate::backend::StagedFile;
use crate::blob::{self, BlobInfo, BlobKind};
use crate::error::{Error, Result};
use crate::format::pack::{FinishedPack, PackKind, PackWriter};
use crate::ids::{ChunkId, IndexId};
use crate::index::{Index, IndexFile};
use crate::repo::writer::RepoWriter;
use crate::repo::Repository;
use crate::write::added::AddedIds;
use crate::write::delta::DeltaPlan;
use crossbeam_channel::{bounded, Sender};
use std::thread::JoinHandle;

const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_BLOBS: usize = 256;
/// A batch older than this goes to the writer even if small, so that new
/// data found early in a walk of mostly unchanged files is sealed and on
/// its way to the disk long before the walk ends (batches only group work:
/// the packs are the same whatever the batches).
const BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(5);
/// Write an index file after this many packs, so an interrupted run's packs are reused.
const PACKS_PER_INDEX: usize = 8;
const TREE_PACK_SIZE: usize = 4 * 1024 * 1024;

/// What the store wrote.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    pub blobs_new: u64,
    /// New blobs stored as deltas.
    pub blobs_delta: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
    pub packs: u64,
    pub index_files: Vec<IndexId>,
}

/// A blob waiting to be sealed (its plaintext is `len` bytes at `at` in
/// its batch), with the base to try a delta against.
struct Pending {
    id: ChunkId,
    kind: BlobKind,
    at: usize,
    len: usize,
    delta: Option<DeltaPlan>,
}

/// Blobs with their bytes back to back in one buffer.
struct Buffered<T> {
    bytes: Vec<u8>,
    blobs: Vec<T>,
}

/// Blobs waiting to be sealed, their plaintexts back to back.
type Batch = Buffered<Pending>;
/// Sealed blobs, their bytes back to back (each at the offset beside it).
type SealedBatch = Buffered<(BlobInfo, usize)>;

impl<T> Default for Buffered<T> {
    fn default() -> Self {
        Buffered {
            bytes: Vec::new(),
            blobs: Vec::new(),
        }
    }
}

/// What a batch's buffer is given at first: one chunk past the limit fits.
const BATCH_ROOM: usize = BATCH_BYTES + BATCH_BYTES / 4;
/// A buffer that grew past this (around a large tree blob) is not reused.
const KEEP_BYTES: usize = 2 * BATCH_BYTES;

/// Takes a buffer handed back by the next stage, or a new one.
fn reuse<T: Default>(back: &crossbeam_channel::Receiver<T>) -> T {
    back.try_recv().unwrap_or_default()
}

impl<T> Buffered<T> {
    /// Empties it for reuse; `None` if it grew too large to keep.
    fn recycle(mut self) -> Option<Self> {
        self.bytes.clear();
        self.blobs.clear();
        (self.bytes.capacity() <= KEEP_BYTES).then_some(self)
    }
}

pub struct BlobStore<'r> {
    repo: &'r Repository,
    index: &'r Index,
    added: AddedIds,
    pending: Batch,
    /// When the oldest pending blob was added.
    pending_since: Option<std::time::Instant>,
    tx: Option<Sender<Batch>>,
    /// Batches the writer has sealed, for reuse.
    back: crossbeam_channel::Receiver<Batch>,
    worker: Option<JoinHandle<Result<StoreStats>>>,
    blobs_new: u64,
    bytes_new: u64,
}

impl<'r> BlobStore<'r> {
    pub fn new(repo: &'r Repository, index: &'r Index) -> BlobStore<'r> {
        let (tx, rx) = bounded::<Batch>(1);
        let (back_tx, back) = crossbeam_channel::unbounded();
        let writer = Sealer {
            repo: repo.writer(),
        };
        let worker = std::thread::Builder::new()
            .name("sopvault-writer".into())
            .spawn(move || writer.run(rx, back_tx))
            .expect("spawning the writer thread");
        BlobStore {
            repo,
            index,
            added: AddedIds::new(Some(repo.cache_dir())),
            pending: Batch::default(),
            pending_since: None,
            tx: Some(tx),
            back,
            worker: Some(worker),
            blobs_new: 0,
            bytes_new: 0,
        }
    }

    /// The index this store deduplicates against.
    pub fn index(&self) -> &'r Index {
        self.index
    }

    /// The repository, for computing ids off this thread
    /// ([`Repository::chunk_id`]).
    pub fn repo(&self) -> &'r Repository {
        self.repo
    }

    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        self.repo.chunk_id(data)
    }

    /// True if the repository or this run already stores `id`.
    pub fn has(&self, id: &ChunkId) -> Result<bool> {
        // The run's newest ids and the index are in memory (or mapped);
        // its older ids cost a filter check, rarely a page read.
        Ok(self.added.contains_recent(id)
            || self.index.contains(id)
            || self.added.contains_spilled(id)?)
    }

    /// Stores a blob unless it is already present; returns its id and whether it was new.
    pub fn add(&mut self, kind: BlobKind, data: &[u8]) -> Result<(ChunkId, bool)> {
        let id = self.chunk_id(data);
        Ok((id, self.add_with_id(kind, id, data)?))
    }

    pub fn add_with_id(&mut self, kind: BlobKind, id: ChunkId, data: &[u8]) -> Result<bool> {
        self.add_delta(kind, id, data, || None)
    }

    /// Stores a blob unless present; a new data chunk is tried as a delta
    /// against the base `delta` names (asked for only when the blob is new).
    pub fn add_delta(
        &mut self,
        kind: BlobKind,
        id: ChunkId,
        data: &[u8],
        delta: impl FnOnce() -> Option<DeltaPlan>,
    ) -> Result<bool> {
        self.tick()?;
        if self.has(&id)? {
            return Ok(false);
        }
        let delta = delta();
        self.added.insert(id);
        self.blobs_new += 1;
        self.bytes_new += data.len() as u64;
        self.pending_since
            .get_or_insert_with(std::time::Instant::now);
        if self.pending.bytes.len() + data.len() > self.pending.bytes.capacity().max(BATCH_ROOM) {
            // A large blob (a chunk list, a tree) starts a batch of its
            // own rather than grow the buffers it passes through.
            self.send()?;
        }
        let batch = &mut self.pending;
        if batch.bytes.capacity() == 0 {
            batch.bytes.reserve(BATCH_ROOM);
        }
        batch.blobs.push(Pending {
            id,
            kind,
            at: batch.bytes.len(),
            len: data.len(),
            delta,
        });
        batch.bytes.extend_from_slice(data);
        if batch.bytes.len() >= BATCH_BYTES || batch.blobs.len() >= BATCH_BLOBS {
            self.send()?;
        }
        Ok(true)
    }

    /// Hands a pending batch older than `BATCH_AGE` to the writer if it can
    /// take one now; never waits for it. Called on every `add`, and by
    /// walkers while they pass over unchanged entries that add nothing.
    pub fn tick(&mut self) -> Result<()> {
        if self.pending_since.is_some_and(|t| t.elapsed() >= BATCH_AGE) {
            self.send_now(false)?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        self.send_now(true)
    }

    /// Sends the pending batch; when `wait` is false and the writer is
    /// busy, keeps it pending instead.
    fn send_now(&mut self, wait: bool) -> Result<()> {
        if self.pending.blobs.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let tx = self.tx.as_ref().expect("store is open");
        let sent = if wait {
            tx.send(batch).map_err(|_| ())
        } else {
            match tx.try_send(batch) {
                Ok(()) => Ok(()),
                Err(crossbeam_channel::TrySendError::Full(batch)) => {
                    self.pending = batch;
                    return Ok(());
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(()),
            }
        };
        if sent.is_err() {
            // The writer stopped: its error is the one to report.
            return Err(self.join().err().unwrap_or_else(|| Error::Internal {
                what: "writer thread stopped".into(),
            }));
        }
        self.pending = reuse(&self.back);
        self.pending_since = None;
        Ok(())
    }

    fn join(&mut self) -> Result<StoreStats> {
        self.tx = None;
        match self.worker.take() {
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(Error::Internal {
                    what: "writer thread panicked".into(),
                })
            }),
            None => Err(Error::Internal {
                what: "writer thread already finished".into(),
            }),
        }
    }

    /// Flushes everything, writes the last packs and index file.
    pub fn finish(mut self) -> Result<StoreStats> {
        self.send()?;
        let mut stats = self.join()?;
        stats.blobs_new = self.blobs_new;
        stats.bytes_new = self.bytes_new;
        Ok(stats)
    }
}

impl Drop for BlobStore<'_> {
    fn drop(&mut self) {
        // On an error path, still store what was sealed so a rerun can reuse it.
        self.tx = None;
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

/// The writer thread: seals batches and hands them on to be packed.
struct Sealer {
    repo: RepoWriter,
}

impl Sealer {
    /// Seals batches in parallel; a second thread appends the sealed blobs
    /// to packs (and stages them), a third writes full packs and index
    /// files. So the next batch is sealed on every core while the previous
    /// one is being appended and written out, and sealing overlaps with
    /// disk writes and fsyncs.
    fn run(
        self,
        rx: crossbeam_channel::Receiver<Batch>,
        back: Sender<Batch>,
    ) -> Result<StoreStats> {
        let (pack_tx, pack_rx) = bounded::<Finished>(1);
        let io = {
            let repo = self.repo.clone();
            std::thread::Builder::new()
                .name("sopvault-io".into())
                .spawn(move || write_packs(&repo, pack_rx))
                .expect("spawning the pack writer thread")
        };
        let (sealed_tx, sealed_rx) = bounded::<SealedBatch>(1);
        let (sealed_back_tx, sealed_back) = crossbeam_channel::unbounded();
        let packer = {
            let repo = self.repo.clone();
            std::thread::Builder::new()
                .name("sopvault-pack".into())
                .spawn(move || {
                    let flow = PackFlow {
                        rx: sealed_rx,
                        back: sealed_back_tx,
                        packs: pack_tx,
                    };
                    fill_packs(&repo, flow)
                })
                .expect("spawning the pack filler thread")
        };
        let sealed = (|| -> Result<()> {
            for batch in rx.iter() {
                let mut out = reuse(&sealed_back);
                self.seal_batch(&batch, &mut out)?;
                if let Some(b) = batch.recycle() {
                    let _ = back.send(b);
                }
                if sealed_tx.send(out).is_err() {
                    // The packer stopped; its error is reported below.
                    break;
                }
            }
            Ok(())
        })();
        drop(sealed_tx);
        let packed = packer.join().unwrap_or_else(|_| {
            Err(Error::Internal {
                what: "pack filler thread panicked".into(),
            })
        });
        let written = io.join().unwrap_or_else(|_| {
            Err(Error::Internal {
                what: "pack writer thread panicked".into(),
            })
        });
        // The earliest failure in the flow is the one to report.
        sealed?;
        let (bytes_stored, blobs_delta) = packed?;
        let mut stats = written?;
        stats.bytes_stored = bytes_stored;
        stats.blobs_delta = blobs_delta;
        Ok(stats)
    }

    /// Seals a batch in parallel into `out`, each blob in a slot of its
    /// largest sealed size, in the batch's order.
    fn seal_batch(&self, batch: &Batch, out: &mut SealedBatch) -> Result<()> {
        use rayon::prelude::*;
        let total = batch.blobs.iter().map(|p| blob::sealed_bound(p.len)).sum();
        out.bytes.clear();
        // Exactly: a doubled buffer would outgrow `KEEP_BYTES` and not come back.
        out.bytes.reserve_exact(total);
        out.bytes.resize(total, 0);
        let mut slots = Vec::with_capacity(batch.blobs.len());
        let mut rest = &mut out.bytes[..];
        let mut at = 0;
        for p in &batch.blobs {
            let (slot, tail) = rest.split_at_mut(blob::sealed_bound(p.len));
            slots.push((at, slot));
            at += blob::sealed_bound(p.len);
            rest = tail;
        }
        out.blobs = batch
            .blobs
            .par_iter()
            .zip(slots)
            .map(|(p, (at, slot))| {
                let plain = &batch.bytes[p.at..p.at + p.len];
                Ok((self.seal(p, plain, slot)?, at))
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Seals one blob into `slot`: as a delta when it has a base that
    /// decodes and the delta pays.
    fn seal(&self, p: &Pending, plain: &[u8], slot: &mut [u8]) -> Result<BlobInfo> {
        if let Some(plan) = &p.delta {
            // A base that cannot be read only costs this chunk its delta;
            // `check` reports the damage.
            if let Ok(base) = self.repo.decode_base(&plan.chain) {
                let b = self.repo.seal_delta(p.id, plain, plan.delta, &base)?;
                // A delta larger than the plaintext (only possible for a
                // tiny chunk) is not worth its base: seal it plainly.
                if let Some(dst) = slot.get_mut(..b.bytes.len()) {
                    dst.copy_from_slice(&b.bytes);
                    return Ok(b.info());
                }
            }
        }
        self.repo.seal_into(p.kind, p.id, plain, slot)
    }
}

/// A pack being filled, and its bytes so far on their way to the disk.
struct OpenPack {
    writer: PackWriter,
    staged: Option<Box<dyn StagedFile>>,
    /// The backend cannot stage (an object store), or staging could not
    /// start: the pack is held in memory and written whole at the end,
    /// which reports the error if it persists.
    unstaged: bool,
}

/// A full pack for the I/O thread, with the part of it already written.
struct Finished {
    pack: FinishedPack,
    staged: Option<Box<dyn StagedFile>>,
}

impl OpenPack {
    fn new(kind: PackKind, buf: Vec<u8>) -> OpenPack {
        OpenPack {
            writer: PackWriter::with_buffer(kind, buf),
            staged: None,
            unstaged: false,
        }
    }

    /// Writes out what was added since the last call, where the backend
    /// can take a file before its name is known, and drops it from memory.
    /// Once part of the pack is only on disk, a failed write fails the run.
    fn stage(&mut self, repo: &RepoWriter) -> Result<()> {
        if self.unstaged || self.writer.is_empty() {
            return Ok(());
        }
        if self.staged.is_none() {
            match repo.stage_pack() {
                Ok(Some(s)) => self.staged = Some(s),
                _ => {
                    self.unstaged = true;
                    return Ok(());
                }
            }
        }
        let s = self.staged.as_mut().expect("staged above");
        self.writer.drain(|bytes| s.append(bytes))
    }

    /// Stages what is buffered and hands over the emptied buffer, for the
    /// next pack; a pack held whole in memory (an object store) keeps its
    /// own, and an empty one is handed over.
    fn take_buffer(&mut self, repo: &RepoWriter) -> Result<Vec<u8>> {
        self.stage(repo)?;
        Ok(self.writer.take_buffer().unwrap_or_default())
    }

    fn finish(self, repo: &RepoWriter) -> Result<Finished> {
        Ok(Finished {
            pack: repo.finish_pack(self.writer)?,
            staged: self.staged,
        })
    }
}

/// The pack filler's channels: sealed batches in (and back, once
/// appended), full packs out.
struct PackFlow {
    rx: crossbeam_channel::Receiver<SealedBatch>,
    back: Sender<SealedBatch>,
    packs: Sender<Finished>,
}

/// Appends sealed blobs to data or tree packs in the order they come,
/// stages each batch, and hands full packs to the I/O thread. Returns the
/// bytes stored and the number of deltas.
fn fill_packs(repo: &RepoWriter, flow: PackFlow) -> Result<(u64, u64)> {
    let pack_size = repo.pack_size();
    let mut bytes_stored = 0u64;
    let mut blobs_delta = 0u64;
    let mut data = OpenPack::new(PackKind::Data, Vec::new());
    let mut tree = OpenPack::new(PackKind::Tree, Vec::new());
    for sealed in flow.rx.iter() {
        // Room for the whole batch at once, exactly (see `seal_batch`).
        let (mut for_data, mut for_tree) = (0, 0);
        for (info, _) in &sealed.blobs {
            match PackKind::for_blob(info.kind) {
                PackKind::Data => for_data += info.stored_len as usize,
                PackKind::Tree => for_tree += info.stored_len as usize,
            }
        }
        data.writer.reserve(for_data);
        tree.writer.reserve(for_tree);
        for &(info, at) in &sealed.blobs {
            if info.delta.is_some() {
                blobs_delta += 1;
            }
            bytes_stored += u64::from(info.stored_len);
            let kind = PackKind::for_blob(info.kind);
            let (p, limit, rest) = match kind {
                PackKind::Data => (&mut data, pack_size, &mut for_data),
                PackKind::Tree => (&mut tree, TREE_PACK_SIZE, &mut for_tree),
            };
            p.writer
                .add_bytes(info, &sealed.bytes[at..at + info.stored_len as usize]);
            *rest -= info.stored_len as usize;
            if p.writer.len() >= limit as u64 {
                // A staged pack's bytes leave memory here, and its buffer
                // goes on to the next pack: only the footer travels on.
                let buf = p.take_buffer(repo)?;
                let full = std::mem::replace(p, OpenPack::new(kind, buf));
                p.writer.reserve(*rest);
                if flow.packs.send(full.finish(repo)?).is_err() {
                    // The I/O thread stopped; its error is reported by the caller.
                    return Ok((bytes_stored, blobs_delta));
                }
            }
        }
        if let Some(b) = sealed.recycle() {
            let _ = flow.back.send(b);
        }
        data.stage(repo)?;
        tree.stage(repo)?;
    }
    for p in [data, tree] {
        if !p.writer.is_empty() && flow.packs.send(p.finish(repo)?).is_err() {
            break;
        }
    }
    Ok((bytes_stored, blobs_delta))
}

/// Writes finished packs, and an index file every few packs and at the end.
fn write_packs(repo: &RepoWriter, rx: crossbeam_channel::Receiver<Finished>) -> Result<StoreStats> {
    let mut stats = StoreStats::default();
    let mut index = IndexFile::default();
    let write_index = |index: &mut IndexFile, stats: &mut StoreStats| -> Result<()> {
        if index.packs.is_empty() {
            return Ok(());
        }
        let id = repo.write_index_file(&std::mem::take(index))?;
        stats.index_files.push(id);
        Ok(())
    };
    for Finished { pack, staged } in rx.iter() {
        let name = pack.id.to_hex();
        match staged {
            Some(s) => {
                debug_assert_eq!(s.written() + pack.bytes.len() as u64, pack.len);
                s.commit(&name, &pack.bytes)?;
            }
            None => repo.store_pack(&pack.id, &pack.bytes)?,
        }
        let no = index.packs.len() as u32;
        index.packs.push((pack.id, pack.len));
        index.entries.extend(pack.blobs.iter().map(|b| (no, *b)));
        stats.packs += 1;
        if index.packs.len() >= PACKS_PER_INDEX {
            write_index(&mut index, &mut stats)?;
        }
    }
    write_index(&mut index, &mut stats)?;
    Ok(stats)
}
