//! `ops::prune` on the memory backend: plan, then execute; afterwards every
//! kept snapshot restores byte for byte and `check` passes. A property test
//! draws sets of snapshots and a retention rule and compares the plan with a
//! simple model (the newest `keep_last` snapshots of each source).

use super::{assert_checks, day, files_below, restored_copy, Scratch};
use crate::backend::{Backend, FileKind};
use crate::ids::SnapshotId;
use crate::ops::prune::{self, GroupBy, PruneOptions};
use crate::ops::retention::{Count, Policy};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn keep_last(n: u32, max_unused: f64) -> PruneOptions {
    PruneOptions {
        policy: Policy {
            keep_last: Some(Count::N(n)),
            ..Policy::default()
        },
        group_by: GroupBy::default(),
        source: None,
        allow_remove_all: false,
        max_unused,
        max_repack_size: None,
        time: None,
        dry_run: false,
    }
}

/// A snapshot taken for a test, with the tree it was taken of.
struct Taken {
    id: SnapshotId,
    src: PathBuf,
}

/// Takes one snapshot per `(source, day, files)`, each file drawn from a
/// small pool so that snapshots share chunks.
fn take(s: &Scratch, plan: &[(u8, u32, Vec<u8>)]) -> Vec<Taken> {
    plan.iter()
        .map(|(source, d, files)| {
            let src = s.pool_source(files, 3000, 5000);
            let source = format!("src{source}");
            let out = s
                .snapshot_of(&s.repo, &source, &[&src], Some(day(*d)))
                .unwrap();
            Taken { id: out.id, src }
        })
        .collect()
}

/// Prunes with `opts`; checks the repository and that every kept snapshot
/// restores. Returns the ids kept.
fn prune_and_verify(s: &Scratch, taken: &[Taken], opts: &PruneOptions) -> BTreeSet<SnapshotId> {
    let plan = prune::plan(&s.repo, opts).unwrap();
    prune::execute(&s.repo, &plan).unwrap();
    let kept: BTreeSet<SnapshotId> = plan
        .snapshots
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.id)
        .collect();
    let repo = s.open(std::sync::Arc::new(s.memory.clone())).unwrap();
    let listed: BTreeSet<SnapshotId> = repo.snapshots().unwrap().iter().map(|p| p.0).collect();
    assert_eq!(listed, kept);
    assert_checks(&repo);
    for t in taken.iter().filter(|t| kept.contains(&t.id)) {
        let target = s.restore(&repo, &t.id);
        assert_eq!(
            files_below(&restored_copy(&target, &t.src)),
            files_below(&t.src)
        );
    }
    kept
}

#[test]
fn prune_forgets_old_snapshots_and_frees_their_packs() {
    let s = Scratch::new();
    let taken = take(
        &s,
        &[
            (0, 1, vec![1, 2]),
            (0, 2, vec![3, 4]),
            (1, 3, vec![1]),
            (0, 4, vec![5]),
        ],
    );
    let pack_bytes = || -> u64 {
        s.memory
            .list(FileKind::Pack)
            .unwrap()
            .iter()
            .map(|p| p.1)
            .sum()
    };
    let before = pack_bytes();
    let plan = prune::plan(&s.repo, &keep_last(1, 0.0)).unwrap();
    let forgotten: BTreeSet<SnapshotId> = plan.forget().map(|d| d.id).collect();
    assert_eq!(forgotten, BTreeSet::from([taken[0].id, taken[1].id]));
    let kept = prune_and_verify(&s, &taken, &keep_last(1, 0.0));
    assert_eq!(kept, BTreeSet::from([taken[2].id, taken[3].id]));
    // Files 2, 3 and 4 (54 kB of the 90 kB) are no kept snapshot's: their bytes are gone.
    let after = pack_bytes();
    assert!(
        after < before - 50_000,
        "{before} -> {after} bytes of packs"
    );
    assert_eq!(prune::records(&s.repo).unwrap().len(), 1);
}

#[test]
fn a_dry_run_plan_changes_nothing() {
    let s = Scratch::new();
    take(&s, &[(0, 1, vec![1]), (0, 2, vec![2])]);
    let before = s.memory.all_files().unwrap();
    let opts = PruneOptions {
        dry_run: true,
        ..keep_last(1, 0.0)
    };
    let plan = prune::plan(&s.repo, &opts).unwrap();
    assert_eq!(plan.forget().count(), 1);
    assert_eq!(s.memory.all_files().unwrap(), before);
}

/// The model: of each source, the `n` newest snapshots are kept.
fn model_keep(plan: &[(u8, u32, Vec<u8>)], taken: &[Taken], n: u32) -> BTreeSet<SnapshotId> {
    let mut kept = BTreeSet::new();
    for source in plan.iter().map(|p| p.0).collect::<BTreeSet<_>>() {
        let mut of: Vec<(u32, SnapshotId)> = plan
            .iter()
            .zip(taken)
            .filter(|(p, _)| p.0 == source)
            .map(|(p, t)| (p.1, t.id))
            .collect();
        of.sort();
        kept.extend(of.iter().rev().take(n as usize).map(|x| x.1));
    }
    kept
}

/// Snapshots on distinct days, each of source 0 or 1 and a few pool files.
fn snapshot_sets() -> impl Strategy<Value = Vec<(u8, u32, Vec<u8>)>> {
    proptest::collection::btree_set(0u32..60, 1..6).prop_flat_map(|days| {
        let n = days.len();
        let days: Vec<u32> = days.into_iter().collect();
        proptest::collection::vec((0u8..2, proptest::collection::vec(0u8..6, 1..4)), n).prop_map(
            move |v| {
                v.into_iter()
                    .zip(&days)
                    .map(|((src, files), d)| (src, *d, files))
                    .collect()
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn prune_keeps_what_the_model_keeps_and_all_of_it_restores(
        plan in snapshot_sets(),
        n in 1u32..3,
        max_unused in prop_oneof![Just(0.0), Just(0.2), Just(1.0)],
    ) {
        let s = Scratch::new();
        let taken = take(&s, &plan);
        let kept = prune_and_verify(&s, &taken, &keep_last(n, max_unused));
        prop_assert_eq!(kept, model_keep(&plan, &taken, n));
    }
}
