//! Checking a mirror without the key: names and sizes against the source
//! (when one is given), then the SHA-256 of each sampled file against its
//! name; and how far a destination is behind its source, for `--status`.

use super::listing::{rel_path, Listing};
use super::{thread_pool, COPY_ORDER};
use crate::backend::{Backend, FileKind};
use crate::error::{Error, Result};
use crate::ids::sha256;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How much of the content to hash.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sample {
    All,
    /// This share of files, chosen by name and day: over `ceil(1 / share)`
    /// consecutive days every file is hashed once.
    Share {
        share: f64,
        day: i64,
    },
}

/// What `mirror --verify` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub files: u64,
    pub bytes: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// Files checked through the SHA-256 the object store recorded at upload, without reading them.
    pub files_by_stored_checksum: u64,
    /// At the source, not in the mirror.
    pub missing: Vec<String>,
    /// In the mirror, not at the source (normal for files pruned within the grace period).
    pub extra: Vec<String>,
    /// Wrong size or wrong content; each with what was expected and found.
    pub damaged: Vec<String>,
    /// Files that are not repository files (ignored by sopvault).
    pub stray: Vec<String>,
    /// Whether the names were compared with a source repository.
    pub compared_with_source: bool,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.damaged.is_empty()
    }
}

fn sampled(name: &str, sample: Sample) -> bool {
    match sample {
        Sample::All => true,
        Sample::Share { share, day } => {
            let period = (1.0 / share).ceil().max(1.0) as u64;
            let n = u64::from_str_radix(name.get(..12).unwrap_or("0"), 16).unwrap_or(0);
            n % period == (day.rem_euclid(period as i64)) as u64
        }
    }
}

/// Checks a mirror without the key: names and sizes (against `source`, when
/// given), then the SHA-256 of the sampled files against their names.
pub fn verify(
    dest: &dyn Backend,
    source: Option<&dyn Backend>,
    sample: Sample,
    parallel: usize,
    read_all: bool,
) -> Result<VerifyReport> {
    let target = Listing::of(dest)?;
    let mut report = VerifyReport {
        files: target.count() as u64,
        bytes: target.files.values().flat_map(|m| m.values()).sum(),
        stray: target.stray.clone(),
        ..Default::default()
    };
    if !target.readme && target.count() == 0 {
        return Err(Error::NoRepository {
            path: PathBuf::from(dest.location()),
            reason: "it holds no repository files and no SOPVAULT.txt".into(),
        });
    }
    if let Some(src) = source {
        compare_with_source(&Listing::of_source(src)?, &target, &mut report);
    }
    let todo: Vec<(FileKind, String)> = COPY_ORDER
        .iter()
        .flat_map(|k| target.kind(*k).map(|(n, _)| (*k, n.clone())))
        .filter(|(_, n)| sampled(n, sample))
        .collect();
    hash_files(dest, &todo, parallel, read_all, &mut report)?;
    report.damaged.sort();
    Ok(report)
}

/// Names and sizes: what the source has and the mirror lacks, what the
/// mirror has and the source does not, and sizes that differ.
fn compare_with_source(source: &Listing, target: &Listing, report: &mut VerifyReport) {
    report.compared_with_source = true;
    for kind in COPY_ORDER {
        for (name, size) in source.kind(kind) {
            match target.get(kind, name) {
                None => report.missing.push(rel_path(kind, name)),
                Some(s) if s != *size => report.damaged.push(format!(
                    "{}: size: expected {size} bytes (as at the source), found {s}",
                    rel_path(kind, name)
                )),
                _ => {}
            }
        }
        for (name, _) in target.kind(kind) {
            if source.get(kind, name).is_none() {
                report.extra.push(rel_path(kind, name));
            }
        }
    }
}

/// The hashing step's counters, shared by the hashing threads.
#[derive(Default)]
struct HashTally {
    hashed: AtomicU64,
    hashed_bytes: AtomicU64,
    by_checksum: AtomicU64,
    damaged: Mutex<Vec<String>>,
}

impl HashTally {
    fn damage(&self, what: String) {
        self.damaged.lock().unwrap().push(what);
    }
}

/// Checks each file's content against its name, `parallel` at once.
fn hash_files(
    dest: &dyn Backend,
    todo: &[(FileKind, String)],
    parallel: usize,
    read_all: bool,
    report: &mut VerifyReport,
) -> Result<()> {
    let tally = HashTally::default();
    let pool = thread_pool(parallel, "verify")?;
    pool.install(|| {
        use rayon::prelude::*;
        todo.par_iter()
            .try_for_each(|(kind, name)| hash_one(dest, *kind, name, read_all, &tally))
    })?;
    report.files_hashed = tally.hashed.into_inner();
    report.bytes_hashed = tally.hashed_bytes.into_inner();
    report.files_by_stored_checksum = tally.by_checksum.into_inner();
    report.damaged.extend(tally.damaged.into_inner().unwrap());
    Ok(())
}

/// Checks one file: by the SHA-256 checksum the object store kept, when it
/// has one and `read_all` is off, else by reading and hashing it.
fn hash_one(
    dest: &dyn Backend,
    kind: FileKind,
    name: &str,
    read_all: bool,
    tally: &HashTally,
) -> Result<()> {
    crate::interrupt::check()?;
    if !read_all {
        match dest.stored_sha256(kind, name) {
            Ok(Some(found)) => {
                tally.by_checksum.fetch_add(1, Ordering::Relaxed);
                if found != name {
                    tally.damage(format!(
                        "{}: content: name says {name}, the stored SHA-256 checksum is {found}",
                        rel_path(kind, name)
                    ));
                }
                return Ok(());
            }
            Ok(None) => {}
            Err(e @ Error::Damaged { .. }) => {
                tally.damage(e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    match dest.read(kind, name) {
        Ok(bytes) => {
            tally.hashed.fetch_add(1, Ordering::Relaxed);
            (tally.hashed_bytes).fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let found = hex::encode(sha256(&bytes));
            if found != name {
                tally.damage(format!(
                    "{}: content: name says {name}, bytes hash to {found}",
                    rel_path(kind, name)
                ));
            }
            Ok(())
        }
        Err(e @ Error::Damaged { .. }) => {
            tally.damage(e.to_string());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// How far a destination is behind its source, by names and sizes (no key).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Behind {
    pub files: u64,
    pub bytes: u64,
    /// Files in the mirror the source no longer has (pruned, waiting for deletion).
    pub extra_files: u64,
    pub extra_bytes: u64,
}

pub fn behind(source: &dyn Backend, dest: &dyn Backend) -> Result<Behind> {
    let s = Listing::of_source(source)?;
    let d = Listing::of(dest)?;
    let missing = s.missing_from(&d);
    let extra = d.missing_from(&s);
    Ok(Behind {
        files: missing.len() as u64,
        bytes: missing.iter().map(|f| f.size).sum(),
        extra_files: extra.len() as u64,
        extra_bytes: extra.iter().map(|f| f.size).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_sample_covers_every_name_once_per_period() {
        let names: Vec<String> = (0..200u32)
            .map(|i| hex::encode(sha256(&i.to_le_bytes())))
            .collect();
        let share = 0.05;
        let mut seen = vec![0; names.len()];
        for day in 100..120 {
            for (i, n) in names.iter().enumerate() {
                if sampled(n, Sample::Share { share, day }) {
                    seen[i] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
    }
}
