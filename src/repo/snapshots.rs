//! Snapshot manifests: writing and reading them, listing every readable
//! one under a unique name ([`unique_names`]), and finding one by a
//! selector ([`resolve_snapshot`]: `latest`, `SOURCE:latest`,
//! `latest-complete`, a name or an id prefix).

use super::{check_name, Repository};
use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::format::manifest::Snapshot;
use crate::ids::{sha256, SnapshotId};
use std::collections::{BTreeSet, HashMap};

impl Repository {
    pub fn write_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let bytes = snap.encode(&self.key)?;
        let id = SnapshotId(sha256(&bytes));
        self.backend
            .write_new(FileKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let name = id.to_hex();
        let bytes = self.backend.read(FileKind::Snapshot, &name)?;
        check_name(&bytes, &name, "snapshots")?;
        Snapshot::decode(&self.key, &bytes, &format!("snapshots/{name}"))
    }

    /// Every readable snapshot, oldest first, each under a name no other
    /// one has ([`unique_names`]). A damaged manifest is skipped with a
    /// warning, so one bad file cannot stop new backups or restores.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self.snapshots_and_damaged()?.0)
    }

    /// [`Repository::snapshots`], and the manifests skipped as damaged with
    /// why (each also a warning).
    #[allow(clippy::type_complexity)]
    fn snapshots_and_damaged(
        &self,
    ) -> Result<(Vec<(SnapshotId, Snapshot)>, Vec<(SnapshotId, Error)>)> {
        use rayon::prelude::*;
        // Backends list valid names only (their contract); anything else is
        // not a snapshot and is left out rather than trusted.
        let ids: Vec<SnapshotId> = (self.list_now(FileKind::Snapshot)?.iter())
            .filter_map(|(n, _)| SnapshotId::from_hex(n))
            .collect();
        let loaded = ids
            .par_iter()
            .map(|&id| match self.load_snapshot(&id) {
                Ok(s) => Ok(Ok((id, s))),
                Err(e) if e.kind() == crate::ErrorKind::Damaged => {
                    self.warn_skipped(&e);
                    Ok(Err((id, e)))
                }
                Err(e) => Err(e),
            })
            .collect::<Result<Vec<_>>>()?;
        let (mut out, mut damaged) = (Vec::new(), Vec::new());
        for l in loaded {
            match l {
                Ok(s) => out.push(s),
                Err(d) => damaged.push(d),
            }
        }
        out.sort_by(|a, b| (a.1.time.at, &a.1.name, a.0).cmp(&(b.1.time.at, &b.1.name, b.0)));
        damaged.sort_by_key(|(id, _)| *id);
        unique_names(&mut out);
        Ok((out, damaged))
    }

    /// Resolves `latest`, `SOURCE:latest`, a human name or an id prefix.
    /// A name or id prefix that only a damaged manifest can match is
    /// reported as damage, naming the file.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        let (snaps, damaged) = self.snapshots_and_damaged()?;
        resolve_snapshot(snaps, &damaged, spec)
    }

    /// The ids of the manifests present now, listed afresh (never the
    /// listing taken ahead by [`Repository::open_locked`]): a cheap way to
    /// see whether snapshots came or went.
    pub fn snapshot_ids(&self) -> Result<BTreeSet<SnapshotId>> {
        Ok(self
            .backend
            .list(FileKind::Snapshot)?
            .into_iter()
            .filter_map(|(n, _)| SnapshotId::from_hex(&n))
            .collect())
    }
}

/// The separator of a name made unique by [`unique_names`]; never part of a
/// source name, so never of a name a writer chose.
pub const NAME_ID_SEPARATOR: char = '~';

/// Makes every snapshot's name unique. Writers hold a shared lock, and each
/// names its snapshot after the ones it sees (`SOURCE_DATE`, `-2`, …), so two
/// snapshots of one source and day written at the same time can both choose
/// `SOURCE_DATE`. Every snapshot whose recorded name another one shares is
/// then known as `NAME~SHORTID` (its id's first 8 hex digits; more if those
/// are shared too), and the bare name no longer resolves (see
/// [`resolve_snapshot`]). The manifests stay as written.
pub fn unique_names(snaps: &mut [(SnapshotId, Snapshot)]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, s) in snaps.iter() {
        *count.entry(s.name.clone()).or_default() += 1;
    }
    let shared: Vec<usize> = (0..snaps.len())
        .filter(|&i| count[&snaps[i].1.name] > 1)
        .collect();
    let renamed: Vec<(usize, String)> = shared
        .iter()
        .map(|&i| {
            let hex = snaps[i].0.to_hex();
            // Short ids of one name could collide too: lengthen until unique.
            let len = (8..=hex.len())
                .find(|&n| {
                    shared.iter().all(|&j| {
                        j == i
                            || snaps[j].1.name != snaps[i].1.name
                            || !snaps[j].0.to_hex().starts_with(&hex[..n])
                    })
                })
                .unwrap_or(hex.len());
            let name = format!("{}{NAME_ID_SEPARATOR}{}", snaps[i].1.name, &hex[..len]);
            (i, name)
        })
        .collect();
    for (i, name) in renamed {
        snaps[i].1.name = name;
    }
}

/// The name a writer recorded, before [`unique_names`] made it unique.
pub fn recorded_name(name: &str) -> &str {
    name.split_once(NAME_ID_SEPARATOR).map_or(name, |(n, _)| n)
}

/// Picks a snapshot from a list by `latest`, `SOURCE:latest`, name or id
/// prefix, among `snaps` (named by [`unique_names`]);
/// `damaged` are the manifests that could not be read, so that a selector
/// meant for one of them says so instead of "no snapshot matches".
pub fn resolve_snapshot(
    snaps: Vec<(SnapshotId, Snapshot)>,
    damaged: &[(SnapshotId, Error)],
    spec: &str,
) -> Result<(SnapshotId, Snapshot)> {
    if snaps.is_empty() && damaged.is_empty() {
        return Err(Error::Usage("the repository holds no snapshots yet".into()));
    }
    if let Some(found) = resolve_latest(&snaps, spec) {
        return found;
    }
    if let Some(found) = resolve_name(&snaps, spec) {
        return found;
    }
    resolve_id_prefix(snaps, damaged, spec)
}

/// `latest`, `latest-complete`, `SOURCE:latest`, `SOURCE:latest-complete`;
/// `None` when `spec` is none of these.
fn resolve_latest(
    snaps: &[(SnapshotId, Snapshot)],
    spec: &str,
) -> Option<Result<(SnapshotId, Snapshot)>> {
    let (source, rest) = match spec.rsplit_once(':') {
        Some((source, rest)) => (Some(source), rest),
        None => (None, spec),
    };
    let complete = match rest {
        "latest" => false,
        "latest-complete" => true,
        _ => return None,
    };
    let what = match (source, complete) {
        (Some(src), false) => format!("no snapshot of source {src:?}"),
        (Some(src), true) => format!("no complete snapshot of source {src:?}"),
        (None, false) => "no readable snapshot".to_string(),
        (None, true) => "no complete snapshot".to_string(),
    };
    Some(
        snaps
            .iter()
            .rev()
            .find(|(_, s)| source.is_none_or(|src| s.source == src) && (s.complete || !complete))
            .cloned()
            .ok_or(Error::Usage(what)),
    )
}

/// A snapshot by its (unique) name; an error for a name that several
/// snapshots recorded; `None` when no name matches.
fn resolve_name(
    snaps: &[(SnapshotId, Snapshot)],
    spec: &str,
) -> Option<Result<(SnapshotId, Snapshot)>> {
    let named: Vec<_> = snaps.iter().filter(|(_, s)| s.name == spec).collect();
    match named.as_slice() {
        [one] => return Some(Ok((*one).clone())),
        [] => {}
        many => return Some(Err(ambiguous_name(spec, many))),
    }
    // A name that several snapshots recorded resolves to none of them.
    let shared: Vec<_> = snaps
        .iter()
        .filter(|(_, s)| s.name != spec && recorded_name(&s.name) == spec)
        .collect();
    (!shared.is_empty()).then(|| Err(ambiguous_name(spec, &shared)))
}

/// A snapshot by a prefix of its id; a prefix that only damaged manifests
/// match (or nothing, while some are damaged) is reported as damage.
fn resolve_id_prefix(
    snaps: Vec<(SnapshotId, Snapshot)>,
    damaged: &[(SnapshotId, Error)],
    spec: &str,
) -> Result<(SnapshotId, Snapshot)> {
    let lower = spec.to_ascii_lowercase();
    let mut matches: Vec<_> = snaps
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&lower))
        .collect();
    let damaged_ids: Vec<&(SnapshotId, Error)> = damaged
        .iter()
        .filter(|(id, _)| !lower.is_empty() && id.to_hex().starts_with(&lower))
        .collect();
    match (matches.len(), damaged_ids.len()) {
        (1, 0) => Ok(matches.remove(0)),
        (0, 1) => Err(unreadable(
            &damaged_ids,
            &format!("the manifest of snapshot {spec:?} cannot be read: "),
        )),
        (0, 0) if !damaged.is_empty() => Err(unreadable(
            &damaged.iter().collect::<Vec<_>>(),
            &format!(
                "no readable snapshot matches {spec:?}, and {} manifest(s) cannot be read, which may be it: ",
                damaged.len()
            ),
        )),
        (0, 0) => Err(Error::Usage(format!(
            "no snapshot matches {spec:?} (try `sopvault snapshots`)"
        ))),
        (r, d) => Err(Error::Usage(format!(
            "{spec:?} matches {} snapshots; give more digits",
            r + d
        ))),
    }
}

/// The damage error for a selector that damaged manifests `ds` (at least
/// one) may have been meant for: names the first file and its reason, then
/// the others.
fn unreadable(ds: &[&(SnapshotId, Error)], why: &str) -> Error {
    let files: Vec<String> = ds
        .iter()
        .map(|(id, _)| format!("snapshots/{}", id.to_hex()))
        .collect();
    let reason = match &ds[0].1 {
        Error::Damaged { reason, .. } => reason.clone(),
        e => {
            let text = e.to_string();
            let object = format!("{}: ", files[0]);
            text.strip_prefix(&object).unwrap_or(&text).to_string()
        }
    };
    Error::damaged(
        &files[0],
        format!(
            "{why}{reason}{}; run `sopvault check`",
            if files.len() > 1 {
                format!(" (also damaged: {})", files[1..].join(", "))
            } else {
                String::new()
            }
        ),
    )
}

/// The error for a name that several snapshots share, naming each.
fn ambiguous_name(spec: &str, snaps: &[&(SnapshotId, Snapshot)]) -> Error {
    let list: Vec<String> = snaps
        .iter()
        .map(|(id, s)| format!("{} (id {}, {})", s.name, id.short(), s.time.rfc3339()))
        .collect();
    Error::Usage(format!(
        "snapshot name {spec:?} is ambiguous: {} snapshots were written under it at the same time: {}; give one of these names or an id",
        snaps.len(),
        list.join(", ")
    ))
}
