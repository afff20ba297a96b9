//! Carrying out a mirror plan: start the destination if it is new, copy the
//! missing files kind by kind in [`COPY_ORDER`], then (only if every copy
//! succeeded and none was damaged at the source) delete what the plan condemns.

use super::listing::FileRef;
use super::plan::{MirrorOptions, MirrorPlan};
use super::{thread_pool, COPY_ORDER};
use crate::backend::{Backend, FileKind, README_NAME};
use crate::error::{Error, Result};
use crate::ops::progress::Progress;
use crate::repo::mirror::FileCopy;
use crate::repo::Repository;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MirrorOutcome {
    pub copied_files: u64,
    pub copied_bytes: u64,
    pub deleted_files: u64,
    pub deleted_bytes: u64,
    /// Source files whose bytes do not hash to their name: not copied.
    pub damaged_at_source: Vec<String>,
}

/// Starts a mirror in an empty destination: the layout (a directory's, as
/// `init` makes it) and the source's `SOPVAULT.txt`, byte for byte.
pub fn init_destination(repo: &Repository, dest: &dyn Backend) -> Result<()> {
    let text = source_readme(repo)?;
    match dest.local_root() {
        // Layout first, SOPVAULT.txt last: an interrupted --init leaves
        // only empty directories, which still count as empty.
        Some(root) => write_local_layout(root, &text),
        None => dest.create(&text),
    }
}

fn source_readme(repo: &Repository) -> Result<String> {
    let object = || format!("{}/{README_NAME}", repo.location());
    let readme = repo
        .stored_readme()?
        .ok_or_else(|| Error::damaged(object(), "missing"))?;
    String::from_utf8(readme).map_err(|_| Error::damaged(object(), "not plain text"))
}

/// Carries out a plan made under the destination's exclusive lock: copies,
/// then (only if every copy succeeded) deletes.
pub fn execute(
    repo: &Repository,
    dest: &dyn Backend,
    plan: &MirrorPlan,
    opts: &MirrorOptions,
    progress: &dyn Progress,
) -> Result<MirrorOutcome> {
    if plan.copy_readme {
        match dest.local_root() {
            Some(root) => write_local_layout(root, &source_readme(repo)?)?,
            None => return Err(Error::damaged(
                format!("{}/{README_NAME}", dest.location()),
                "missing in a mirror that holds repository files; copy it from the source by hand",
            )),
        }
    }
    let mut outcome = copy_files(repo, dest, plan, opts, progress)?;
    if outcome.damaged_at_source.is_empty() {
        // Nothing is deleted from a mirror while the source is damaged.
        delete_condemned(dest, plan, &mut outcome)?;
    }
    Ok(outcome)
}

/// Creates a repository directory's layout (as `init` does) and writes `SOPVAULT.txt`.
fn write_local_layout(root: &Path, text: &str) -> Result<()> {
    if !root.exists() {
        // Only the last component: a missing parent is likely an unmounted disk.
        std::fs::create_dir(root).map_err(|e| Error::io(root, e))?;
    }
    let dirs = FileKind::ALL
        .iter()
        .map(|k| k.dir().to_string())
        .chain(["locks".into(), "tmp".into()])
        .chain((0..256).map(|i| format!("packs/{i:02x}")));
    for d in dirs {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    let tmp = root.join("tmp").join("SOPVAULT.txt.new");
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    let dst = root.join(README_NAME);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
}

/// The copy step's counters, shared by the copying threads.
#[derive(Default)]
struct CopyTally {
    files: AtomicU64,
    bytes: AtomicU64,
    damaged: Mutex<Vec<String>>,
    first_error: Mutex<Option<Error>>,
}

/// Copies the plan's files, one kind after another: a file is only written
/// once everything it refers to is there.
fn copy_files(
    repo: &Repository,
    dest: &dyn Backend,
    plan: &MirrorPlan,
    opts: &MirrorOptions,
    progress: &dyn Progress,
) -> Result<MirrorOutcome> {
    let tally = CopyTally::default();
    let pool = thread_pool(opts.parallel, "copy")?;
    progress.set_total(plan.copy_bytes(), plan.copy.len() as u64);
    for kind in COPY_ORDER {
        let files: Vec<&FileRef> = plan.copy.iter().filter(|f| f.kind == kind).collect();
        if files.is_empty() {
            continue;
        }
        pool.install(|| {
            use rayon::prelude::*;
            files.par_iter().for_each(|f| {
                if tally.first_error.lock().unwrap().is_some() {
                    return;
                }
                if let Err(e) = copy_one(repo, dest, f, &tally, progress) {
                    tally.first_error.lock().unwrap().get_or_insert(e);
                }
            });
        });
        if let Some(e) = tally.first_error.lock().unwrap().take() {
            return Err(e);
        }
        crate::sys::faults::point(&format!("mirror:after-{}", kind.dir()));
    }
    Ok(MirrorOutcome {
        copied_files: tally.files.into_inner(),
        copied_bytes: tally.bytes.into_inner(),
        damaged_at_source: tally.damaged.into_inner().unwrap(),
        ..Default::default()
    })
}

fn copy_one(
    repo: &Repository,
    dest: &dyn Backend,
    f: &FileRef,
    tally: &CopyTally,
    progress: &dyn Progress,
) -> Result<()> {
    crate::interrupt::check()?;
    let bytes = match repo.copy_file_to(dest, f.kind, &f.name)? {
        FileCopy::Copied { bytes } => bytes,
        FileCopy::DamagedAtSource(e) => {
            tally.damaged.lock().unwrap().push(e.to_string());
            return Ok(());
        }
    };
    let n = tally.files.fetch_add(1, Ordering::SeqCst) + 1;
    tally.bytes.fetch_add(bytes, Ordering::Relaxed);
    progress.bytes(f.size);
    progress.current(&f.rel_path());
    progress.file_done();
    crate::sys::faults::point(&format!("mirror:copied-{n}"));
    Ok(())
}

/// Deletes the condemned files: snapshots, then index files, then packs.
fn delete_condemned(
    dest: &dyn Backend,
    plan: &MirrorPlan,
    outcome: &mut MirrorOutcome,
) -> Result<()> {
    for kind in [FileKind::Snapshot, FileKind::Index, FileKind::Pack] {
        let names: Vec<String> = plan
            .delete
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.name.clone())
            .collect();
        if names.is_empty() {
            continue;
        }
        crate::interrupt::check()?;
        dest.remove_many(kind, &names)?;
        crate::sys::faults::point(&format!("mirror:deleted-{}", kind.dir()));
        outcome.deleted_files += names.len() as u64;
    }
    outcome.deleted_bytes = plan.delete_bytes();
    Ok(())
}
