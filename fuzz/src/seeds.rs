//! Seed inputs built from real repository structures, one set per target.
//!
//! Every seed is laid out the way its target reads its input, so the fuzzer
//! starts from bytes that pass the decoders and mutates from there.

use crate::{key, seal_meta_file, sealed, BlobPrefix, OBJECT};
use sopvault::blob::{self, BlobInfo, BlobKind, Codec};
use sopvault::chunker::ChunkerProfile;
use sopvault::format::config::Config;
use sopvault::crypto::{Password, Secret32};
use sopvault::format::{encode_postcard, MAGIC_CONFIG, MAGIC_INDEX, MAGIC_SNAPSHOT};
use sopvault::ids::{IndexId, SnapshotId};
use sopvault::index::IndexFile;
use sopvault::format::keyfile::{self, Kdf, KdfParams};
use sopvault::format::manifest::{Snapshot, SnapshotTime, StreamRecord, Summary};
use sopvault::format::pack::{encode_entry, parse_trailer, PackKind, PackWriter, TRAILER_LEN};
use sopvault::format::tree::{
    ChunkList, ChunkRef, Content, ListRef, Node, NodeKind, Timestamp, Tree, Xattr,
};

/// One seed input.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

fn text(len: usize) -> Vec<u8> {
    let line = b"INSERT INTO orders VALUES (42, 'widget', 3, '2026-11-02 10:00:00');\n";
    line.iter().copied().cycle().take(len).collect()
}

fn noise(len: usize, mut s: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o100644,
        uid: 1000,
        gid: 1000,
        user: "backup".into(),
        group: "backup".into(),
        mtime: Timestamp {
            sec: 1_793_000_000,
            nsec: 5,
        },
        ctime: Timestamp {
            sec: 1_793_000_001,
            nsec: 0,
        },
        inode: 1234,
        device: 64769,
        links: 1,
        xattrs: vec![],
    }
}

fn footer_plain(blobs: &[BlobInfo]) -> Vec<u8> {
    let mut plain = (blobs.len() as u32).to_le_bytes().to_vec();
    for b in blobs {
        encode_entry(&mut plain, b);
    }
    plain
}

/// Builds every seed.
pub fn all() -> Vec<Seed> {
    let key = key();
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push(Seed {
            target,
            name: name.to_string(),
            bytes,
        })
    };

    // Blobs: compressible text, incompressible noise, a tree and a chunk list.
    let chunks = [text(4096), noise(3000, 7), Vec::new()];
    let sealed_data: Vec<_> = chunks
        .iter()
        .map(|c| blob::seal(key, BlobKind::Data, key.chunk_id(c), c, 3).expect("seal"))
        .collect();
    let refs: Vec<ChunkRef> = sealed_data
        .iter()
        .map(|b| ChunkRef {
            id: b.id,
            len: b.raw_len,
        })
        .collect();
    let list = ChunkList {
        chunks: refs.clone(),
    };
    let mut linked = node(b"dir", NodeKind::Dir { tree: refs[0].id });
    linked.mode = 0o40755;
    let mut big = node(
        b"dump.sql",
        NodeKind::File {
            size: 1 << 33,
            content: Content::Lists(vec![ListRef {
                id: refs[1].id,
                chunks: 3,
                bytes: 1 << 33,
            }]),
        },
    );
    big.xattrs.push(Xattr {
        name: b"user.origin".to_vec(),
        value: b"pg_dump".to_vec(),
    });
    let tree = Tree {
        nodes: vec![
            node(b"a-fifo", NodeKind::Fifo),
            node(b"block", NodeKind::BlockDevice { rdev: 2049 }),
            node(b"char", NodeKind::CharDevice { rdev: 259 }),
            linked,
            big,
            node(
                b"index.html",
                NodeKind::File {
                    size: 7096,
                    content: Content::Chunks(refs.clone()),
                },
            ),
            node(b"sock", NodeKind::Socket),
            node(
                b"tmp\xff-link",
                NodeKind::Symlink {
                    target: b"../var/tmp".to_vec(),
                },
            ),
        ],
    };
    let tree_plain = tree.encode();
    let list_plain = list.encode();
    let tree_blob = blob::seal(
        key,
        BlobKind::Tree,
        key.chunk_id(&tree_plain),
        &tree_plain,
        3,
    )
    .expect("seal tree");
    let list_blob = blob::seal(
        key,
        BlobKind::ChunkList,
        key.chunk_id(&list_plain),
        &list_plain,
        3,
    )
    .expect("seal chunk list");

    add("tree", "tree", tree_plain.clone());
    add("tree", "empty-tree", Tree::default().encode());
    add("tree", "chunk-list", list_plain.clone());

    for (name, b) in [
        ("text", &sealed_data[0]),
        ("noise", &sealed_data[1]),
        ("empty", &sealed_data[2]),
        ("tree", &tree_blob),
        ("chunk-list", &list_blob),
    ] {
        let prefix = BlobPrefix {
            kind: b.kind,
            codec: b.codec,
            raw_len: b.raw_len,
            id: b.id,
            flag: false,
        };
        let mut bytes = prefix.encode();
        bytes.extend_from_slice(&b.bytes);
        add("blob", name, bytes);
    }
    for (name, kind, plain) in [
        ("text", BlobKind::Data, &chunks[0]),
        ("tree", BlobKind::Tree, &tree_plain),
        ("chunk-list", BlobKind::ChunkList, &list_plain),
    ] {
        let prefix = BlobPrefix {
            kind,
            codec: Codec::Zstd,
            raw_len: plain.len() as u32,
            id: key.chunk_id(plain),
            flag: true,
        };
        let mut bytes = prefix.encode();
        bytes.extend_from_slice(&zstd::bulk::compress(plain, 3).expect("zstd"));
        add("blob_sealed", &format!("zstd-{name}"), bytes);
        let mut raw = BlobPrefix {
            codec: Codec::Raw,
            ..prefix
        }
        .encode();
        raw.extend_from_slice(plain);
        add("blob_sealed", &format!("raw-{name}"), raw);
    }

    // Packs.
    let mut data_pack = PackWriter::new(PackKind::Data);
    for b in &sealed_data {
        data_pack.add(b);
    }
    let data_pack = data_pack.finish(key).expect("finish data pack");
    let mut tree_pack = PackWriter::new(PackKind::Tree);
    tree_pack.add(&tree_blob);
    tree_pack.add(&list_blob);
    let tree_pack = tree_pack.finish(key).expect("finish tree pack");
    for (name, p) in [("data", &data_pack), ("tree", &tree_pack)] {
        let bytes = &p.bytes;
        let (footer_offset, _) = parse_trailer(
            &bytes[bytes.len() - TRAILER_LEN..],
            bytes.len() as u64,
            OBJECT,
        )
        .expect("own trailer parses");
        let mut trailer = (bytes.len() as u64).to_le_bytes().to_vec();
        trailer.extend_from_slice(&bytes[bytes.len() - TRAILER_LEN..]);
        add("pack_trailer", name, trailer);
        add("pack_trailer", &format!("{name}-whole"), bytes.clone());
        add("pack_footer", &format!("{name}-whole"), bytes.clone());
        let plain = footer_plain(&p.blobs);
        let mut footer = footer_offset.to_le_bytes().to_vec();
        footer.extend_from_slice(&plain);
        add("pack_footer", &format!("{name}-plain"), footer);
        let mut roundtrip = vec![sealed::PACK_FOOTER];
        roundtrip.extend_from_slice(&(footer_offset as u16 - 16).to_le_bytes());
        roundtrip.extend_from_slice(&plain);
        add("sealed_roundtrip", &format!("{name}-footer"), roundtrip);
    }

    // Index file.
    let index = IndexFile {
        supersedes: vec![IndexId([3; 32])],
        packs: vec![
            (data_pack.id, data_pack.bytes.len() as u64),
            (tree_pack.id, tree_pack.bytes.len() as u64),
        ],
        entries: data_pack
            .blobs
            .iter()
            .map(|b| (0, *b))
            .chain(tree_pack.blobs.iter().map(|b| (1, *b)))
            .collect(),
    };
    let index_plain = index.encode_plain();
    add(
        "index_file",
        "file",
        seal_meta_file(MAGIC_INDEX, &[], &index_plain),
    );
    add("index_file", "plain", index_plain.clone());
    add(
        "index_file",
        "empty-plain",
        IndexFile::default().encode_plain(),
    );
    add(
        "sealed_roundtrip",
        "index",
        [&[sealed::INDEX][..], &index_plain].concat(),
    );

    // Config.
    let config = Config {
        repo_id: [9; 32],
        chunker: ChunkerProfile::default(),
        pack_size: 16 << 20,
        compression_level: 3,
        created: 1_793_000_000,
        features: vec![],
    };
    let config_plain = encode_postcard(&config);
    add(
        "config",
        "file",
        seal_meta_file(MAGIC_CONFIG, &config.repo_id, &config_plain),
    );
    add("config", "plain", config_plain.clone());
    add(
        "sealed_roundtrip",
        "config",
        [&[sealed::CONFIG][..], &config_plain].concat(),
    );

    // Snapshot manifest.
    let at = |sec| SnapshotTime {
        at: Timestamp { sec, nsec: 250 },
        utc_offset: 3600,
    };
    let snapshot = Snapshot {
        time: at(1_793_000_000),
        name: "db_2026-10-26-2".into(),
        source: "db".into(),
        host: "web1".into(),
        user: "root".into(),
        tags: vec!["nightly".into()],
        paths: vec![b"/srv/www".to_vec()],
        streams: vec![StreamRecord {
            name: "db.sql".into(),
            command: Some("pg_dump shop".into()),
            exit_status: Some(0),
            bytes: 7096,
            sha256: [4; 32],
            started: at(1_793_000_000),
            ended: at(1_793_000_060),
            shrunk_from: None,
        }],
        root: key.chunk_id(&tree_plain),
        parent: Some(SnapshotId([5; 32])),
        chunker: ChunkerProfile::default(),
        program: "sopvault 0.1.0".into(),
        summary: Summary {
            files: 3,
            dirs: 1,
            errors: vec!["/srv/www/private: permission denied".into()],
            ..Summary::default()
        },
        complete: false,
    };
    let snapshot_plain = encode_postcard(&snapshot);
    add(
        "snapshot",
        "file",
        seal_meta_file(MAGIC_SNAPSHOT, &[], &snapshot_plain),
    );
    add("snapshot", "plain", snapshot_plain.clone());
    add(
        "sealed_roundtrip",
        "snapshot",
        [&[sealed::SNAPSHOT][..], &snapshot_plain].concat(),
    );
    add(
        "sealed_roundtrip",
        "tree",
        [&[sealed::TREE_BLOB][..], &tree_plain].concat(),
    );
    add(
        "sealed_roundtrip",
        "chunk-list",
        [&[sealed::CHUNK_LIST_BLOB][..], &list_plain].concat(),
    );

    // Key file, with the cheapest parameters the decoder accepts.
    let kdf = KdfParams {
        m_kib: keyfile::MIN_M_KIB,
        t: 1,
        p: 1,
    };
    let key_file = keyfile::create_with(
        &Secret32::from_bytes([0x5a; 32]),
        &[9; 32],
        &Password::new(b"correct horse".to_vec()),
        Kdf::Argon2id(kdf),
        "laptop",
        1_793_000_000,
        &[6; 32],
        &[7; 24],
    )
    .expect("key file");
    add("key_file", "laptop", key_file);
    // A machine-secret key file, under the secret the target opens it with.
    let secret = format!("{}{}", keyfile::SECRET_PREFIX, "5a".repeat(32));
    let key_file = keyfile::create_with(
        &Secret32::from_bytes([0x5a; 32]),
        &[9; 32],
        &Password::new(secret.into_bytes()),
        Kdf::MachineSecret,
        "backup@server",
        1_793_000_000,
        &[6; 32],
        &[7; 24],
    )
    .expect("machine-secret key file");
    add("key_file", "machine-secret", key_file);
    out
}
