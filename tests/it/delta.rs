//! Delta compression end to end: a daily dump series whose every chunk changes
//! a little is stored mostly as deltas, every day restores byte for byte,
//! prune keeps bases that later days need, and a damaged base is reported with
//! every chunk and file that depends on it.

use crate::common::*;
use sopvault::crypto::Password;
use sopvault::repo::OpenOptions;
use sopvault::Repository;

const DAYS: u64 = 10;

fn day_time(n: u64) -> String {
    format!("2026-11-{:02}T02:00:00+07:00", n)
}

/// A dump-like text of about 3 MB; from day to day about 1% of the rows
/// change at scattered places, so nearly every chunk is new but similar.
fn dump(day: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 << 20);
    let mut rng = Xorshift::new(1);
    out.extend_from_slice(b"COPY public.accounts (aid, bid, abalance, filler) FROM stdin;\n");
    for row in 0..36_000u64 {
        let r = rng.next_u64();
        // The day this row last changed: each day 1% of rows change.
        let mut version = 0;
        for d in 1..=day {
            if (r.rotate_left(d as u32 * 7) ^ d.wrapping_mul(0x5851_f42d)) % 100 == 0 {
                version = d;
            }
        }
        let balance = (r % 100_000) as i64 - 50_000 + version as i64 * 37;
        out.extend_from_slice(
            format!(
                "{row}\t{}\t{balance}\t{:016x}{:016x} note {version}\n",
                row / 1000,
                r,
                r.wrapping_mul(31)
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\\.\n");
    out
}

fn snapshot_day(sb: &Sandbox, day: u64, extra: &[&str]) -> serde_json::Value {
    let time = day_time(day);
    let args = [
        &["snapshot", "--source", "db", "--time", &time, "--json"][..],
        extra,
        &["--stdin", "pg.sql"],
    ]
    .concat();
    parse_json(&sb.call(&args).stdin(&dump(day)).ok())
}

fn series(sb: &Sandbox) -> Vec<serde_json::Value> {
    (1..=DAYS).map(|d| snapshot_day(sb, d, &[])).collect()
}

fn restore_day(sb: &Sandbox, name: &str, day: u64) {
    let target = sb.path(format!("out-{name}"));
    sb.ok(&["restore", name, "--target", &path_str(&target)]);
    let got = std::fs::read(target.join("pg.sql")).unwrap();
    assert!(
        got == dump(day),
        "{name}: restored bytes differ from day {day}"
    );
}

#[test]
fn a_delta_heavy_series_restores_every_day_byte_for_byte() {
    let sb = Sandbox::init();
    let runs = series(&sb);
    let stored = |v: &serde_json::Value| num(v, "/summary/bytes_stored");
    // Cut points depend on the repository's random chunker key, so each run
    // samples another chunking. The bounds hold with a wide margin over 100
    // sampled keys (worst day: 81% of new chunks as deltas, 0.26 of day 1's
    // bytes; worst nine days together: 0.80 of day 1's bytes). A new chunk
    // whose cut points moved so far that no parent chunk covers half of it
    // is stored whole, which is what the margin is for. A cursor that loses
    // the alignment for the rest of the stream fails them (it was seen at
    // 38–56% deltas); `delta::tests` pins that case exactly.
    let day1 = stored(&runs[0]);
    for (i, v) in runs.iter().enumerate().skip(1) {
        let (delta, added) = (num(v, "/chunks_delta"), num(v, "/summary/chunks_added"));
        assert!(
            delta * 3 >= added * 2,
            "day {}: only {delta} of {added} new chunks stored as deltas: {v}",
            i + 1
        );
        assert!(
            stored(v) * 2 < day1,
            "day {}: {} bytes stored against {day1} on day 1",
            i + 1,
            stored(v),
        );
    }
    let later: u64 = runs.iter().skip(1).map(stored).sum();
    assert!(
        later * 2 < day1 * 3,
        "days 2–{DAYS} stored {later} bytes against {day1} on day 1"
    );
    for (i, s) in sb.snapshots().iter().enumerate() {
        restore_day(&sb, text(s, "/name"), i as u64 + 1);
    }
    let out = sb.ok(&["cat", "latest", "pg.sql"]);
    assert!(out.stdout == dump(DAYS), "cat of the last day differs");
    sb.ok(&["check", "--read-data"]);

    // The same series without deltas stores several times more.
    let plain = Sandbox::init();
    let total = |runs: &[serde_json::Value]| runs.iter().skip(1).map(stored).sum::<u64>();
    let plain_runs: Vec<_> = (1..=DAYS)
        .map(|d| snapshot_day(&plain, d, &["--no-delta"]))
        .collect();
    assert!(plain_runs.iter().all(|v| num(v, "/chunks_delta") == 0));
    assert!(
        total(&runs) * 3 < total(&plain_runs),
        "deltas {} vs plain {}",
        total(&runs),
        total(&plain_runs)
    );
}

#[test]
fn pruning_the_snapshots_that_hold_the_bases_keeps_later_days_restorable() {
    let sb = Sandbox::init();
    series(&sb);
    // Keep the last three; repack everything so that only live blobs survive.
    sb.ok(&["prune", "--keep-last", "3", "--max-unused", "0%"]);
    let snaps = sb.snapshots();
    assert_eq!(snaps.len(), 3);
    sb.ok(&["check", "--read-data"]);
    for (i, s) in snaps.iter().enumerate() {
        restore_day(&sb, text(s, "/name"), DAYS - 2 + i as u64);
    }
    // A new day still finds its bases.
    let v = snapshot_day(&sb, DAYS + 1, &[]);
    assert!(num(&v, "/chunks_delta") > 0, "{v}");
    restore_day(&sb, "latest", DAYS + 1);
}

#[test]
fn a_damaged_base_is_reported_with_every_chunk_and_file_that_depends_on_it() {
    let sb = Sandbox::init();
    let open = |cache: &str| {
        Repository::open(
            &sb.repo,
            &Password::new(PASSWORD.as_bytes().to_vec()),
            &OpenOptions {
                cache_dir: Some(sb.path(cache)),
                base_cache_bytes: None,
            },
        )
        .unwrap()
    };
    for d in 1..=2 {
        snapshot_day(&sb, d, &[]);
    }
    let before: std::collections::HashSet<_> = {
        let repo = open("test-cache-2");
        let index = repo.index().unwrap();
        index.iter().map(|l| l.blob.id).collect()
    };
    snapshot_day(&sb, 3, &[]);
    // Take a delta that day 3 added, so that the latest snapshot needs it,
    // and damage its base in the middle of the base's bytes.
    let repo = open("test-cache");
    let index = repo.index().unwrap();
    let delta = index
        .iter()
        .find(|l| l.blob.delta.is_some() && !before.contains(&l.blob.id))
        .expect("day 3 stored deltas");
    let base_id = delta.blob.delta.unwrap().base;
    let base = index.lookup(&base_id).unwrap();
    drop(index);
    drop(repo);
    let hex = base.pack.to_hex();
    let pack = sb.repo.join("packs").join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = (base.blob.offset + base.blob.stored_len as u64 / 2) as usize;
    bytes[at] ^= 0x01;
    chmod(&pack, 0o600);
    std::fs::write(&pack, &bytes).unwrap();

    let out = sb.code(&["check", "--read-data"], exit::DAMAGED);
    let err = stderr(&out);
    let base_line = err
        .lines()
        .find(|l| l.contains(&format!("chunk {base_id}")) && l.contains("depend on it"))
        .unwrap_or_else(|| {
            panic!(
                "the base is not reported with its dependents\n{}",
                show(&out)
            )
        });
    assert!(
        base_line.contains(&delta.blob.id.short()),
        "the dependent delta is not named\n{}",
        show(&out)
    );
    assert!(
        err.contains("pg.sql"),
        "no affected file is named\n{}",
        show(&out)
    );
    // The dependent's own restore fails cleanly, naming what is damaged.
    let target = sb.path("out");
    let out = sb.code(
        &["restore", "latest", "--target", &path_str(&target)],
        exit::DAMAGED,
    );
    assert!(stderr(&out).contains("pg.sql"), "{}", show(&out));
}
