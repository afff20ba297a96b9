//! `ops::mirror` between two memory backends. A property test draws a
//! history (snapshots, prunes, files lost from the mirror) and compares each
//! mirror plan with a simple model: it copies exactly the repository files
//! the source has and the mirror lacks, and what it deletes is never a file
//! that a snapshot the source keeps needs (afterwards the mirror checks and
//! restores every such snapshot).

use super::{assert_checks, day, files_below, restored_copy, Scratch};
use crate::backend::names::file_at;
use crate::backend::{Backend, FileKind, MemoryBackend};
use crate::ops::mirror::{self, MirrorOptions};
use crate::ops::prune::{self, GroupBy, PruneOptions};
use crate::ops::retention::{Count, Policy};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Every repository file of a place, as `(kind, name)`.
fn repository_files(b: &dyn Backend) -> BTreeSet<(FileKind, String)> {
    let all = b.all_files().unwrap();
    all.iter()
        .filter_map(|(rel, _)| file_at(rel).map(|(k, n)| (k, n.to_string())))
        .collect()
}

fn options(now: i64) -> MirrorOptions {
    MirrorOptions {
        init: true,
        delete_after_secs: 0,
        now,
        parallel: 2,
    }
}

/// One step of a history.
#[derive(Clone, Debug)]
enum Step {
    /// A snapshot of a tree of these pool files.
    Snapshot(Vec<u8>),
    /// Prune to the newest `n` snapshots.
    Prune(u32),
    /// The mirror loses the `i`-th of its repository files (modulo their number).
    Lose(usize),
    /// Mirror now.
    Mirror,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => proptest::collection::vec(0u8..6, 1..3).prop_map(Step::Snapshot),
        1 => (1u32..3).prop_map(Step::Prune),
        1 => any::<usize>().prop_map(Step::Lose),
        2 => Just(Step::Mirror),
    ];
    proptest::collection::vec(step, 1..8)
}

struct History {
    s: Scratch,
    dest: MemoryBackend,
    /// Snapshots taken so far, with their trees.
    taken: Vec<(crate::ids::SnapshotId, PathBuf)>,
    day: u32,
}

impl History {
    fn new() -> History {
        let s = Scratch::new();
        let dest = MemoryBackend::new();
        mirror::init_destination(&s.repo, &dest).unwrap();
        History {
            s,
            dest,
            taken: Vec::new(),
            day: 0,
        }
    }

    fn run(&mut self, step: &Step) {
        self.day += 1;
        match step {
            Step::Snapshot(files) => {
                let src = self.s.pool_source(files, 2000, 3000);
                let out = self
                    .s
                    .snapshot_of(&self.s.repo, "web", &[&src], Some(day(self.day)))
                    .unwrap();
                self.taken.push((out.id, src));
            }
            Step::Prune(n) if !self.taken.is_empty() => self.prune(*n),
            Step::Prune(_) => {}
            Step::Lose(i) => {
                let files: Vec<_> = repository_files(&self.dest).into_iter().collect();
                if !files.is_empty() {
                    let (kind, name) = &files[i % files.len()];
                    self.dest.remove(*kind, name).unwrap();
                }
            }
            Step::Mirror => self.mirror(),
        }
    }

    fn prune(&self, n: u32) {
        let opts = PruneOptions {
            policy: Policy {
                keep_last: Some(Count::N(n)),
                ..Policy::default()
            },
            group_by: GroupBy::default(),
            source: None,
            allow_remove_all: false,
            max_unused: 0.0,
            max_repack_size: None,
            time: Some(day(self.day)),
            dry_run: false,
        };
        let plan = prune::plan(&self.s.repo, &opts).unwrap();
        prune::execute(&self.s.repo, &plan).unwrap();
    }

    /// Plans a mirror run, compares the plan with the model, and carries it out.
    fn mirror(&self) {
        let dest: Arc<dyn Backend> = Arc::new(self.dest.clone());
        let source_files = repository_files(&self.s.memory);
        let mirror_files = repository_files(&self.dest);
        // Long after every grace period.
        let opts = options(day(self.day + 1000).at.sec);
        let plan = mirror::plan(&self.s.repo, &dest, &opts).unwrap();
        let copied: BTreeSet<(FileKind, String)> =
            plan.copy.iter().map(|f| (f.kind, f.name.clone())).collect();
        let missing: BTreeSet<_> = source_files.difference(&mirror_files).cloned().collect();
        assert_eq!(
            copied, missing,
            "the plan copies exactly what the mirror lacks"
        );
        for f in &plan.delete {
            assert!(
                !source_files.contains(&(f.kind, f.name.clone())),
                "the plan deletes {:?} {}, which the source still has",
                f.kind,
                f.name
            );
        }
        mirror::execute(
            &self.s.repo,
            &*dest,
            &plan,
            &opts,
            &crate::ops::progress::NoProgress,
        )
        .unwrap();
        self.verify_mirror(dest);
    }

    /// The mirror holds every snapshot the source keeps, checks, and restores them.
    fn verify_mirror(&self, dest: Arc<dyn Backend>) {
        let kept: BTreeSet<_> = self
            .s
            .repo
            .snapshots()
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        let on_mirror = self.s.repo.on_mirror(dest).unwrap();
        let mirrored: BTreeSet<_> = on_mirror.snapshots().unwrap().iter().map(|p| p.0).collect();
        assert!(
            kept.is_subset(&mirrored),
            "kept {kept:?}, mirrored {mirrored:?}"
        );
        assert_checks(&on_mirror);
        for (id, src) in self.taken.iter().filter(|t| kept.contains(&t.0)) {
            let target = self.s.restore(&on_mirror, id);
            assert_eq!(files_below(&restored_copy(&target, src)), files_below(src));
        }
    }
}

#[test]
fn a_mirror_copies_new_files_and_applies_prune_records() {
    let mut h = History::new();
    for step in [
        Step::Snapshot(vec![1, 2]),
        Step::Snapshot(vec![3]),
        Step::Mirror,
        Step::Prune(1),
        Step::Snapshot(vec![4]),
        Step::Mirror,
    ] {
        h.run(&step);
    }
    // The first snapshot was forgotten, and the grace period is over: its
    // manifest is gone from the mirror too.
    let mirrored = h.dest.list(FileKind::Snapshot).unwrap();
    let names: BTreeSet<String> = mirrored.into_iter().map(|p| p.0).collect();
    assert!(!names.contains(&h.taken[0].0.to_hex()), "{names:?}");
    assert!(names.contains(&h.taken[2].0.to_hex()), "{names:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn mirror_plans_copy_what_is_missing_and_keep_what_is_needed(history in steps()) {
        let mut h = History::new();
        for step in &history {
            h.run(step);
        }
        h.run(&Step::Mirror);
    }
}
