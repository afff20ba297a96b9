//! Storage that fails on purpose ([`FaultyBackend`]) under a snapshot: for
//! every operation index N and every kind of fault, the run either succeeds
//! or returns an error, and afterwards the repository, with the faults
//! removed, passes `check`, and every snapshot it lists restores byte for
//! byte.

use super::{assert_checks, files_below, restored_copy, stream, Scratch};
use crate::backend::faulty::{Fault, Op, Trigger};
use crate::backend::{Backend, FaultyBackend};
use crate::ops::snapshot::SnapshotOptions;
use crate::testutil::noise;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FAULTS: [Fault; 5] = [
    Fault::Eio,
    Fault::NoSpace,
    Fault::ShortWrite,
    Fault::LostPublish,
    Fault::Crash,
];

/// A repository with one snapshot of a first tree, and a second tree (and
/// a stream) for the run under test.
struct Setup {
    s: Scratch,
    first: (crate::ids::SnapshotId, PathBuf),
    second: PathBuf,
}

fn setup() -> Setup {
    let s = Scratch::new();
    let one = s.source(&[("a", noise(40_000, 1)), ("d/b", b"b".repeat(100))]);
    let first = s.snapshot_of(&s.repo, "web", &[&one], None).unwrap().id;
    let second = s.source(&[
        ("a", noise(40_000, 1)),
        ("d/b", b"b".repeat(200)),
        ("big", noise(1_500_000, 2)),
    ]);
    Setup {
        s,
        first: (first, one),
        second,
    }
}

fn second_run(repo: &crate::Repository, src: &Path) -> crate::Result<crate::ids::SnapshotId> {
    let opts = SnapshotOptions {
        source: "web".into(),
        paths: vec![src.to_path_buf()],
        streams: vec![stream("dump.sql", "seq 1 30000")],
        ..Default::default()
    };
    crate::ops::snapshot::run(repo, &opts, &crate::ops::progress::NoProgress, None).map(|o| o.id)
}

/// Checks the repository through the plain memory backend, and restores
/// every snapshot it lists.
fn verify(setup: &Setup, second: Option<crate::ids::SnapshotId>, what: &str) {
    let s = &setup.s;
    let repo = s.open(Arc::new(s.memory.clone())).unwrap();
    assert_checks(&repo);
    let listed: Vec<_> = repo.snapshots().unwrap().into_iter().map(|p| p.0).collect();
    assert!(
        listed.contains(&setup.first.0),
        "{what}: the first snapshot is gone"
    );
    if let Some(id) = second {
        assert!(
            listed.contains(&id),
            "{what}: a successful run's snapshot is missing"
        );
    }
    for id in listed {
        let src = if id == setup.first.0 {
            &setup.first.1
        } else {
            &setup.second
        };
        let target = s.restore(&repo, &id);
        assert_eq!(
            files_below(&restored_copy(&target, src)),
            files_below(src),
            "{what}"
        );
        if id != setup.first.0 {
            let dump = std::fs::read(target.join("dump.sql")).unwrap();
            assert_eq!(
                dump.len(),
                (1..=30000)
                    .map(|i: u32| i.to_string().len() + 1)
                    .sum::<usize>()
            );
        }
    }
}

/// How many operations the second run makes when nothing fails.
fn operations_of_a_run() -> u64 {
    let setup = setup();
    let faulty = FaultyBackend::over_memory(setup.s.memory.clone());
    let repo = setup.s.open(Arc::new(faulty.clone())).unwrap();
    let before = faulty.ops();
    let id = second_run(&repo, &setup.second).unwrap();
    verify(&setup, Some(id), "no fault");
    faulty.ops() - before
}

#[test]
fn a_snapshot_failing_at_any_operation_leaves_a_valid_repository() {
    let ops = operations_of_a_run();
    assert!(ops > 10, "{ops} operations");
    let mut failed = 0;
    // A run may make a few more operations than the counted one (threads).
    for n in 0..ops + 3 {
        for fault in FAULTS {
            let what = format!("{fault:?} at operation {n} of {ops}");
            let setup = setup();
            let faulty = FaultyBackend::over_memory(setup.s.memory.clone());
            let repo = setup.s.open(Arc::new(faulty.clone())).unwrap();
            faulty.fail(Trigger::Nth(faulty.ops() + n), fault);
            let result = second_run(&repo, &setup.second);
            failed += usize::from(result.is_err());
            drop(repo);
            faulty.heal();
            verify(&setup, result.as_ref().ok().copied(), &what);
        }
    }
    // Most operations are needed: failing them fails the run.
    assert!(
        failed as u64 > ops * 5 / 2,
        "{failed} of {} runs failed",
        (ops + 3) * 5
    );
}

#[test]
fn short_writes_leave_only_temporary_files_which_clean_tmp_removes() {
    let setup = setup();
    let faulty = FaultyBackend::over_memory(setup.s.memory.clone());
    let repo = setup.s.open(Arc::new(faulty.clone())).unwrap();
    faulty.fail(Trigger::Every(Op::Write), Fault::ShortWrite);
    assert!(second_run(&repo, &setup.second).is_err());
    faulty.heal();
    let fired = faulty.fired();
    assert!(!fired.is_empty());
    let tmp: Vec<String> = setup
        .s
        .memory
        .all_files()
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .filter(|rel| rel.starts_with("tmp/"))
        .collect();
    assert!(
        !tmp.is_empty(),
        "fired {fired:?}, but no temporary file is left"
    );
    assert_eq!(setup.s.memory.clean_tmp().unwrap(), tmp.len());
    verify(&setup, None, "short writes");
}

#[test]
fn a_crash_drops_what_was_not_synced() {
    let setup = setup();
    let memory = setup.s.memory.clone();
    let mut staged = memory
        .stage_new(crate::backend::FileKind::Pack)
        .unwrap()
        .unwrap();
    staged.append(b"half a pack").unwrap();
    assert_eq!(memory.unsynced().len(), 1);
    let faulty = FaultyBackend::over_memory(memory.clone());
    faulty.fail(Trigger::Nth(0), Fault::Crash);
    assert!(faulty.list(crate::backend::FileKind::Pack).is_err());
    // Dead until healed; the staged bytes are gone.
    assert!(faulty.list(crate::backend::FileKind::Pack).is_err());
    assert!(memory.unsynced().is_empty());
    assert!(staged.append(b"more").is_err());
    faulty.heal();
    assert!(faulty.list(crate::backend::FileKind::Pack).is_ok());
    verify(&setup, None, "crash");
}
