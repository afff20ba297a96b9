//! [`RepoWriter`]: the repository's write operations for the threads of a
//! run that outlive a borrow of it — the store's sealing, pack-filling and
//! I/O threads ([`crate::write::store`]). It seals blobs (plainly or as a
//! delta against a base it decodes), stages, finishes and stores packs, and
//! writes index files; the key and the backend stay behind it.
//!
//! The write order is the store's to keep: packs first, then the index file
//! that lists them; the manifest goes through [`Repository::write_snapshot`]
//! once the store has finished.

use super::chain::{decode_chain, LinkCheck};
use super::Repository;
use crate::backend::{Backend, FileKind, StagedFile};
use crate::blob::{self, BlobInfo, BlobKind, DeltaRef, SealedBlob};
use crate::crypto::MasterKey;
use crate::error::Result;
use crate::format::pack::{FinishedPack, PackWriter};
use crate::ids::{sha256, ChunkId, IndexId, PackId};
use crate::index::{IndexFile, Location};
use std::sync::Arc;

/// A handle on one repository's key and backend for writer threads: cheap
/// to clone (two shared pointers and the config's sealing settings).
#[derive(Clone)]
pub struct RepoWriter {
    backend: Arc<dyn Backend>,
    key: Arc<MasterKey>,
    level: i32,
    pack_size: usize,
}

impl Repository {
    /// The write operations a writer thread needs, as a handle it can own.
    pub fn writer(&self) -> RepoWriter {
        RepoWriter {
            backend: self.backend.clone(),
            key: self.key.clone(),
            level: self.config.compression_level,
            pack_size: self.config.pack_size as usize,
        }
    }

    /// The keyed id of a chunk's plaintext.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        self.key.chunk_id(data)
    }
}

impl RepoWriter {
    /// The configured size of a data pack, in bytes.
    pub fn pack_size(&self) -> usize {
        self.pack_size
    }

    /// Compresses, seals and verifies a blob into `slot` (see [`blob::seal_into`]).
    pub fn seal_into(
        &self,
        kind: BlobKind,
        id: ChunkId,
        plain: &[u8],
        slot: &mut [u8],
    ) -> Result<BlobInfo> {
        blob::seal_into(&self.key, kind, id, plain, self.level, slot)
    }

    /// Seals a data chunk as a delta against `base`, the verified plaintext
    /// of `delta.base`, when that pays (see [`blob::seal_delta`]).
    pub fn seal_delta(
        &self,
        id: ChunkId,
        plain: &[u8],
        delta: DeltaRef,
        base: &[u8],
    ) -> Result<SealedBlob> {
        blob::seal_delta(&self.key, id, plain, delta, base, self.level)
    }

    /// The plaintext of a delta base, decoded through its `chain` (the base
    /// first, down to a full chunk) with every link verified in full.
    pub fn decode_base(&self, chain: &[Location]) -> Result<Arc<Vec<u8>>> {
        decode_chain(
            &self.key,
            self.backend.as_ref(),
            chain,
            None,
            None,
            LinkCheck::Full,
        )
    }

    /// A file to write a new pack into before its name is known; `None`
    /// where the backend cannot stage (an object store).
    pub fn stage_pack(&self) -> Result<Option<Box<dyn StagedFile>>> {
        self.backend.stage_new(FileKind::Pack)
    }

    /// Seals a full pack's footer and names the pack.
    pub fn finish_pack(&self, pack: PackWriter) -> Result<FinishedPack> {
        pack.finish(&self.key)
    }

    /// Stores a finished pack that was held in memory.
    pub fn store_pack(&self, id: &PackId, bytes: &[u8]) -> Result<()> {
        self.backend.write_new(FileKind::Pack, &id.to_hex(), bytes)
    }

    /// Encrypts and stores an index file; returns its id.
    pub fn write_index_file(&self, file: &IndexFile) -> Result<IndexId> {
        let bytes = file.encode(&self.key)?;
        let id = IndexId(sha256(&bytes));
        self.backend
            .write_new(FileKind::Index, &id.to_hex(), &bytes)?;
        Ok(id)
    }
}
