//! Blob reads: one blob by its location or id (a delta through its chain
//! of bases, with [`crate::repo::chain`]), trees and chunk lists, and runs of
//! blobs that lie back to back in one pack, read in one go
//! ([`contiguous_runs`], [`Repository::read_sealed_run`]) by restore and the
//! mount's prefetcher. Every blob is authenticated and its id recomputed.

use super::chain::LinkCheck;
use super::Repository;
use crate::backend::FileKind;
use crate::blob;
use crate::error::{Error, Result};
use crate::format::tree::{ChunkList, ChunkRef, Content, Tree};
use crate::ids::ChunkId;
use crate::index::{Index, Location};
use std::ops::Range;
use std::sync::Arc;

impl Repository {
    /// Reads, opens and verifies one blob (a delta through its chain of bases).
    pub fn read_blob(&self, index: &Index, loc: &Location) -> Result<Vec<u8>> {
        let sealed = self.backend.read_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            loc.blob.offset,
            loc.blob.stored_len as usize,
        )?;
        self.open_blob(index, loc, &sealed)
    }

    /// Opens and verifies one blob read from its pack; a delta's bases come
    /// from the cache or are read and decoded first.
    pub fn open_blob(&self, index: &Index, loc: &Location, sealed: &[u8]) -> Result<Vec<u8>> {
        let damaged = |reason: String| Error::BlobDamaged {
            chunk: loc.blob.id,
            pack: loc.pack,
            offset: loc.blob.offset,
            reason,
        };
        let opened = match loc.blob.delta {
            None => blob::open(&self.key, &loc.blob, sealed),
            Some(_) => {
                let base = self.delta_base(index, loc, LinkCheck::Authenticity)?;
                match blob::open_delta(&self.key, &loc.blob, sealed, &base) {
                    // The base's links were not verified on their own: a
                    // wrong one shows only here. Decode them again, verified,
                    // so that the error names the damaged link (if any).
                    Err(
                        blob::OpenError::IdMismatch { .. }
                        | blob::OpenError::Decompression(_)
                        | blob::OpenError::Length { .. },
                    ) => {
                        let base = self.delta_base(index, loc, LinkCheck::Full)?;
                        blob::open_delta(&self.key, &loc.blob, sealed, &base)
                    }
                    other => other,
                }
            }
        };
        opened.map_err(|e| damaged(e.to_string()))
    }

    /// The plaintext of a delta's base: from the cache, or decoded through its
    /// chain (every link verified in full with [`LinkCheck::Full`], which
    /// bypasses the cache's entries and replaces them).
    pub fn delta_base(
        &self,
        index: &Index,
        loc: &Location,
        check: LinkCheck,
    ) -> Result<Arc<Vec<u8>>> {
        let cached = (check == LinkCheck::Authenticity).then_some(&self.bases);
        let (mut links, start) = crate::repo::chain::chain(index, loc, cached)?;
        // `links[0]` is the delta itself: decode only what lies below it.
        links.remove(0);
        if links.is_empty() {
            return start.ok_or_else(|| Error::Internal {
                what: "empty delta chain".into(),
            });
        }
        crate::repo::chain::decode_chain(
            &self.key,
            self.backend.as_ref(),
            &links,
            start,
            Some(&self.bases),
            check,
        )
        .map_err(|e| Error::BlobDamaged {
            chunk: loc.blob.id,
            pack: loc.pack,
            offset: loc.blob.offset,
            reason: format!("its delta base cannot be read: {e}"),
        })
    }

    pub fn read_blob_by_id(&self, index: &Index, id: &ChunkId, needed_by: &str) -> Result<Vec<u8>> {
        let loc = index.lookup(id).ok_or_else(|| Error::MissingChunk {
            chunk: *id,
            needed_by: needed_by.to_string(),
        })?;
        self.read_blob(index, &loc)
    }

    pub fn load_tree(&self, index: &Index, id: &ChunkId, path: &str) -> Result<Tree> {
        let bytes = self.read_blob_by_id(index, id, &format!("directory {path}"))?;
        Tree::decode(&bytes, &format!("tree {} ({path})", id.short()))
    }

    /// The flat list of chunks of a file's content.
    pub fn content_chunks(
        &self,
        index: &Index,
        content: &Content,
        path: &str,
    ) -> Result<Vec<ChunkRef>> {
        match content {
            Content::Chunks(c) => Ok(c.clone()),
            Content::Lists(lists) => {
                let mut out = Vec::new();
                for l in lists {
                    let bytes =
                        self.read_blob_by_id(index, &l.id, &format!("chunk list of {path}"))?;
                    let list = ChunkList::decode(
                        &bytes,
                        &format!("chunk list {} ({path})", l.id.short()),
                    )?;
                    if list.chunks.len() != l.chunks as usize {
                        return Err(Error::damaged(
                            format!("chunk list {} ({path})", l.id.short()),
                            format!("expected {} refs, found {}", l.chunks, list.chunks.len()),
                        ));
                    }
                    out.extend(list.chunks);
                }
                Ok(out)
            }
        }
    }

    /// The sealed bytes of `run`, blobs back to back in one pack (as
    /// [`contiguous_runs`] groups them), read in one request; the blob at
    /// `loc` is [`sealed_in_run`]`(run, bytes, loc)`.
    pub fn read_sealed_run(&self, run: &[Location]) -> Result<Vec<u8>> {
        let (first, last) = (&run[0], &run[run.len() - 1]);
        let len = (last.blob.offset + last.blob.stored_len as u64 - first.blob.offset) as usize;
        self.backend
            .read_range(FileKind::Pack, &first.pack.to_hex(), first.blob.offset, len)
    }
}

/// The sealed bytes of `loc` within the bytes [`Repository::read_sealed_run`] read for `run`.
pub fn sealed_in_run<'b>(run: &[Location], bytes: &'b [u8], loc: &Location) -> &'b [u8] {
    let at = (loc.blob.offset - run[0].blob.offset) as usize;
    &bytes[at..at + loc.blob.stored_len as usize]
}

/// Groups `locs` into runs of blobs that follow each other in one pack, in
/// order, each spanning at most `max_bytes`: one read each.
pub fn contiguous_runs(locs: &[Location], max_bytes: u64) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for i in 0..locs.len() {
        let extends = runs.last().is_some_and(|r| {
            let (first, prev, cur) = (&locs[r.start], &locs[i - 1], &locs[i]);
            cur.pack == prev.pack
                && cur.blob.offset == prev.blob.offset + prev.blob.stored_len as u64
                && cur.blob.offset + cur.blob.stored_len as u64 - first.blob.offset <= max_bytes
        });
        match runs.last_mut() {
            Some(r) if extends => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobInfo, BlobKind, Codec};
    use crate::ids::PackId;

    fn at(pack: u8, offset: u64, stored_len: u32) -> Location {
        Location {
            pack: PackId([pack; 32]),
            blob: BlobInfo {
                id: ChunkId([offset as u8; 32]),
                kind: BlobKind::Data,
                codec: Codec::Zstd,
                offset,
                stored_len,
                raw_len: stored_len,
                delta: None,
            },
        }
    }

    #[test]
    fn runs_break_at_a_gap_another_pack_or_the_size_limit() {
        let locs = [
            at(1, 10, 5),
            at(1, 15, 5),  // follows: same run
            at(1, 25, 5),  // a gap
            at(2, 30, 5),  // another pack
            at(2, 35, 10), // follows, and the run spans 15 bytes
            at(2, 45, 1),  // would span 16 bytes: a new run
        ];
        assert_eq!(contiguous_runs(&locs, 15), vec![0..2, 2..3, 3..5, 5..6]);
        let bytes: Vec<u8> = (30..46).collect();
        let run = &locs[3..5];
        assert_eq!(sealed_in_run(run, &bytes, &run[1]), &bytes[5..15]);
    }
}
