//! Which base finds the best deltas: a measurement, not a timing.
//!
//! For two versions of a file (by default days 1 and 2 of the corpus dump
//! series; `DELTA_OLD` and `DELTA_NEW` choose others), both are chunked with a
//! repository's keyed chunker and every chunk of the new version that the old
//! one lacks is compressed four ways:
//!
//! - `plain` — zstd alone, what a build without deltas stores;
//! - `offset` — a delta against the old chunk that covers the same byte offset;
//! - `cursor` — a delta against the chunk sopvault's [`ParentCursor`] picks
//!   (re-anchored on every unchanged chunk, then aligned chunk after chunk);
//! - `oracle` — the smallest delta against any of the five old chunks around
//!   the cursor's pick: how much a content-resemblance search could still win.
//!
//! A delta counts only when the rule sopvault applies keeps it; otherwise the
//! plain size counts. Prints one table. Run with
//! `cargo bench --bench delta_bases` (a few seconds).

use sopvault::blob;
use sopvault::crypto::Password;
use sopvault::format::keyfile::KdfParams;
use sopvault::format::tree::{ChunkRef, Content};
use sopvault::repo::{InitOptions, OpenOptions};
use sopvault::write::delta::ParentCursor;
use sopvault::Repository;
use std::collections::HashSet;
use std::path::PathBuf;

const LEVEL: i32 = 1;

fn corpus_file(day: u32) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    root.parent()
        .expect("the repository has a parent directory")
        .join(format!("corpus/pgdump/day-{day:02}.sql"))
}

fn kept(delta: usize, plain: usize, raw: usize) -> usize {
    // sopvault's rule (blob::seal_delta): a delta at most 1/16 of the raw
    // chunk is kept outright, otherwise only at most half of plain.
    if delta * 16 <= raw || delta * 2 <= plain {
        delta
    } else {
        plain
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let old = std::env::var_os("DELTA_OLD")
        .map(PathBuf::from)
        .unwrap_or_else(|| corpus_file(1));
    let new = std::env::var_os("DELTA_NEW")
        .map(PathBuf::from)
        .unwrap_or_else(|| corpus_file(2));
    let (Ok(old_bytes), Ok(new_bytes)) = (std::fs::read(&old), std::fs::read(&new)) else {
        println!(
            "delta_bases: SKIP: needs {} and {} (build the corpus with ../shared/corpus/make-corpus.sh, or set DELTA_OLD/DELTA_NEW)",
            old.display(),
            new.display()
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let repo_dir = dir.path().join("repo");
    let opts = InitOptions {
        kdf: KdfParams::CHEAPEST,
        ..InitOptions::default()
    };
    let open = OpenOptions {
        cache_dir: Some(dir.path().join("cache")),
        base_cache_bytes: None,
    };
    let pw = Password::new(b"bench".to_vec());
    let repo = Repository::init(&repo_dir, &pw, &opts, &open).expect("init");
    let index = repo.index().expect("index");
    // A fixed gear table, so that runs compare (a repository's is keyed at random).
    let chunker = sopvault::chunker::Chunker::with_gear_key(&[7; 32], repo.config().chunker);
    let cut = |data: &[u8]| -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        let mut at = 0u64;
        for end in chunker.cut_points(data) {
            out.push((at, end - at as usize));
            at = end as u64;
        }
        out
    };
    let old_chunks = cut(&old_bytes);
    let new_chunks = cut(&new_bytes);
    let id = |d: &[u8]| repo.chunk_id(d);
    let old_refs: Vec<ChunkRef> = old_chunks
        .iter()
        .map(|&(o, l)| ChunkRef {
            id: id(&old_bytes[o as usize..o as usize + l]),
            len: l as u32,
        })
        .collect();
    let old_ids: HashSet<_> = old_refs.iter().map(|r| r.id).collect();
    let old_slice = |k: usize| {
        let (o, l) = old_chunks[k];
        &old_bytes[o as usize..o as usize + l]
    };
    let old_at = |off: u64| old_chunks.partition_point(|&(o, l)| o + l as u64 <= off);
    let pos_of = |cid: &sopvault::ids::ChunkId| old_refs.iter().position(|r| r.id == *cid);
    let mut cursor = ParentCursor::new(&repo, &index, &Content::Chunks(old_refs.clone()));

    let (mut n_new, mut raw, mut plain, mut offset, mut cur, mut oracle) = (0, 0, 0, 0, 0, 0);
    let mut concat5 = 0;
    let dlevel: i32 = std::env::var("DELTA_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LEVEL.max(blob::DELTA_MIN_LEVEL));
    let (mut cursor_found, mut cursor_kept) = (0, 0);
    for &(o, l) in &new_chunks {
        let data = &new_bytes[o as usize..o as usize + l];
        let cid = id(data);
        if old_ids.contains(&cid) {
            cursor.known(&cid, o);
            continue;
        }
        n_new += 1;
        raw += l;
        let p = zstd::bulk::compress(data, LEVEL).expect("zstd").len();
        plain += p;
        let delta_vs = |k: usize| {
            blob::compress_with_prefix(dlevel, data, old_slice(k))
                .expect("zstd")
                .len()
        };
        let k_off = old_at(o).min(old_chunks.len() - 1);
        offset += kept(delta_vs(k_off), p, l);
        match cursor.previous(o, l as u32).and_then(|c| pos_of(&c)) {
            Some(k) => {
                cursor_found += 1;
                let d = delta_vs(k);
                let k_cur = kept(d, p, l);
                if k_cur < p {
                    cursor_kept += 1;
                }
                cur += k_cur;
                let lo = k.saturating_sub(2);
                let hi = (k + 3).min(old_chunks.len());
                oracle += (lo..hi).map(|j| kept(delta_vs(j), p, l)).min().unwrap_or(p);
                let (a, _) = old_chunks[lo];
                let (b, bl) = old_chunks[hi - 1];
                let wide = &old_bytes[a as usize..b as usize + bl];
                concat5 += kept(
                    blob::compress_with_prefix(dlevel, data, wide)
                        .unwrap()
                        .len(),
                    p,
                    l,
                );
            }
            None => {
                cur += p;
                oracle += p;
                concat5 += p;
            }
        }
    }
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!("delta bases: {} → {}", old.display(), new.display());
    println!(
        "{} of {} chunks are new ({:.1} MiB); the cursor named a base for {cursor_found} and a delta paid for {cursor_kept}",
        n_new,
        new_chunks.len(),
        mib(raw)
    );
    println!("| strategy | stored MiB | vs plain |");
    println!("|---|---:|---:|");
    for (name, v) in [
        ("plain (no delta)", plain),
        ("offset", offset),
        ("cursor (sopvault)", cur),
        ("oracle of 5 around the cursor", oracle),
        ("the 5 around the cursor as one prefix", concat5),
    ] {
        println!(
            "| {name} | {:.2} | {:.3} |",
            mib(v),
            v as f64 / plain.max(1) as f64
        );
    }
}
