//! The paths a snapshot backs up, as a tree: each given path keeps its
//! absolute path below the snapshot's root, and the directories that lead
//! to it ([`VNode::Virtual`]) are recorded with their own metadata only.
//! Also here: what is never backed up (the repository itself, under every
//! name the walk can meet it by), and [`prescan`], which starts reading the
//! directories before the repository is even opened.

use super::options::{SnapshotOptions, StreamSpec};
use crate::error::{Error, Result};
use crate::sys::walk::{Excludes, Prescan};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A node of the path tree: a path given to back up, or a directory on the way to one.
pub(super) enum VNode {
    Real,
    Virtual(BTreeMap<Vec<u8>, VNode>),
}

/// The given paths, resolved and checked.
pub(super) struct PathPlan {
    /// The tree of the given paths and the directories that lead to them.
    pub root: BTreeMap<Vec<u8>, VNode>,
    /// The absolute paths, as the manifest records them.
    pub abs_paths: Vec<Vec<u8>>,
    /// The absolute paths, in the order given.
    pub given: Vec<PathBuf>,
    /// The repository's directory, canonical, when it is a local one.
    pub repo_root: Option<PathBuf>,
}

/// Resolves the paths to back up: each must exist and lie outside the
/// repository at `repo`, and no stream may share a name with a top directory.
pub(super) fn plan_paths(opts: &SnapshotOptions, repo: &Path) -> Result<PathPlan> {
    let mut plan = PathPlan {
        root: BTreeMap::new(),
        abs_paths: Vec::new(),
        given: Vec::new(),
        repo_root: repo_root_of(repo),
    };
    for p in &opts.paths {
        let abs = absolute(p)?;
        std::fs::symlink_metadata(&abs)
            .map_err(|e| Error::Usage(format!("{}: cannot back up: {e}", abs.display())))?;
        if let Some(repo_root) = &plan.repo_root {
            refuse_repository(&abs, repo_root)?;
        }
        plan.abs_paths.push(abs.as_os_str().as_bytes().to_vec());
        insert_path(&mut plan.root, &abs);
        plan.given.push(abs);
    }
    refuse_stream_collisions(&plan.root, &opts.streams)?;
    Ok(plan)
}

/// Streams are files at the snapshot's root: none may be named like a top
/// directory of a backed-up path.
fn refuse_stream_collisions(root: &BTreeMap<Vec<u8>, VNode>, streams: &[StreamSpec]) -> Result<()> {
    for s in streams {
        if root.contains_key(s.name.as_bytes()) {
            return Err(Error::Usage(format!(
                "stream name {:?} collides with the top directory of a backed-up path",
                s.name
            )));
        }
    }
    Ok(())
}

/// Normalises a path to an absolute one without following symlinks.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The repository directory as the walk compares paths with it (it is never backed up).
fn repo_root_of(repo: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(repo).ok()
}

/// Where a path really is: its directory with symlinks resolved, and its
/// own name as it is (a symlink is backed up as one, never followed).
fn real_path(abs: &Path) -> PathBuf {
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| abs.to_path_buf()),
        _ => abs.to_path_buf(),
    }
}

/// The repository's directory under every name the walk of `paths`
/// (absolute) can meet it by: the walk names entries after the path given,
/// so below `/home/x`, where `/home` is a symlink to `/data/home`, a
/// repository at `/data/home/x/repo` is met as `/home/x/repo`.
pub(super) fn repo_in_walk(paths: &[PathBuf], repo_root: Option<PathBuf>) -> Vec<PathBuf> {
    let Some(repo_root) = repo_root else {
        return Vec::new();
    };
    let mut out = vec![repo_root.clone()];
    for p in paths {
        if let Ok(rel) = repo_root.strip_prefix(real_path(p)) {
            let alias = p.join(rel);
            if !out.contains(&alias) {
                out.push(alias);
            }
        }
    }
    out
}

/// Refuses a path to back up that is the repository or lies inside it. The
/// walk leaves the repository out where it meets it below a path
/// ([`Excludes`], [`repo_in_walk`]); a path given to back up is where the
/// walk starts, so it is checked here, as it [really is](real_path): a
/// symlink to the repository is backed up as the symlink it is, no copy.
fn refuse_repository(abs: &Path, repo_root: &Path) -> Result<()> {
    let real = real_path(abs);
    if real.starts_with(repo_root) {
        let what = if real == repo_root {
            "is the repository"
        } else {
            "is inside the repository"
        };
        return Err(Error::Usage(format!(
            "{}: cannot back up: it {what} {}; a repository is never backed up into itself",
            abs.display(),
            repo_root.display()
        )));
    }
    Ok(())
}

/// The given paths as a tree of the directories that lead to them.
fn path_tree(paths: &[PathBuf]) -> Result<BTreeMap<Vec<u8>, VNode>> {
    let mut root = BTreeMap::new();
    for p in paths {
        insert_path(&mut root, &absolute(p)?);
    }
    Ok(root)
}

/// The backed-up paths in the order the archiver visits them (`/` when the
/// whole root is backed up): the roots of the walk.
pub(super) fn listed_roots(root: &BTreeMap<Vec<u8>, VNode>) -> Vec<PathBuf> {
    fn visit(map: &BTreeMap<Vec<u8>, VNode>, dir: &Path, out: &mut Vec<PathBuf>) {
        if let Some(VNode::Real) = map.get(&Vec::new()) {
            out.push(dir.to_path_buf());
            return;
        }
        for (name, child) in map {
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            match child {
                VNode::Real => out.push(path),
                VNode::Virtual(m) => visit(m, &path, out),
            }
        }
    }
    let mut out = Vec::new();
    visit(root, Path::new("/"), &mut out);
    out
}

/// Starts reading the directories `opts` backs up into the repository at
/// `repo` (a directory or an `s3://` URL), before the repository is even
/// opened; `run` takes the result. `None` when there is nothing to walk or
/// the options are invalid (`run` reports that).
pub fn prescan(opts: &SnapshotOptions, repo: &Path) -> Option<Prescan> {
    if opts.paths.is_empty() {
        return None;
    }
    let root = path_tree(&opts.paths).ok()?;
    let repo_root = repo_root_of(repo);
    let abs: Vec<PathBuf> = opts
        .paths
        .iter()
        .map(|p| absolute(p).ok())
        .collect::<Option<_>>()?;
    if let Some(r) = &repo_root {
        for p in &abs {
            refuse_repository(p, r).ok()?;
        }
    }
    let excludes = Excludes::new(&opts.excludes, repo_in_walk(&abs, repo_root)).ok()?;
    Some(Prescan::start(
        listed_roots(&root),
        excludes,
        opts.one_file_system,
    ))
}

fn insert_path(root: &mut BTreeMap<Vec<u8>, VNode>, abs: &Path) {
    let comps: Vec<Vec<u8>> = abs
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    if comps.is_empty() {
        // "/" itself: everything.
        root.clear();
        root.insert(Vec::new(), VNode::Real);
        return;
    }
    if matches!(root.get(&Vec::new()), Some(VNode::Real)) {
        return;
    }
    let mut cur = root;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        if last {
            cur.insert(c.clone(), VNode::Real);
            return;
        }
        let entry = cur
            .entry(c.clone())
            .or_insert_with(|| VNode::Virtual(BTreeMap::new()));
        match entry {
            VNode::Real => return,
            VNode::Virtual(m) => cur = m,
        }
    }
}
