//! Throughput of whole snapshots and restores, through the library API.
//!
//! - `snapshot/dump_first` — a 64 MiB pg_dump-like SQL file into a fresh
//!   repository (chunk, id, compress, seal, pack, index, manifest).
//! - `snapshot/dump_daily` — the next day's dump (1% of the lines changed, in
//!   short runs at scattered places) into a repository that holds day 1: mostly
//!   chunking, hashing and index lookups.
//! - `snapshot/tree_unchanged` — a web-like tree of 5,000 small files (≈50 MB)
//!   that has not changed since the parent snapshot: the no-read path (walk,
//!   lstat, compare with the parent, rebuild trees).
//! - `restore/dump`, `restore/tree` — restore of the day-1 dump and of the
//!   tree into an empty target.
//!
//! Repository creation, Argon2 (a cheap 8 MiB, 1 pass key file), copying a
//! prepared repository and removing restore targets happen outside the timed
//! part. Data is generated once, deterministically, into a temporary directory
//! (`SOPVAULT_BENCH_DIR` chooses its parent); file reads come from the page
//! cache, so the numbers are CPU and fsync bound, not disk bound.
//!
//! Run with `cargo bench --bench pipeline` (about 2–3 minutes on 2 cores).

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use sopvault::crypto::Password;
use sopvault::format::keyfile::KdfParams;
use sopvault::ops::progress::NoProgress;
use sopvault::ops::restore::{self, RestoreOptions};
use sopvault::ops::snapshot::{self, SnapshotOptions};
use sopvault::repo::{InitOptions, OpenOptions};
use sopvault::Repository;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
/// Size of the generated dump.
const DUMP_LEN: usize = 64 * MIB;
/// Day 2 changes runs of this many consecutive rows...
const CHANGED_RUN: usize = 32;
/// ...each run with this probability (in percent), so about this percentage of rows.
const CHANGED_PERCENT: u64 = 1;
/// The web-like tree: directories of files.
const TREE_SECTIONS: usize = 10;
const TREE_SUBDIRS: usize = 10;
const TREE_FILES_PER_DIR: usize = 50;

/// The generator the integration tests use (xorshift64*), started from fixed
/// states so the inputs stay byte for byte what they were.
#[path = "../tests/it/common/rng.rs"]
mod rng;
use rng::Xorshift;

/// One of `items`, chosen by `rng`.
fn pick<'a>(rng: &mut Xorshift, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

const FIRST: &[&str] = &[
    "Budi", "Siti", "Agus", "Dewi", "Rudi", "Sri", "Joko", "Wati", "Andi", "Rina", "Hendra", "Ayu",
    "Bambang", "Lestari", "Eko", "Putri", "Yusuf", "Indah", "Fajar", "Nur",
];
const LAST: &[&str] = &[
    "Santoso",
    "Wijaya",
    "Saputra",
    "Hidayat",
    "Kusuma",
    "Pratama",
    "Nugroho",
    "Siregar",
    "Simanjuntak",
    "Halim",
    "Gunawan",
    "Setiawan",
    "Lubis",
    "Harahap",
    "Wibowo",
    "Susanto",
];
const CITIES: &[&str] = &[
    "Jakarta",
    "Surabaya",
    "Bandung",
    "Medan",
    "Semarang",
    "Makassar",
    "Palembang",
    "Yogyakarta",
    "Denpasar",
    "Malang",
    "Padang",
    "Pontianak",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "contoh.co.id",
    "kampus.ac.id",
];
const STATUS: &[&str] = &[
    "pending",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
];
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
    "berita",
    "produk",
];

/// The fields of one row that day 2 may change.
struct Mutable {
    amount: u64,
    status: &'static str,
    updated: u64,
}

fn write_row(out: &mut String, id: u64, fixed: &str, m: &Mutable) {
    let t = m.updated;
    let _ = writeln!(
        out,
        "{id}\t{fixed}\t{}.{:02}\t{}\t2025-{:02}-{:02} {:02}:{:02}:{:02}+07",
        m.amount / 100,
        m.amount % 100,
        m.status,
        t % 12 + 1,
        (t >> 4) % 28 + 1,
        (t >> 9) % 24,
        (t >> 14) % 60,
        (t >> 20) % 60,
    );
}

/// Two versions of a pg_dump-like SQL script of about `len` bytes: day 1, and
/// day 2 with `CHANGED_PERCENT`% of the rows updated in runs of `CHANGED_RUN`.
/// zstd level 1 compresses it about 3:1, like a real dump.
fn dumps(len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rows = Xorshift::from_state(0x5eed_0001);
    let mut changes = Xorshift::from_state(0x5eed_0002);
    let head = "--\n-- PostgreSQL database dump\n--\n\n\
        SET statement_timeout = 0;\nSET lock_timeout = 0;\nSET client_encoding = 'UTF8';\n\
        SET standard_conforming_strings = on;\n\n\
        CREATE TABLE public.orders (\n    id bigint NOT NULL,\n    customer_id integer,\n    \
        name text,\n    email text,\n    city text,\n    token text,\n    amount numeric(12,2),\n    \
        status text,\n    updated_at timestamp with time zone\n);\n\n\
        COPY public.orders (id, customer_id, name, email, city, token, amount, status, updated_at) FROM stdin;\n";
    let tail = "\\.\n\n\
        ALTER TABLE ONLY public.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);\n\n\
        --\n-- PostgreSQL database dump complete\n--\n\n";
    let mut day1 = String::with_capacity(len + 4096);
    let mut day2 = String::with_capacity(len + 4096);
    day1.push_str(head);
    day2.push_str(head);
    let mut fixed = String::new();
    let mut id = 0u64;
    let mut run_left = 0usize;
    while day1.len() + tail.len() < len {
        id += 1;
        let (first, last) = (pick(&mut rows, FIRST), pick(&mut rows, LAST));
        fixed.clear();
        let _ = write!(
            fixed,
            "{}\t{first} {last}\t{}.{}{}@{}\t{}\t{:016x}",
            rows.below(200_000),
            first.to_lowercase(),
            last.to_lowercase(),
            rows.below(100),
            pick(&mut rows, DOMAINS),
            pick(&mut rows, CITIES),
            rows.next_u64(),
        );
        let m = Mutable {
            amount: rows.below(10_000_000),
            status: pick(&mut rows, STATUS),
            updated: rows.next_u64(),
        };
        write_row(&mut day1, id, &fixed, &m);
        if run_left == 0 && id as usize % CHANGED_RUN == 0 && changes.below(100) < CHANGED_PERCENT {
            run_left = CHANGED_RUN;
        }
        if run_left > 0 {
            run_left -= 1;
            let m2 = Mutable {
                amount: changes.below(10_000_000),
                status: pick(&mut changes, STATUS),
                updated: changes.next_u64(),
            };
            write_row(&mut day2, id, &fixed, &m2);
        } else {
            write_row(&mut day2, id, &fixed, &m);
        }
    }
    day1.push_str(tail);
    day2.push_str(tail);
    (day1.into_bytes(), day2.into_bytes())
}

/// Writes the web-like tree below `root`; returns its total size in bytes.
/// Three files in five are HTML/CSS/JS text (1–12 KiB), two are "images"
/// (4–28 KiB of random bytes).
fn write_tree(root: &Path) -> u64 {
    let mut rng = Xorshift::from_state(0x5eed_0003);
    let mut total = 0u64;
    let mut n = 0usize;
    for s in 0..TREE_SECTIONS {
        for d in 0..TREE_SUBDIRS {
            let dir = root
                .join(format!("section-{s:02}"))
                .join(format!("d{d:02}"));
            std::fs::create_dir_all(&dir).expect("create tree directory");
            for _ in 0..TREE_FILES_PER_DIR {
                n += 1;
                let (name, bytes) = if rng.below(5) < 3 {
                    let size = 1024 + rng.below(11 * 1024) as usize;
                    let ext = ["html", "css", "js"][rng.below(3) as usize];
                    (format!("page-{n:05}.{ext}"), web_text(&mut rng, size))
                } else {
                    let size = 4096 + rng.below(24 * 1024) as usize;
                    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
                    while b.len() < size {
                        b.extend_from_slice(&rng.next_u64().to_le_bytes());
                    }
                    b.truncate(size);
                    (format!("img-{n:05}.png"), b)
                };
                total += bytes.len() as u64;
                std::fs::write(dir.join(name), bytes).expect("write tree file");
            }
        }
    }
    total
}

fn web_text(rng: &mut Xorshift, size: usize) -> Vec<u8> {
    let mut s = String::with_capacity(size + 256);
    s.push_str("<!DOCTYPE html>\n<html lang=\"id\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<link rel=\"stylesheet\" href=\"/assets/css/site.css\">\n</head>\n<body>\n");
    while s.len() < size {
        let _ = write!(
            s,
            "<p class=\"c{}\" id=\"p{:x}\">",
            rng.below(20),
            rng.next_u64() >> 40
        );
        for _ in 0..8 + rng.below(24) {
            s.push_str(pick(rng, WORDS));
            s.push(' ');
        }
        s.push_str("</p>\n");
    }
    s.truncate(size);
    s.into_bytes()
}

fn password() -> Password {
    Password::new(b"correct horse battery staple".to_vec())
}

/// A repository directory and its index cache directory.
struct RepoDir {
    repo: PathBuf,
    cache: PathBuf,
}

impl RepoDir {
    fn at(dir: &Path) -> RepoDir {
        RepoDir {
            repo: dir.join("repo"),
            cache: dir.join("cache"),
        }
    }
    fn open_options(&self) -> OpenOptions {
        OpenOptions {
            cache_dir: Some(self.cache.clone()),
            base_cache_bytes: None,
        }
    }
    fn init(&self) -> Repository {
        let opts = InitOptions {
            kdf: KdfParams::CHEAPEST,
            ..InitOptions::default()
        };
        Repository::init(&self.repo, &password(), &opts, &self.open_options())
            .expect("init repository")
    }
    fn open(&self) -> Repository {
        Repository::open(&self.repo, &password(), &self.open_options()).expect("open repository")
    }
    /// A copy below `dir` made of hard links: repository files are written once
    /// and never changed, and the index cache is replaced by rename, so
    /// whatever the copy gets leaves the original untouched.
    fn link_copy(&self, dir: &Path) -> RepoDir {
        let to = RepoDir::at(dir);
        link_tree(&self.repo, &to.repo);
        if self.cache.exists() {
            link_tree(&self.cache, &to.cache);
        }
        to
    }
}

fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for e in std::fs::read_dir(from).expect("read directory") {
        let e = e.expect("read directory entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            link_tree(&e.path(), &dst);
        } else {
            std::fs::hard_link(e.path(), &dst).expect("hard link");
        }
    }
}

fn snapshot_options(source: &str, path: &Path) -> SnapshotOptions {
    SnapshotOptions {
        source: source.into(),
        paths: vec![path.to_path_buf()],
        ..SnapshotOptions::default()
    }
}

fn snap(repo: &Repository, source: &str, path: &Path) -> snapshot::SnapshotOutcome {
    snapshot::run(repo, &snapshot_options(source, path), &NoProgress, None).expect("snapshot")
}

struct Fixture {
    dir: tempfile::TempDir,
    /// The day-1 dump, for `dump_first`.
    first_dump: PathBuf,
    dump_len: u64,
    /// Holds the day-2 dump now; `day1` was snapshotted while it held day 1.
    daily_dump: PathBuf,
    daily_len: u64,
    tree: PathBuf,
    tree_len: u64,
    /// Source `db`: one snapshot of `daily_dump` as of day 1.
    day1: RepoDir,
    /// Source `web`: two snapshots of `tree` (the second one warmed the index cache).
    web: RepoDir,
}

impl Fixture {
    fn build() -> Fixture {
        let started = Instant::now();
        let dir = match std::env::var_os("SOPVAULT_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .expect("temporary directory");
        let root = dir.path();
        for d in ["first", "daily", "web", "repos", "scratch"] {
            std::fs::create_dir(root.join(d)).expect("create directory");
        }
        let (day1, day2) = dumps(DUMP_LEN);
        let first_dump = root.join("first/dump.sql");
        let daily_dump = root.join("daily/dump.sql");
        std::fs::write(&first_dump, &day1).expect("write dump");
        std::fs::write(&daily_dump, &day1).expect("write dump");
        let tree = root.join("web/site");
        let tree_len = write_tree(&tree);

        let day1_repo = RepoDir::at(&root.join("repos/day1"));
        let web = RepoDir::at(&root.join("repos/web"));
        {
            let repo = day1_repo.init();
            let s = snap(&repo, "db", &daily_dump).snapshot.summary;
            eprintln!(
                "pipeline: dump {} bytes, {} chunks, stored {} bytes (ratio {:.2}:1)",
                s.bytes_total,
                s.chunks_new,
                s.bytes_stored,
                s.bytes_total as f64 / s.bytes_stored.max(1) as f64
            );
        }
        // Day 2 replaces day 1 at the same path, as a nightly dump does.
        std::fs::write(&daily_dump, &day2).expect("write dump");
        {
            let repo = web.init();
            let s = snap(&repo, "web", &tree).snapshot.summary;
            eprintln!(
                "pipeline: tree {} files, {} bytes, stored {} bytes (ratio {:.2}:1)",
                s.files,
                s.bytes_total,
                s.bytes_stored,
                s.bytes_total as f64 / s.bytes_stored.max(1) as f64
            );
            // A second snapshot merges the first one's index files into the
            // cache, so the measured runs find it current.
            let s = snap(&repo, "web", &tree).snapshot.summary;
            if s.files_unchanged != s.files {
                eprintln!(
                    "pipeline: WARNING: only {} of {} unchanged files were reused from the parent",
                    s.files_unchanged, s.files
                );
            }
        }
        {
            // How much of day 2 is new to a repository holding day 1.
            let scratch = tempfile::tempdir_in(root.join("scratch")).expect("temporary directory");
            let copy = day1_repo.link_copy(scratch.path());
            let s = snap(&copy.open(), "db", &daily_dump).snapshot.summary;
            eprintln!(
                "pipeline: day 2: {} of {} bytes new ({:.1}%) in {} chunks",
                s.bytes_new,
                s.bytes_total,
                100.0 * s.bytes_new as f64 / s.bytes_total.max(1) as f64,
                s.chunks_new
            );
        }
        eprintln!(
            "pipeline: fixture ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
        Fixture {
            first_dump,
            dump_len: day1.len() as u64,
            daily_dump,
            daily_len: day2.len() as u64,
            tree,
            tree_len,
            day1: day1_repo,
            web,
            dir,
        }
    }

    /// A fresh directory for one iteration's repository or restore target.
    fn scratch(&self) -> tempfile::TempDir {
        tempfile::tempdir_in(self.dir.path().join("scratch")).expect("temporary directory")
    }
}

/// Times one snapshot per iteration; `prepare` makes its repository untimed.
fn time_snapshots(
    iters: u64,
    fx: &Fixture,
    prepare: impl Fn(&Path) -> Repository,
    source: &str,
    path: &Path,
) -> Duration {
    let opts = snapshot_options(source, path);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = fx.scratch();
        let repo = prepare(dir.path());
        let t = Instant::now();
        let out = snapshot::run(&repo, &opts, &NoProgress, None).expect("snapshot");
        total += t.elapsed();
        black_box(out);
        drop(repo);
        drop(dir);
    }
    total
}

/// Times one restore of `spec` per iteration into an empty target. With
/// `kept`, the targets are removed only when it is dropped: on ext4 without a
/// journal, creating files while thousands of inodes were deleted in the last
/// 30 s is 10× slower (the allocator skips "recently deleted" inodes one by
/// one), which would measure the kernel, not the restore.
fn time_restores(
    iters: u64,
    fx: &Fixture,
    from: &RepoDir,
    spec: &str,
    mut kept: Option<&mut Vec<tempfile::TempDir>>,
) -> Duration {
    let repo = from.open();
    let index = repo.index().expect("index");
    let (_, snap) = repo.find_snapshot(spec).expect("find snapshot");
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = fx.scratch();
        let opts = RestoreOptions {
            target: dir.path().join("target"),
            ..RestoreOptions::default()
        };
        let t = Instant::now();
        let report = restore::restore(&repo, &index, &snap.root, &opts).expect("restore");
        total += t.elapsed();
        assert!(
            report.errors.is_empty(),
            "restore errors: {:?}",
            report.errors
        );
        black_box(report);
        match kept.as_deref_mut() {
            Some(k) => k.push(dir),
            None => drop(dir),
        }
    }
    total
}

fn pipeline(c: &mut Criterion) {
    let fx = Fixture::build();

    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(fx.dump_len));
    g.bench_function("dump_first", |b| {
        b.iter_custom(|iters| {
            time_snapshots(iters, &fx, |d| RepoDir::at(d).init(), "db", &fx.first_dump)
        })
    });
    g.throughput(Throughput::Bytes(fx.daily_len));
    g.bench_function("dump_daily", |b| {
        b.iter_custom(|iters| {
            time_snapshots(
                iters,
                &fx,
                |d| fx.day1.link_copy(d).open(),
                "db",
                &fx.daily_dump,
            )
        })
    });
    g.throughput(Throughput::Bytes(fx.tree_len));
    g.bench_function("tree_unchanged", |b| {
        b.iter_custom(|iters| {
            time_snapshots(iters, &fx, |d| fx.web.link_copy(d).open(), "web", &fx.tree)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("restore");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(fx.dump_len));
    g.bench_function("dump", |b| {
        b.iter_custom(|iters| time_restores(iters, &fx, &fx.day1, "db:latest", None))
    });
    g.throughput(Throughput::Bytes(fx.tree_len));
    let mut trees = Vec::new();
    g.bench_function("tree", |b| {
        b.iter_custom(|iters| time_restores(iters, &fx, &fx.web, "web:latest", Some(&mut trees)))
    });
    g.finish();
    drop(trees);
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
