//! Golden test vectors for the on-disk format (`format-spec.md`, "Test vectors").
//!
//! Every value is derived from fixed inputs: the master key `00 01 .. 1f`,
//! the repository id `20 21 .. 3f`, fixed nonces and salts, and a 1 MiB input
//! that is the BLAKE3 XOF of a fixed string. The inputs and the expected
//! values are frozen in [`pinned`] and printed in `format-spec.md` §17, which
//! [`spec`] checks against them; a change in any pinned dependency (fastcdc,
//! blake3, chacha20poly1305, argon2-rust, postcard, sha2) or in the layouts
//! shows up as a failure naming the vector.
//!
//! After a deliberate format change, print the new values with
//! `SOPVAULT_PRINT_VECTORS=1 cargo test --release --test it format_vectors:: -- --nocapture`
//! (asserts are skipped in that mode), then update `pinned.rs` and the spec together.

mod pinned;
mod spec;

use pinned::*;

use sha2::Digest;
use sopvault::blob::{self, BlobInfo, BlobKind, Codec, SealedBlob};
use sopvault::chunker::{Chunker, ChunkerProfile};
use sopvault::crypto::{self, KeyPurpose, MasterKey, Password, Secret32, NONCE_LEN};
use sopvault::format::config::Config;
use sopvault::format::keyfile::{self, Kdf, KdfParams, KeyFile};
use sopvault::format::manifest::{Snapshot, SnapshotTime, StreamRecord, Summary};
use sopvault::format::pack::{self, PackKind, PackWriter, ENTRY_LEN, TRAILER_LEN};
use sopvault::format::tree::{
    ChunkList, ChunkRef, Content, ListRef, Node, NodeKind, Timestamp, Tree, Xattr,
};
use sopvault::format::{
    encode_postcard, write_header, HEADER_LEN, MAGIC_CONFIG, MAGIC_INDEX, MAGIC_PACK,
    MAGIC_PACK_END, MAGIC_SNAPSHOT,
};
use sopvault::ids::{sha256, ChunkId, IndexId, PackId, SnapshotId};
use sopvault::index::IndexFile;

// ---------------------------------------------------------------- fixed inputs

/// `N` bytes counting up from `start` (wrapping): `seq::<4>(0xfe)` is `fe ff 00 01`.
fn seq<const N: usize>(start: u8) -> [u8; N] {
    let mut a = [0u8; N];
    for (i, b) in a.iter_mut().enumerate() {
        *b = start.wrapping_add(i as u8);
    }
    a
}

fn master() -> [u8; 32] {
    seq(MASTER_START)
}

fn repo_id() -> [u8; 32] {
    seq(REPO_ID_START)
}

fn key() -> MasterKey {
    MasterKey::from_master(Secret32::from_bytes(master()))
}

fn chunker_input() -> Vec<u8> {
    let mut v = vec![0u8; CHUNKER_INPUT_LEN];
    blake3::Hasher::new()
        .update(CHUNKER_INPUT_SEED)
        .finalize_xof()
        .fill(&mut v);
    v
}

fn small_profile() -> ChunkerProfile {
    ChunkerProfile {
        min: 1024,
        avg: 4096,
        max: 16384,
    }
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(sha256(b))
}

/// Cut points as the spec lists them: `35052, 71476, …`.
fn cut_list(cuts: &[usize]) -> String {
    let text: Vec<String> = cuts.iter().map(usize::to_string).collect();
    text.join(", ")
}

/// SHA-256 over the cut points written as little-endian u64s.
fn cuts_digest(cuts: &[usize]) -> String {
    let mut h = sha2::Sha256::new();
    for c in cuts {
        h.update((*c as u64).to_le_bytes());
    }
    hex::encode(h.finalize())
}

fn printing() -> bool {
    std::env::var_os("SOPVAULT_PRINT_VECTORS").is_some()
}

/// Compares a computed value with its frozen form (or prints it in printing mode).
fn golden(label: &str, actual: impl std::fmt::Display, expected: &str) {
    let actual = actual.to_string();
    if printing() {
        println!("{label}: {actual}");
        return;
    }
    assert_eq!(
        actual, expected,
        "golden vector {label:?} changed; if the format change is deliberate, update \
         tests/it/format_vectors/pinned.rs and format-spec.md §17 together"
    );
}

/// Builds a metadata file by hand: header, optional clear part, sealed payload.
fn sealed_file(
    key: &MasterKey,
    magic: &[u8; 8],
    flags: u32,
    clear: &[u8],
    nonce: u8,
    plain: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out, magic, flags);
    out.extend_from_slice(clear);
    let sealed = key
        .seal_with_nonce(KeyPurpose::Meta, &seq::<NONCE_LEN>(nonce), &out, plain)
        .unwrap();
    out.extend_from_slice(&sealed);
    out
}

fn vector_blob(key: &MasterKey) -> (BlobInfo, Vec<u8>) {
    let id = key.chunk_id(PLAINTEXT);
    let aad = blob::aad(BlobKind::Data, Codec::Raw, PLAINTEXT.len() as u32, &id);
    let sealed = key
        .seal_with_nonce(KeyPurpose::Data, &seq(NONCE_BLOB), &aad, PLAINTEXT)
        .unwrap();
    let info = BlobInfo {
        id,
        kind: BlobKind::Data,
        codec: Codec::Raw,
        offset: HEADER_LEN as u64,
        stored_len: sealed.len() as u32,
        raw_len: PLAINTEXT.len() as u32,
        delta: None,
    };
    (info, sealed)
}

/// A data pack holding the one vector blob, built byte by byte from the spec.
fn vector_pack(key: &MasterKey) -> (Vec<u8>, Vec<u8>, BlobInfo) {
    let (info, sealed) = vector_blob(key);
    let mut footer_plain = 1u32.to_le_bytes().to_vec();
    pack::encode_entry(&mut footer_plain, &info);
    let mut out = Vec::new();
    write_header(&mut out, MAGIC_PACK, PackKind::Data as u32);
    out.extend_from_slice(&sealed);
    let footer = key
        .seal_with_nonce(
            KeyPurpose::Meta,
            &seq(NONCE_FOOTER),
            &out[..HEADER_LEN],
            &footer_plain,
        )
        .unwrap();
    out.extend_from_slice(&footer);
    out.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(MAGIC_PACK_END);
    (out, footer_plain, info)
}

fn vector_index(key: &MasterKey) -> IndexFile {
    let (pack_bytes, _, info) = vector_pack(key);
    IndexFile {
        supersedes: vec![IndexId([SUPERSEDED_INDEX_BYTE; 32])],
        packs: vec![(PackId(sha256(&pack_bytes)), pack_bytes.len() as u64)],
        entries: vec![(0, info)],
    }
}

fn vector_config() -> Config {
    Config {
        repo_id: repo_id(),
        chunker: ChunkerProfile::default(),
        pack_size: 16 * 1024 * 1024,
        compression_level: 3,
        created: TIME,
        features: Vec::new(),
    }
}

fn node(name: &[u8], kind: NodeKind, mode: u32) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode,
        uid: 1000,
        gid: 1000,
        user: "alice".into(),
        group: "staff".into(),
        mtime: Timestamp {
            sec: TIME,
            nsec: 123_456_789,
        },
        ctime: Timestamp {
            sec: TIME,
            nsec: 123_456_789,
        },
        inode: 42,
        device: 2049,
        links: 1,
        xattrs: Vec::new(),
    }
}

fn vector_tree(key: &MasterKey) -> Tree {
    let mut file = node(
        b"a.txt",
        NodeKind::File {
            size: PLAINTEXT.len() as u64,
            content: Content::Chunks(vec![ChunkRef {
                id: key.chunk_id(PLAINTEXT),
                len: PLAINTEXT.len() as u32,
            }]),
        },
        0o100644,
    );
    file.xattrs.push(Xattr {
        name: b"user.k".to_vec(),
        value: b"v".to_vec(),
    });
    let big = node(
        b"big.sql",
        NodeKind::File {
            size: 70_000,
            content: Content::Lists(vec![ListRef {
                id: ChunkId([BIG_SQL_LIST_BYTE; 32]),
                chunks: 2000,
                bytes: 70_000,
            }]),
        },
        0o100600,
    );
    let fifo = node(b"fifo\xff", NodeKind::Fifo, 0o010644);
    let mut link = node(
        b"link",
        NodeKind::Symlink {
            target: b"a.txt".to_vec(),
        },
        0o120777,
    );
    link.mtime = Timestamp { sec: -1, nsec: 0 };
    let sub = node(
        b"sub",
        NodeKind::Dir {
            tree: ChunkId([SUB_TREE_BYTE; 32]),
        },
        0o040755,
    );
    Tree {
        nodes: vec![file, big, fifo, link, sub],
    }
}

fn vector_chunk_list(key: &MasterKey) -> ChunkList {
    ChunkList {
        chunks: vec![
            ChunkRef {
                id: key.chunk_id(PLAINTEXT),
                len: 28,
            },
            ChunkRef {
                id: ChunkId([SECOND_CHUNK_BYTE; 32]),
                len: 65_536,
            },
        ],
    }
}

fn snapshot_time(sec: i64) -> SnapshotTime {
    SnapshotTime {
        at: Timestamp { sec, nsec: 0 },
        utc_offset: UTC_PLUS_7,
    }
}

fn vector_snapshot(key: &MasterKey) -> Snapshot {
    Snapshot {
        time: snapshot_time(TIME),
        name: NAME_WEB_1.into(),
        source: "web".into(),
        host: "db1".into(),
        user: "root".into(),
        tags: vec!["daily".into()],
        paths: vec![b"/var/www".to_vec()],
        streams: vec![StreamRecord {
            name: "db.sql".into(),
            command: Some("mysqldump app".into()),
            exit_status: Some(0),
            bytes: PLAINTEXT.len() as u64,
            sha256: sha256(PLAINTEXT),
            started: snapshot_time(TIME),
            ended: snapshot_time(TIME + 5),
            shrunk_from: None,
        }],
        root: key.chunk_id(&vector_tree(key).encode()),
        parent: Some(SnapshotId([PARENT_SNAPSHOT_BYTE; 32])),
        chunker: ChunkerProfile::default(),
        program: "sopvault 0.1.0".into(),
        summary: Summary {
            files: 3,
            dirs: 2,
            files_unchanged: 1,
            bytes_total: 70_056,
            bytes_read: 28,
            bytes_new: 28,
            bytes_stored: 68,
            chunks_new: 1,
            duration_ms: 1500,
            errors: Vec::new(),
        },
        complete: true,
    }
}

// ---------------------------------------------------------------- magic numbers

#[test]
fn magic_numbers() {
    use sopvault::format::{FORMAT_VERSION, MAGIC_KEY};
    let h = |m: &[u8]| hex::encode(m);
    assert_eq!(h(MAGIC_KEY), "534f50564b455900");
    assert_eq!(h(MAGIC_CONFIG), "534f505643464700");
    assert_eq!(h(MAGIC_PACK), "534f505650414b00");
    assert_eq!(h(MAGIC_PACK_END), "534f5056454e4400");
    assert_eq!(h(MAGIC_INDEX), "534f505649445800");
    assert_eq!(h(MAGIC_SNAPSHOT), "534f5056534e5000");
    assert_eq!(
        h(&blob::aad(BlobKind::Data, Codec::Raw, 0, &ChunkId([0; 32]))[..8]),
        "534f5056424c4f42"
    );
    assert_eq!(FORMAT_VERSION, 1);
    assert_eq!(HEADER_LEN, 16);
    assert_eq!(TRAILER_LEN, 16);
    assert_eq!(ENTRY_LEN, 88);
    assert_eq!(sopvault::index::INDEX_ENTRY_LEN, 92);
    assert_eq!(crypto::SEAL_OVERHEAD, 40);
}

// ---------------------------------------------------------------- keys and ids

#[test]
fn subkeys() {
    let m = master();
    golden(
        "subkey chunk id",
        hex::encode(blake3::derive_key(crypto::CTX_CHUNK_ID, &m)),
        SUBKEY_CHUNK_ID,
    );
    golden(
        "subkey gear",
        hex::encode(blake3::derive_key(crypto::CTX_GEAR, &m)),
        SUBKEY_GEAR,
    );
    golden(
        "subkey data",
        hex::encode(blake3::derive_key(crypto::CTX_DATA, &m)),
        SUBKEY_DATA,
    );
    golden(
        "subkey meta",
        hex::encode(blake3::derive_key(crypto::CTX_META, &m)),
        SUBKEY_META,
    );
    // The context strings are part of the format.
    assert_eq!(crypto::CTX_CHUNK_ID, "sopvault 2026-11 chunk id key");
    assert_eq!(crypto::CTX_GEAR, "sopvault 2026-11 chunker gear table");
    assert_eq!(
        crypto::CTX_DATA,
        "sopvault 2026-11 data blob encryption key"
    );
    assert_eq!(crypto::CTX_META, "sopvault 2026-11 metadata encryption key");
    assert_eq!(
        crypto::CTX_INDEX_CACHE,
        "sopvault 2026-11 index cache authentication key"
    );
    // The library derives the same keys.
    let [id_key, gear_key] = key().subkeys_for_test_vectors();
    assert_eq!(id_key, blake3::derive_key(crypto::CTX_CHUNK_ID, &m));
    assert_eq!(gear_key, blake3::derive_key(crypto::CTX_GEAR, &m));
}

#[test]
fn chunk_id() {
    let k = key();
    let id_key = blake3::derive_key(crypto::CTX_CHUNK_ID, &master());
    golden("chunk id", k.chunk_id(PLAINTEXT), CHUNK_ID);
    golden(
        "chunk id (keyed_hash)",
        blake3::keyed_hash(&id_key, PLAINTEXT).to_hex(),
        CHUNK_ID,
    );
}

// ---------------------------------------------------------------- chunker

#[test]
fn gear_table() {
    let gear_key = blake3::derive_key(crypto::CTX_GEAR, &master());
    let mut raw = [0u8; 2048];
    blake3::Hasher::new_keyed(&gear_key)
        .finalize_xof()
        .fill(&mut raw);
    let entry = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
    golden("gear[0]", format!("{:#018x}", entry(0)), GEAR_0);
    golden("gear[1]", format!("{:#018x}", entry(1)), GEAR_1);
    golden("gear[2]", format!("{:#018x}", entry(2)), GEAR_2);
    golden("gear[3]", format!("{:#018x}", entry(3)), GEAR_3);
    golden("gear table sha256", sha_hex(&raw), GEAR_TABLE_SHA256);
}

#[test]
fn chunker_masks() {
    use fastcdc::v2020::{select_masks, Normalization, MASKS};
    // The table as format-spec.md §9.2 prints it.
    let table: [u64; 26] = [
        0,
        0,
        0,
        0,
        0,
        0x0000000001804110,
        0x0000000001803110,
        0x0000000018035100,
        0x0000001800035300,
        0x0000019000353000,
        0x0000590003530000,
        0x0000d90003530000,
        0x0000d90103530000,
        0x0000d90303530000,
        0x0000d90313530000,
        0x0000d90f03530000,
        0x0000d90303537000,
        0x0000d90703537000,
        0x0000d90707537000,
        0x0000d91707537000,
        0x0000d91747537000,
        0x0000d91767537000,
        0x0000d93767537000,
        0x0000d93777537000,
        0x0000d93777577000,
        0x0000db3777577000,
    ];
    assert_eq!(MASKS, table);
    let masks = |avg: u32| {
        let (s, l) = select_masks(avg as usize, Normalization::Level1);
        format!("{s:#018x} {l:#018x} {:#018x} {:#018x}", s << 1, l << 1)
    };
    golden(
        "default profile masks (s, l, s_ls, l_ls)",
        masks(ChunkerProfile::default().avg),
        MASKS_DEFAULT,
    );
    golden(
        "small profile masks (s, l, s_ls, l_ls)",
        masks(small_profile().avg),
        MASKS_SMALL,
    );
}

#[test]
fn chunker_input_generator() {
    let input = chunker_input();
    assert_eq!(input.len(), 1_048_576);
    golden(
        "chunker input sha256",
        sha_hex(&input),
        CHUNKER_INPUT_SHA256,
    );
    golden(
        "chunker input first 8 bytes",
        hex::encode(&input[..8]),
        CHUNKER_INPUT_FIRST_8,
    )
}

#[test]
fn chunker_default_profile() {
    let gear_key = blake3::derive_key(crypto::CTX_GEAR, &master());
    let c = Chunker::with_gear_key(&gear_key, ChunkerProfile::default());
    let cuts = c.cut_points(&chunker_input());
    golden("default profile cut points", cut_list(&cuts), CUTS_DEFAULT);
    golden(
        "default profile cut points sha256",
        cuts_digest(&cuts),
        CUTS_DEFAULT_SHA256,
    );
}

#[test]
fn chunker_small_profile() {
    let gear_key = blake3::derive_key(crypto::CTX_GEAR, &master());
    let c = Chunker::with_gear_key(&gear_key, small_profile());
    let input = chunker_input();
    let cuts = c.cut_points(&input);
    golden("small profile cut count", cuts.len(), CUTS_SMALL_COUNT);
    golden(
        "small profile first 10 cut points",
        cut_list(&cuts[..10]),
        CUTS_SMALL_FIRST_10,
    );
    golden(
        "small profile cut points sha256",
        cuts_digest(&cuts),
        CUTS_SMALL_SHA256,
    );
    // An odd-length input: the last byte is never a cut candidate.
    let odd = c.cut_points(&input[..50_001]);
    golden(
        "small profile cut points of the first 50001 bytes",
        cut_list(&odd),
        CUTS_SMALL_ODD,
    );
}

/// The cut routine exactly as `format-spec.md` writes it, without fastcdc.
fn spec_cut(buf: &[u8], p: ChunkerProfile, gear: &[u64; 256], mask_s: u64, mask_l: u64) -> usize {
    let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
    let mut n = buf.len();
    if n <= min {
        return n;
    }
    let mut center = avg;
    if n > max {
        n = max;
    } else if n < center {
        center = n;
    }
    let mut h: u64 = 0;
    let mut i = min / 2;
    for (limit, m) in [(center / 2, mask_s), (n / 2, mask_l)] {
        while i < limit {
            let a = 2 * i;
            h = (h << 2).wrapping_add(gear[buf[a] as usize] << 1);
            if h & (m << 1) == 0 {
                return a;
            }
            h = h.wrapping_add(gear[buf[a + 1] as usize]);
            if h & m == 0 {
                return a + 1;
            }
            i += 1;
        }
    }
    n
}

#[test]
fn chunker_matches_the_spec_pseudocode() {
    let gear_key = blake3::derive_key(crypto::CTX_GEAR, &master());
    let mut raw = [0u8; 2048];
    blake3::Hasher::new_keyed(&gear_key)
        .finalize_xof()
        .fill(&mut raw);
    let mut gear = [0u64; 256];
    for (i, g) in gear.iter_mut().enumerate() {
        *g = u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
    }
    let input = chunker_input();
    for profile in [ChunkerProfile::default(), small_profile()] {
        let (mask_s, mask_l) = fastcdc::v2020::select_masks(
            profile.avg as usize,
            fastcdc::v2020::Normalization::Level1,
        );
        let mut ours = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            pos += spec_cut(&input[pos..], profile, &gear, mask_s, mask_l);
            ours.push(pos);
        }
        let lib = Chunker::with_gear_key(&gear_key, profile).cut_points(&input);
        assert_eq!(ours, lib, "{profile:?}");
    }
}

#[test]
fn chunker_streaming_matches_in_memory() {
    // for_each_chunk reads through a bounded buffer; it must cut exactly where
    // cut_points does, even when the reader returns short reads.
    struct Dribble<'a>(&'a [u8]);
    impl std::io::Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7919);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let gear_key = blake3::derive_key(crypto::CTX_GEAR, &master());
    let input = chunker_input();
    for profile in [ChunkerProfile::default(), small_profile()] {
        let c = Chunker::with_gear_key(&gear_key, profile);
        let mut ends = Vec::new();
        let mut pos = 0usize;
        let total = c
            .for_each_chunk(
                Dribble(&input),
                |_| {},
                |chunk| {
                    pos += chunk.len();
                    ends.push(pos);
                    Ok(())
                },
                |e| panic!("reading from memory failed: {e}"),
            )
            .unwrap();
        assert_eq!(total, input.len() as u64);
        assert_eq!(ends, c.cut_points(&input), "{profile:?}");
    }
}

// ---------------------------------------------------------------- blobs

#[test]
fn blob_aad_and_sealed_blob() {
    let k = key();
    let (info, sealed) = vector_blob(&k);
    golden(
        "blob aad",
        hex::encode(blob::aad(info.kind, info.codec, info.raw_len, &info.id)),
        BLOB_AAD,
    );
    golden("sealed data blob", hex::encode(&sealed), SEALED_DATA_BLOB);
    assert_eq!(sealed.len(), PLAINTEXT.len() + crypto::SEAL_OVERHEAD);
    assert_eq!(blob::open(&k, &info, &sealed).unwrap(), PLAINTEXT);
    // The AAD binds kind, codec, raw length and id: changing any of them fails.
    for bad in [
        BlobInfo {
            kind: BlobKind::ChunkList,
            ..info
        },
        BlobInfo {
            codec: Codec::Zstd,
            ..info
        },
        BlobInfo {
            raw_len: info.raw_len + 1,
            ..info
        },
        BlobInfo {
            id: ChunkId([0; 32]),
            ..info
        },
    ] {
        assert!(blob::open(&k, &bad, &sealed).is_err(), "{bad:?}");
    }
}

#[test]
fn sealed_tree_blob_uses_the_metadata_key() {
    let k = key();
    let plain = vector_tree(&k).encode();
    let id = k.chunk_id(&plain);
    let aad = blob::aad(BlobKind::Tree, Codec::Raw, plain.len() as u32, &id);
    let sealed = k
        .seal_with_nonce(KeyPurpose::Meta, &seq(NONCE_TREE_BLOB), &aad, &plain)
        .unwrap();
    golden("tree blob id", id, TREE_BLOB_ID);
    golden(
        "sealed tree blob sha256",
        sha_hex(&sealed),
        SEALED_TREE_BLOB_SHA256,
    );
    let info = BlobInfo {
        id,
        kind: BlobKind::Tree,
        codec: Codec::Raw,
        offset: HEADER_LEN as u64,
        stored_len: sealed.len() as u32,
        raw_len: plain.len() as u32,
        delta: None,
    };
    assert_eq!(blob::open(&k, &info, &sealed).unwrap(), plain);
    let as_data = k
        .seal_with_nonce(KeyPurpose::Data, &seq(NONCE_TREE_BLOB), &aad, &plain)
        .unwrap();
    assert!(blob::open(&k, &info, &as_data).is_err());
}

// ---------------------------------------------------------------- key file

#[test]
fn key_file() {
    let kdf = KdfParams {
        m_kib: 8192,
        t: 1,
        p: 1,
    };
    let bytes = keyfile::create_with(
        &Secret32::from_bytes(master()),
        &repo_id(),
        &Password::new(PASSWORD.to_vec()),
        Kdf::Argon2id(kdf),
        KEY_LABEL,
        TIME,
        &seq(SALT_START),
        &seq(NONCE_KEYFILE),
    )
    .unwrap();
    golden("key file", hex::encode(&bytes), KEY_FILE);
    golden("key file name", sha_hex(&bytes), KEY_FILE_NAME);
    let kf = KeyFile::parse(&bytes, "keys/vector").unwrap();
    assert_eq!(kf.kdf, Kdf::Argon2id(kdf));
    assert_eq!(kf.salt, seq::<32>(SALT_START));
    assert_eq!(kf.created, TIME);
    assert_eq!(kf.label, KEY_LABEL);
    let (m, rid) = kf
        .open(&Password::new(PASSWORD.to_vec()))
        .unwrap()
        .expect("the right password opens the key file");
    assert_eq!(m.as_bytes(), &master());
    assert_eq!(rid, repo_id());
    assert!(kf
        .open(&Password::new(b"wrong".to_vec()))
        .unwrap()
        .is_none());
    // The clear part is authenticated: flipping a label byte breaks the seal.
    let mut tampered = bytes.clone();
    tampered[16 + 16 + 32 + 8 + 2] ^= 1;
    let kf = KeyFile::parse(&tampered, "keys/tampered").unwrap();
    assert!(kf
        .open(&Password::new(PASSWORD.to_vec()))
        .unwrap()
        .is_none());
    // Parameters below the parser's limits are refused before any work.
    let mut weak = bytes.clone();
    weak[20..24].copy_from_slice(&4096u32.to_le_bytes());
    assert!(KeyFile::parse(&weak, "keys/weak").is_err());
}

/// The machine secret of the machine-secret key file vector: the prefix, then
/// the hex of bytes 0x60, 0x61, …, 0x7f.
fn machine_secret() -> Password {
    let mut text = keyfile::SECRET_PREFIX.to_string();
    text.push_str(&hex::encode(seq::<32>(MACHINE_SECRET_START)));
    Password::new(text.into_bytes())
}

#[test]
fn machine_secret_key_file() {
    let secret = machine_secret();
    let bytes = keyfile::create_with(
        &Secret32::from_bytes(master()),
        &repo_id(),
        &secret,
        Kdf::MachineSecret,
        MACHINE_KEY_LABEL,
        TIME,
        &seq(SALT_START),
        &seq(NONCE_KEYFILE),
    )
    .unwrap();
    golden(
        "machine-secret key file",
        hex::encode(&bytes),
        MACHINE_KEY_FILE,
    );
    golden(
        "machine-secret key file name",
        sha_hex(&bytes),
        MACHINE_KEY_FILE_NAME,
    );
    let kf = KeyFile::parse(&bytes, "keys/vector").unwrap();
    assert_eq!(kf.kdf, Kdf::MachineSecret);
    let (m, rid) = kf.open(&secret).unwrap().expect("the secret opens it");
    assert_eq!((m.as_bytes(), rid), (&master(), repo_id()));
    // Neither a passphrase nor another secret opens it.
    assert!(kf
        .open(&Password::new(PASSWORD.to_vec()))
        .unwrap()
        .is_none());
    let mut other = secret.as_bytes().to_vec();
    assert_eq!(other.pop(), Some(b'f'));
    other.push(b'e');
    assert!(kf.open(&Password::new(other)).unwrap().is_none());
}

// ---------------------------------------------------------------- packs

#[test]
fn pack_file() {
    let k = key();
    let (bytes, footer_plain, info) = vector_pack(&k);
    golden(
        "pack footer plaintext",
        hex::encode(&footer_plain),
        PACK_FOOTER_PLAINTEXT,
    );
    golden("pack file", hex::encode(&bytes), PACK_FILE);
    golden("pack file name", sha_hex(&bytes), PACK_FILE_NAME);
    assert_eq!(footer_plain.len(), 4 + ENTRY_LEN);
    let blobs = pack::read_footer_from_bytes(&k, &bytes, "packs/vector").unwrap();
    assert_eq!(blobs, vec![info]);

    // PackWriter lays out the same bytes except for its random footer nonce.
    let (_, sealed) = vector_blob(&k);
    let mut w = PackWriter::new(PackKind::Data);
    let added = w.add(&SealedBlob {
        id: info.id,
        kind: info.kind,
        codec: info.codec,
        raw_len: info.raw_len,
        bytes: sealed.clone(),
        delta: None,
    });
    assert_eq!(added, info);
    let finished = w.finish(&k).unwrap();
    assert_eq!(finished.bytes.len(), bytes.len());
    let footer_at = HEADER_LEN + sealed.len();
    assert_eq!(finished.bytes[..footer_at], bytes[..footer_at]);
    let tail = bytes.len() - TRAILER_LEN;
    assert_eq!(finished.bytes[tail..], bytes[tail..]);
    assert_eq!(finished.id, PackId(sha256(&finished.bytes)));
    assert_eq!(
        pack::read_footer_from_bytes(&k, &finished.bytes, "packs/writer").unwrap(),
        vec![info]
    );
    // A truncated pack has no end magic.
    assert!(pack::read_footer_from_bytes(&k, &bytes[..bytes.len() - 1], "packs/short").is_err());
}

// ---------------------------------------------------------------- index files

#[test]
fn index_file() {
    let k = key();
    let idx = vector_index(&k);
    let plain = idx.encode_plain();
    golden("index plaintext", hex::encode(&plain), INDEX_PLAINTEXT);
    assert_eq!(IndexFile::decode_plain(&plain, "index/plain").unwrap(), idx);
    let bytes = sealed_file(&k, MAGIC_INDEX, 0, &[], NONCE_INDEX, &plain);
    golden("index file name", sha_hex(&bytes), INDEX_FILE_NAME);
    assert_eq!(IndexFile::decode(&k, &bytes, "index/vector").unwrap(), idx);
}

// ---------------------------------------------------------------- config

#[test]
fn config_file() {
    let k = key();
    let c = vector_config();
    let plain = encode_postcard(&c);
    golden("config postcard", hex::encode(&plain), CONFIG_POSTCARD);
    let bytes = sealed_file(&k, MAGIC_CONFIG, 0, &repo_id(), NONCE_CONFIG, &plain);
    golden("config file name", sha_hex(&bytes), CONFIG_FILE_NAME);
    assert_eq!(
        Config::peek_repo_id(&bytes, "config/vector").unwrap(),
        repo_id()
    );
    assert_eq!(Config::decode(&k, &bytes, "config/vector").unwrap(), c);
}

// ---------------------------------------------------------------- trees

#[test]
fn tree_postcard() {
    let k = key();
    let t = vector_tree(&k);
    let bytes = t.encode();
    golden("tree postcard", hex::encode(&bytes), TREE_POSTCARD);
    assert_eq!(Tree::decode(&bytes, "tree/vector").unwrap(), t);

    let mut unsorted = t.clone();
    unsorted.nodes.swap(0, 1);
    assert!(Tree::decode(&unsorted.encode(), "tree/unsorted").is_err());
    let mut dup = t.clone();
    dup.nodes[1].name = dup.nodes[0].name.clone();
    assert!(Tree::decode(&dup.encode(), "tree/dup").is_err());
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        let mut t2 = t.clone();
        t2.nodes.truncate(1);
        t2.nodes[0].name = bad.to_vec();
        assert!(
            Tree::decode(&t2.encode(), "tree/bad-name").is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn chunk_list_postcard() {
    let k = key();
    let l = vector_chunk_list(&k);
    let bytes = l.encode();
    golden(
        "chunk list postcard",
        hex::encode(&bytes),
        CHUNK_LIST_POSTCARD,
    );
    assert_eq!(ChunkList::decode(&bytes, "list/vector").unwrap(), l);
}

// ---------------------------------------------------------------- snapshots

#[test]
fn snapshot_postcard() {
    let k = key();
    let s = vector_snapshot(&k);
    let plain = encode_postcard(&s);
    golden("snapshot postcard", hex::encode(&plain), SNAPSHOT_POSTCARD);
    assert_eq!(Snapshot::decode_plain(&plain, "snapshot/plain").unwrap(), s);
    let bytes = sealed_file(&k, MAGIC_SNAPSHOT, 0, &[], NONCE_SNAPSHOT, &plain);
    golden("snapshot file name", sha_hex(&bytes), SNAPSHOT_FILE_NAME);
    assert_eq!(Snapshot::decode(&k, &bytes, "snapshots/vector").unwrap(), s);
}

#[test]
fn snapshot_stream_tail() {
    let k = key();
    let mut s = vector_snapshot(&k);
    // No stream shrank: version 1, the payload as before.
    let v1 = s.encode(&k).unwrap();
    assert_eq!(v1[8..12], 1u32.to_le_bytes());
    assert_eq!(Snapshot::decode(&k, &v1, "snapshots/v1").unwrap(), s);
    let mut b = s.streams[0].clone();
    b.name = "b".into();
    b.shrunk_from = Some(1000);
    s.streams.push(b);
    let v2 = s.encode(&k).unwrap();
    assert_eq!(v2[8..12], 2u32.to_le_bytes());
    assert_eq!(Snapshot::decode(&k, &v2, "snapshots/v2").unwrap(), s);
    let mut payload = encode_postcard(&s);
    payload.extend_from_slice(&[0x02, 0x00, 0x01, 0xe8, 0x07]);
    assert_eq!(Snapshot::decode_payload(&payload, 2, "tail").unwrap(), s);
    // A tail with one entry too few, or trailing bytes after it, is damage.
    let short = [&encode_postcard(&s)[..], &[0x01, 0x00]].concat();
    assert!(Snapshot::decode_payload(&short, 2, "tail").is_err());
    let long = [&payload[..], &[0x00]].concat();
    assert!(Snapshot::decode_payload(&long, 2, "tail").is_err());
    // A version-1 payload carries no tail.
    assert!(Snapshot::decode_payload(&payload, 1, "tail").is_err());
}

#[test]
fn snapshot_human_name() {
    let t = snapshot_time(TIME);
    golden("snapshot date", t.date(), SNAPSHOT_DATE);
    golden("snapshot rfc3339", t.rfc3339(), SNAPSHOT_RFC3339);
    let utc = SnapshotTime { utc_offset: 0, ..t };
    golden("same instant in UTC", utc.date(), SNAPSHOT_DATE_UTC);

    let k = key();
    let mut existing = Vec::new();
    assert_eq!(
        sopvault::ops::snapshot::human_name(&existing, "web", &t),
        NAME_WEB_1
    );
    let mut s = vector_snapshot(&k);
    existing.push((SnapshotId([1; 32]), s.clone()));
    assert_eq!(
        sopvault::ops::snapshot::human_name(&existing, "web", &t),
        NAME_WEB_2
    );
    s.name = NAME_WEB_2.into();
    existing.push((SnapshotId([2; 32]), s.clone()));
    assert_eq!(
        sopvault::ops::snapshot::human_name(&existing, "web", &t),
        NAME_WEB_3
    );
    // Another source's names do not count.
    assert_eq!(
        sopvault::ops::snapshot::human_name(&existing, "db", &t),
        NAME_DB_1
    );

    // Two writers at once both recorded web_2026-11-22-3: each is listed
    // under NAME~ID, with as many hex digits as make the names distinct.
    s.name = NAME_WEB_3.into();
    let mut a = [0xab; 32];
    let mut b = [0xab; 32];
    a[5] = 0x01;
    b[5] = 0x02;
    existing.push((SnapshotId(a), s.clone()));
    existing.push((SnapshotId(b), s.clone()));
    sopvault::repo::unique_names(&mut existing);
    let names: Vec<&str> = existing.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(names, [NAME_WEB_1, NAME_WEB_2, NAME_TWIN_A, NAME_TWIN_B]);
    assert_eq!(
        sopvault::ops::snapshot::human_name(&existing, "web", &t),
        NAME_WEB_4
    );
}

// ---------------------------------------------------------------- postcard

#[test]
fn postcard_primitives() {
    let h = hex::encode;
    assert_eq!(h(encode_postcard(&0u32)), "00");
    assert_eq!(h(encode_postcard(&127u32)), "7f");
    assert_eq!(h(encode_postcard(&128u32)), "8001");
    assert_eq!(h(encode_postcard(&300u32)), "ac02");
    assert_eq!(h(encode_postcard(&u16::MAX)), "ffff03");
    assert_eq!(h(encode_postcard(&u32::MAX)), "ffffffff0f");
    assert_eq!(h(encode_postcard(&u64::MAX)), "ffffffffffffffffff01");
    assert_eq!(h(encode_postcard(&0i32)), "00");
    assert_eq!(h(encode_postcard(&-1i32)), "01");
    assert_eq!(h(encode_postcard(&1i32)), "02");
    assert_eq!(h(encode_postcard(&-64i64)), "7f");
    assert_eq!(h(encode_postcard(&64i64)), "8001");
    assert_eq!(h(encode_postcard(&25200i32)), "e08903");
    assert_eq!(h(encode_postcard(&i64::MIN)), "ffffffffffffffffff01");
    assert_eq!(h(encode_postcard(&7u8)), "07");
    assert_eq!(h(encode_postcard(&200u8)), "c8");
    assert_eq!(h(encode_postcard(&true)), "01");
    assert_eq!(h(encode_postcard(&None::<u32>)), "00");
    assert_eq!(h(encode_postcard(&Some(300u32))), "01ac02");
    assert_eq!(h(encode_postcard(&"ab")), "026162");
    assert_eq!(h(encode_postcard(&vec![1u8, 2])), "020102");
    assert_eq!(h(encode_postcard(&[9u8; 3])), "090909");
    assert_eq!(h(encode_postcard(&ChunkId([0xab; 32]))), "ab".repeat(32));
    assert_eq!(h(encode_postcard(&NodeKind::Fifo)), "03");
    assert_eq!(h(encode_postcard(&NodeKind::Socket)), "06");
    assert_eq!(
        h(encode_postcard(&NodeKind::CharDevice { rdev: 0x0501 })),
        "04810a"
    );
    assert_eq!(h(encode_postcard(&Content::empty())), "0000");
    // Decoders accept a non-minimal varint (writers never produce one).
    assert_eq!(
        sopvault::format::decode_postcard::<u32>(&[0x80, 0x00], "varint").unwrap(),
        0
    );
    // A u32 varint may not carry more than 32 bits.
    assert!(
        sopvault::format::decode_postcard::<u32>(&[0xff, 0xff, 0xff, 0xff, 0x1f], "v").is_err()
    );
}

#[test]
fn delta_blob_binds_its_base_and_decodes_against_it() {
    use sopvault::blob::DeltaRef;
    let k = key();
    let base = b"COPY accounts FROM stdin;\n1\t100\n2\t200\n3\t300\n\\.\n".repeat(64);
    let mut new = base.clone();
    new[30] = b'9';
    let id = k.chunk_id(&new);
    let d = DeltaRef {
        base: k.chunk_id(&base),
        depth: 1,
        generation: 1,
    };
    // AAD = the plain layout with codec 2, then base_id | depth u16 | generation u32.
    let aad = blob::delta_aad(new.len() as u32, &id, &d);
    assert_eq!(
        aad[..46],
        blob::aad(BlobKind::Data, Codec::Delta, new.len() as u32, &id)
    );
    assert_eq!(&aad[46..78], &d.base.0);
    assert_eq!(hex::encode(&aad[78..]), "010001000000");
    let sealed = blob::seal_delta(&k, id, &new, d, &base, 3).unwrap();
    assert_eq!(sealed.codec, Codec::Delta);
    assert!(
        sealed.bytes.len() < 100,
        "a one-byte change costs {} bytes",
        sealed.bytes.len()
    );
    let info = BlobInfo {
        id,
        kind: BlobKind::Data,
        codec: Codec::Delta,
        offset: 0,
        stored_len: sealed.bytes.len() as u32,
        raw_len: new.len() as u32,
        delta: Some(d),
    };
    assert_eq!(
        blob::open_delta(&k, &info, &sealed.bytes, &base).unwrap(),
        new
    );
    // Without its base a delta does not open; with another base it fails the id check.
    assert!(blob::open(&k, &info, &sealed.bytes).is_err());
    assert!(blob::open_delta(&k, &info, &sealed.bytes, &vec![b'x'; base.len()]).is_err());
    // The base fields are authenticated: changing any of them fails.
    for bad in [
        DeltaRef {
            base: ChunkId([1; 32]),
            ..d
        },
        DeltaRef { depth: 2, ..d },
        DeltaRef { generation: 2, ..d },
    ] {
        let info = BlobInfo {
            delta: Some(bad),
            ..info
        };
        assert!(blob::open_delta(&k, &info, &sealed.bytes, &base).is_err());
    }
    // A pack entry carries the base; zero fields on a delta are refused.
    let mut entry = Vec::new();
    sopvault::format::pack::encode_entry(&mut entry, &info);
    assert_eq!(&entry[48..50], &[0, 2], "kind data, codec delta");
    assert_eq!(&entry[50..52], &1u16.to_le_bytes());
    assert_eq!(&entry[52..56], &1u32.to_le_bytes());
    assert_eq!(&entry[56..88], &d.base.0);
    let mut r = sopvault::format::Reader::new(&entry, "entry");
    assert_eq!(
        sopvault::format::pack::decode_entry(&mut r, "entry").unwrap(),
        info
    );
    let mut zeroed = entry.clone();
    zeroed[50..52].copy_from_slice(&[0, 0]);
    let mut r = sopvault::format::Reader::new(&zeroed, "entry");
    assert!(sopvault::format::pack::decode_entry(&mut r, "entry").is_err());
}

/// §17.3a: a codec-1 (zstd) blob and a codec-2 (delta) blob, with every
/// intermediate value a reader in another language needs: the frames, the
/// AADs and the sealed bytes, each sealed with K_data under the blob nonce.
/// A reader decodes the frames; it need not reproduce the compressor.
#[test]
fn zstd_and_delta_blob_vectors() {
    use sopvault::blob::DeltaRef;
    let k = key();
    let base: Vec<u8> =
        b"COPY t (id, nama) FROM stdin;\n1\tBudi\n2\tSiti\n3\tAgus\n\\.\n".repeat(3);
    let frame1 = zstd::bulk::compress(&base, 3).unwrap();
    assert!(frame1.len() < base.len());
    assert_eq!(zstd::bulk::decompress(&frame1, base.len()).unwrap(), base);
    let base_id = k.chunk_id(&base);
    let aad1 = blob::aad(BlobKind::Data, Codec::Zstd, base.len() as u32, &base_id);
    let sealed1 = k
        .seal_with_nonce(KeyPurpose::Data, &seq(NONCE_BLOB), &aad1, &frame1)
        .unwrap();
    let info1 = BlobInfo {
        id: base_id,
        kind: BlobKind::Data,
        codec: Codec::Zstd,
        offset: HEADER_LEN as u64,
        stored_len: sealed1.len() as u32,
        raw_len: base.len() as u32,
        delta: None,
    };
    assert_eq!(blob::open(&k, &info1, &sealed1).unwrap(), base);
    golden(
        "zstd base plaintext",
        hex::encode(&base),
        ZSTD_BASE_PLAINTEXT,
    );
    golden("zstd base id", hex::encode(base_id.0), ZSTD_BASE_ID);
    golden("zstd frame", hex::encode(&frame1), ZSTD_FRAME);
    golden("zstd aad", hex::encode(aad1), ZSTD_AAD);
    golden("zstd sealed", hex::encode(&sealed1), ZSTD_SEALED);

    // The next day: one name changed, one row added.
    let mut new = base.clone();
    new[36..40].copy_from_slice(b"Bayu");
    new.extend_from_slice(b"4\tDewi\n");
    let id = k.chunk_id(&new);
    let d = DeltaRef {
        base: base_id,
        depth: 1,
        generation: 1,
    };
    let frame2 = blob::compress_with_prefix(3, &new, &base).unwrap();
    // Single-segment: Frame_Header_Descriptor bit 5, and the content size present.
    assert_eq!(&frame2[..4], &0xFD2F_B528u32.to_le_bytes(), "zstd magic");
    assert_ne!(frame2[4] & 0x20, 0, "single-segment frame");
    assert_eq!(
        blob::decompress_with_prefix(&frame2, &base, new.len()).unwrap(),
        new
    );
    let aad2 = blob::delta_aad(new.len() as u32, &id, &d);
    let sealed2 = k
        .seal_with_nonce(KeyPurpose::Data, &seq(NONCE_BLOB), &aad2, &frame2)
        .unwrap();
    let info2 = BlobInfo {
        id,
        kind: BlobKind::Data,
        codec: Codec::Delta,
        offset: HEADER_LEN as u64,
        stored_len: sealed2.len() as u32,
        raw_len: new.len() as u32,
        delta: Some(d),
    };
    assert_eq!(blob::open_delta(&k, &info2, &sealed2, &base).unwrap(), new);
    golden("delta plaintext", hex::encode(&new), DELTA_PLAINTEXT);
    golden("delta id", hex::encode(id.0), DELTA_ID);
    golden("delta frame", hex::encode(&frame2), DELTA_FRAME);
    golden("delta aad", hex::encode(aad2), DELTA_AAD);
    golden("delta sealed", hex::encode(&sealed2), DELTA_SEALED);
}
