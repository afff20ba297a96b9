//! Trees: one blob per directory, and chunk lists for very long files.
//!
//! A [`Tree`] lists a directory's entries sorted by raw name bytes (names and
//! symlink targets are bytes, not UTF-8). A file's content is a list of
//! [`ChunkRef`]s (id and raw length, so a reader can seek without reading);
//! beyond [`INLINE_CHUNKS`] chunks the refs move into [`ChunkList`] blobs of at
//! most [`LIST_CHUNKS`] refs each, so neither a tree nor the snapshot writer's
//! memory grows with the size of one file. Both are encoded with postcard 1.x
//! (the exact encoding is in `format-spec.md`).

use crate::error::{Error, Result};
use crate::format::{decode_postcard, encode_postcard};
use crate::ids::ChunkId;
use serde::{Deserialize, Serialize};

/// Files with more chunks than this store their refs in chunk-list blobs.
pub const INLINE_CHUNKS: usize = 1024;
/// Most refs a chunk-list blob may hold (what readers accept).
pub const LIST_CHUNKS: usize = 32 * 1024;
/// Refs per chunk-list blob as the snapshot writer cuts them: a list of
/// 147 KB, so a long stream's lists pass through the pipeline like its
/// chunks do (a list of the full 32768 refs is a 1.2 MB blob that, with its
/// encoding, added 3.5 MB to a long snapshot's peak memory).
pub const LIST_CHUNKS_WRITTEN: usize = 4096;
/// Decoder limit on the entries of one tree.
pub const MAX_TREE_ENTRIES: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRef {
    pub id: ChunkId,
    pub chunks: u32,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    Chunks(Vec<ChunkRef>),
    Lists(Vec<ListRef>),
}

impl Content {
    pub fn empty() -> Content {
        Content::Chunks(Vec::new())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkList {
    pub chunks: Vec<ChunkRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File { size: u64, content: Content },
    Dir { tree: ChunkId },
    Symlink { target: Vec<u8> },
    Fifo,
    CharDevice { rdev: u64 },
    BlockDevice { rdev: u64 },
    Socket,
}

/// One directory entry with its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits and file type, as in `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub inode: u64,
    pub device: u64,
    pub links: u64,
    pub xattrs: Vec<Xattr>,
}

impl Node {
    pub fn size(&self) -> u64 {
        match &self.kind {
            NodeKind::File { size, .. } => *size,
            NodeKind::Symlink { target } => target.len() as u64,
            _ => 0,
        }
    }
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        encode_postcard(self)
    }

    /// Decodes and validates a tree: names unique, sorted, non-empty, without `/` or NUL.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Tree> {
        let t: Tree = decode_postcard(bytes, object)?;
        if t.nodes.len() > MAX_TREE_ENTRIES {
            return Err(Error::damaged(
                object,
                format!("{} entries exceed the limit", t.nodes.len()),
            ));
        }
        for (i, n) in t.nodes.iter().enumerate() {
            if n.name.is_empty()
                || n.name == b"."
                || n.name == b".."
                || n.name.iter().any(|b| *b == b'/' || *b == 0)
            {
                return Err(Error::damaged(
                    object,
                    format!("invalid entry name {:?}", n.name_lossy()),
                ));
            }
            if i > 0 && t.nodes[i - 1].name >= n.name {
                return Err(Error::damaged(
                    object,
                    "entries are not sorted by name or not unique",
                ));
            }
        }
        Ok(t)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Inserts a node keeping the order; replaces a node of the same name.
    pub fn insert(&mut self, node: Node) {
        match self.nodes.binary_search_by(|n| n.name.cmp(&node.name)) {
            Ok(i) => self.nodes[i] = node,
            Err(i) => self.nodes.insert(i, node),
        }
    }
}

impl ChunkList {
    pub fn encode(&self) -> Vec<u8> {
        encode_postcard(self)
    }
    pub fn decode(bytes: &[u8], object: &str) -> Result<ChunkList> {
        let l: ChunkList = decode_postcard(bytes, object)?;
        if l.chunks.len() > LIST_CHUNKS {
            return Err(Error::damaged(
                object,
                format!("{} refs exceed the limit of {LIST_CHUNKS}", l.chunks.len()),
            ));
        }
        Ok(l)
    }
}
