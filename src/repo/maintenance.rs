//! The repository operations that `check`, `prune`, `repair index` and
//! `unlock` need: listing stored files, reading them whole to verify them,
//! copying sealed blobs into new packs, writing prune records and deleting
//! what a prune or repair superseded.
//!
//! Each is named after what it means for the repository, not after the
//! backend call behind it; the write order (packs → index → prune record →
//! deletions) stays the caller's plan, and these are its steps.
//!
//! Layer: part of `repo`; uses `backend`, `index`, `format`, `blob`.

use crate::backend::FileKind;
use crate::blob::{self, BlobInfo, OpenError};
use crate::error::Result;
use crate::format::pack::{FinishedPack, PackWriter};
use crate::format::prune::PruneRecord;
use crate::ids::{sha256, IndexId, PackId, SnapshotId};
use crate::index::Index;
use crate::repo::lock::LockInfo;
use crate::repo::{check_name, Repository};
use std::collections::HashMap;

impl Repository {
    // ---- listing and reading stored files ----

    /// Names and sizes of the stored files of a kind, listed now (never an
    /// earlier listing of this run).
    pub fn stored_files(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.backend.list(kind)
    }

    /// The index files present now, by id (names that are not ids are left out).
    pub fn stored_index_files(&self) -> Result<Vec<IndexId>> {
        Ok(self
            .backend
            .list(FileKind::Index)?
            .into_iter()
            .filter_map(|(n, _)| IndexId::from_hex(&n))
            .collect())
    }

    /// The packs present now with their sizes (names that are not ids are left out).
    pub fn stored_packs(&self) -> Result<Vec<(PackId, u64)>> {
        Ok(self
            .backend
            .list(FileKind::Pack)?
            .into_iter()
            .filter_map(|(n, s)| Some((PackId::from_hex(&n)?, s)))
            .collect())
    }

    /// A stored file's bytes, whole and unverified: for checking that they
    /// hash to the file's name.
    pub fn read_stored_file(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.backend.read(kind, name)
    }

    /// A whole pack, unverified (its name is checked by whoever needs it).
    pub fn read_pack(&self, pack: &PackId) -> Result<Vec<u8>> {
        self.backend.read(FileKind::Pack, &pack.to_hex())
    }

    /// The blobs a whole pack's footer lists (trailer and footer checked).
    pub fn pack_footer_from_bytes(&self, pack: &PackId, bytes: &[u8]) -> Result<Vec<BlobInfo>> {
        crate::format::pack::read_footer_from_bytes(&self.key, bytes, &format!("packs/{pack}"))
    }

    // ---- verifying sealed blobs ----

    /// Opens a sealed (not delta) blob, decompresses it and recomputes its id.
    pub fn verify_sealed_blob(
        &self,
        info: &BlobInfo,
        sealed: &[u8],
    ) -> std::result::Result<(), OpenError> {
        blob::open(&self.key, info, sealed).map(|_| ())
    }

    /// Checks only a sealed blob's authentication (a delta, whose chain is
    /// decoded elsewhere).
    pub fn authenticate_sealed_blob(
        &self,
        info: &BlobInfo,
        sealed: &[u8],
    ) -> std::result::Result<(), OpenError> {
        blob::authenticate(&self.key, info, sealed).map(|_| ())
    }

    /// A merge of `ids` built in a private temporary directory rather than
    /// the local cache: `check` trusts nothing local.
    pub fn fresh_index(&self, ids: &[IndexId], present: &HashMap<PackId, u64>) -> Result<Index> {
        let tmp = std::env::temp_dir().join(format!(
            "sopvault-check-{}-{}",
            std::process::id(),
            hex::encode(&sha256(self.root.as_os_str().as_encoded_bytes())[..4])
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        let load = |id: &IndexId| self.load_index_file(id);
        let index = Index::open_or_build(
            &tmp.join("index.cache"),
            self.key.index_cache_key(),
            ids,
            present,
            &load,
        );
        let _ = std::fs::remove_dir_all(&tmp);
        index
    }

    // ---- writing and deleting under the exclusive lock ----

    /// Removes what interrupted writers left in `tmp/`; only under the
    /// exclusive lock, when nobody else writes. Returns how many files went.
    pub fn remove_temporary_files(&self) -> Result<usize> {
        self.backend.clean_tmp()
    }

    /// Seals a pack of copied blobs and stores it under its hash.
    pub fn store_pack(&self, writer: PackWriter) -> Result<FinishedPack> {
        let pack = writer.finish(&self.key)?;
        self.backend
            .write_new(FileKind::Pack, &pack.id.to_hex(), &pack.bytes)?;
        Ok(pack)
    }

    /// Writes a prune record; returns its name.
    pub fn write_prune_record(&self, record: &PruneRecord) -> Result<String> {
        let bytes = record.encode(&self.key)?;
        let name = hex::encode(sha256(&bytes));
        self.backend.write_new(FileKind::Prune, &name, &bytes)?;
        Ok(name)
    }

    /// Every prune record, each checked against its name, oldest first by time.
    pub fn prune_records(&self) -> Result<Vec<(String, PruneRecord)>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(FileKind::Prune)? {
            let bytes = self.backend.read(FileKind::Prune, &name)?;
            check_name(&bytes, &name, "prune")?;
            let record = PruneRecord::decode(&self.key, &bytes, &format!("prune/{name}"))?;
            out.push((name, record));
        }
        out.sort_by_key(|(_, r)| r.time.map(|t| t.at));
        Ok(out)
    }

    /// Deletes the manifests of forgotten snapshots.
    pub fn forget_snapshots(&self, ids: &[SnapshotId]) -> Result<()> {
        let names: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        self.backend.remove_many(FileKind::Snapshot, &names)
    }

    /// Deletes index files that a newer one supersedes.
    pub fn delete_index_files(&self, ids: &[IndexId]) -> Result<()> {
        let names: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        self.backend.remove_many(FileKind::Index, &names)
    }

    /// Deletes packs that no index file lists any more.
    pub fn delete_packs(&self, ids: &[PackId]) -> Result<()> {
        let names: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        self.backend.remove_many(FileKind::Pack, &names)
    }

    // ---- locks ----

    /// Every lock with its parsed contents (`None` when unreadable).
    pub fn locks(&self) -> Result<Vec<(String, Option<LockInfo>)>> {
        crate::repo::lock::list(self.backend.as_ref())
    }

    /// Removes one lock by name, whoever holds it.
    pub fn remove_lock(&self, name: &str) -> Result<()> {
        self.backend.remove_lock(name)
    }
}
