//! Retention policy: which snapshots of one group to keep, and why.
//!
//! A pure function with no I/O: [`Policy::decide`] takes the [`Candidate`]s of one
//! group (grouping is the caller's job) and returns one [`Decision`] per candidate,
//! newest first, each with every reason it is kept for. `prune` turns the
//! decisions into a plan.
//!
//! # Counting (restic's semantics)
//! Each bucket rule — `last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly` —
//! walks the snapshots newest first and keeps the newest snapshot of each calendar
//! bucket it meets, counting only buckets that contain snapshots, until its count
//! is used up. `keep_last N` keeps the N newest snapshots. Rules are independent
//! and ORed: a snapshot kept by several rules counts for each and gets every
//! reason (`last #1`, `daily #1`, `monthly #1`); a finer rule never consumes a
//! coarser rule's count (that is Borg's way, not ours). When a rule's count is not
//! used up by the time the walk reaches the oldest snapshot (and always for
//! [`Count::Unlimited`]), the oldest snapshot is kept for it as well: either it
//! opens a new bucket (`daily #5`) or it gets `oldest daily`.
//!
//! Buckets are wall-clock values in the UTC offset each snapshot recorded when it
//! was taken ([`SnapshotTime::to_datetime`]), never the zone of the machine that
//! prunes: hourly = (year, month, day, hour), daily = (year, month, day), weekly =
//! ISO 8601 week (ISO year, week; weeks start on Monday), monthly = (year, month),
//! yearly = calendar year. So `2026-11-22T01:00+07:00` is day 2026-11-22 although it
//! is 2026-11-21 in UTC, and across a DST fall-back the repeated wall-clock hour is
//! one hourly bucket. Because offsets can differ within a group, bucket values are
//! not monotonic in time; a rule remembers every bucket it has counted, so a bucket
//! is counted once and its newest snapshot (by instant) is the one kept.
//!
//! # Other rules
//! - `keep_within D` keeps every snapshot strictly newer than `anchor − D`, where the
//!   anchor is the newest *complete* snapshot of the group (the newest snapshot if
//!   none is complete) — measured back from the group, never from now, so a pause
//!   in backups never expires old snapshots. The boundary is exclusive, as in
//!   restic: with daily snapshots, `10d` keeps ten of them. Reason `within 10d`.
//! - `keep_tags` keeps every snapshot that has any of the tags; reason `tag NAME`
//!   once per matching tag.
//!
//! # Incomplete snapshots
//! A snapshot with `complete == false` (a stream failed or a file was unreadable)
//! never pushes a complete snapshot out of a count: the bucket rules and their
//! oldest-snapshot fallback see only complete snapshots, and the `keep_within`
//! anchor is the newest complete one. An incomplete snapshot is kept only by
//! `keep_within`, by `keep_tags`, or when it is strictly newer than every complete
//! snapshot of the group (reason `newer than the last complete snapshot`; a group
//! with no complete snapshot therefore keeps all its incomplete ones).
//!
//! # Order and ties
//! Snapshots are ordered by instant (`time.at`, ignoring the offset), then by id;
//! of two snapshots taken at the same instant the one with the greater id counts
//! as the newer. The output is in that order, newest first, whatever the input
//! order.
//!
//! # Durations and counts
//! [`parse_duration`] reads one or more `NUMBER UNIT` pairs, units in the order
//! `y m w d h`, each at most once (`10d`, `2w`, `1y2m3d4h`). The units are fixed
//! lengths, not calendar arithmetic: `y` = 365 days, `m` = 30 days, `w` = 7 days,
//! `d` = 24 hours, `h` = 1 hour (restic steps back by calendar months and years
//! instead, which differs by a day or two). [`format_duration`] prints a duration
//! in days and hours (`10d`, `1d12h`), as it appears in `within` reasons.
//! [`parse_count`] reads a non-negative integer or `unlimited`.
//!
//! A policy with no rule that can keep anything ([`Policy::is_empty`]: no rule set,
//! only zero counts, a non-positive `keep_within`) must be refused by the caller;
//! [`Policy::decide`] keeps every snapshot with reason `no policy` if given one.

use crate::format::manifest::SnapshotTime;
use crate::ids::SnapshotId;
use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

/// How many buckets a rule keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    N(u32),
    Unlimited,
}

/// The rules of a retention policy; every rule left at `None` (or empty) is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<Count>,
    pub keep_hourly: Option<Count>,
    pub keep_daily: Option<Count>,
    pub keep_weekly: Option<Count>,
    pub keep_monthly: Option<Count>,
    pub keep_yearly: Option<Count>,
    pub keep_within: Option<chrono::Duration>,
    pub keep_tags: Vec<String>,
}

/// One snapshot of a group, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: SnapshotId,
    pub time: SnapshotTime,
    pub tags: Vec<String>,
    /// False when a stream failed or a file was unreadable during the run.
    pub complete: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Keep,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Remove => "remove",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to one snapshot. `reasons` lists every rule that keeps it, in the
/// order last, hourly, daily, weekly, monthly, yearly, within, tags, newer than the
/// last complete snapshot; it is empty exactly when `action` is `Remove`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub id: SnapshotId,
    pub action: Action,
    pub reasons: Vec<String>,
}

/// A rule that counts calendar buckets (or, for `Last`, single snapshots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BucketRule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    /// Position in the newest-first walk: every snapshot is its own bucket.
    Position(usize),
    /// (year, month, day, hour) with unused fields zero; ISO (year, week) for weeks.
    Calendar(i32, u32, u32, u32),
}

impl BucketRule {
    fn name(self) -> &'static str {
        match self {
            BucketRule::Last => "last",
            BucketRule::Hourly => "hourly",
            BucketRule::Daily => "daily",
            BucketRule::Weekly => "weekly",
            BucketRule::Monthly => "monthly",
            BucketRule::Yearly => "yearly",
        }
    }

    fn bucket(self, t: &DateTime<FixedOffset>, position: usize) -> Bucket {
        use Bucket::Calendar;
        match self {
            BucketRule::Last => Bucket::Position(position),
            BucketRule::Hourly => Calendar(t.year(), t.month(), t.day(), t.hour()),
            BucketRule::Daily => Calendar(t.year(), t.month(), t.day(), 0),
            BucketRule::Weekly => {
                let w = t.iso_week();
                Calendar(w.year(), w.week(), 0, 0)
            }
            BucketRule::Monthly => Calendar(t.year(), t.month(), 0, 0),
            BucketRule::Yearly => Calendar(t.year(), 0, 0, 0),
        }
    }
}

impl Policy {
    fn bucket_rules(&self) -> [(BucketRule, Option<Count>); 6] {
        [
            (BucketRule::Last, self.keep_last),
            (BucketRule::Hourly, self.keep_hourly),
            (BucketRule::Daily, self.keep_daily),
            (BucketRule::Weekly, self.keep_weekly),
            (BucketRule::Monthly, self.keep_monthly),
            (BucketRule::Yearly, self.keep_yearly),
        ]
    }

    /// True when no rule could keep anything: every count absent or zero, no
    /// positive `keep_within`, no tags. The caller must refuse such a policy.
    pub fn is_empty(&self) -> bool {
        let counts = self
            .bucket_rules()
            .iter()
            .all(|(_, c)| matches!(c, None | Some(Count::N(0))));
        let within = self
            .keep_within
            .is_none_or(|d| d <= chrono::Duration::zero());
        counts && within && self.keep_tags.is_empty()
    }

    /// Decide keep or remove for every snapshot of one group. Returns one decision
    /// per candidate, newest first; see the module documentation for the rules.
    pub fn decide(&self, group: &[Candidate]) -> Vec<Decision> {
        let mut order: Vec<usize> = (0..group.len()).collect();
        order.sort_by(|&a, &b| newest_first(&group[a], &group[b]));
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); group.len()];

        if self.is_empty() {
            for r in &mut reasons {
                r.push("no policy".to_string());
            }
        } else {
            let complete: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| group[i].complete)
                .collect();
            for (rule, count) in self.bucket_rules() {
                if let Some(count) = count {
                    apply_bucket_rule(rule, count, group, &complete, &mut reasons);
                }
            }
            if let Some(within) = self.keep_within.filter(|d| *d > chrono::Duration::zero()) {
                if let Some(&anchor) = complete.first().or(order.first()) {
                    let from = nanos(&group[anchor].time) - duration_nanos(within);
                    let reason = format!("within {}", format_duration(within));
                    for &i in &order {
                        if nanos(&group[i].time) > from {
                            reasons[i].push(reason.clone());
                        }
                    }
                }
            }
            let mut tags: Vec<&String> = Vec::new();
            for t in &self.keep_tags {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            for &i in &order {
                for t in &tags {
                    if group[i].tags.contains(t) {
                        reasons[i].push(format!("tag {t}"));
                    }
                }
            }
            let newest_complete = complete.first().map(|&i| group[i].time.at);
            for &i in &order {
                let c = &group[i];
                if !c.complete && newest_complete.is_none_or(|at| c.time.at > at) {
                    reasons[i].push("newer than the last complete snapshot".to_string());
                }
            }
        }

        order
            .into_iter()
            .map(|i| {
                let reasons = std::mem::take(&mut reasons[i]);
                let action = if reasons.is_empty() {
                    Action::Remove
                } else {
                    Action::Keep
                };
                Decision {
                    id: group[i].id,
                    action,
                    reasons,
                }
            })
            .collect()
    }
}

/// Walk the complete snapshots newest first and keep the newest of each bucket
/// until the count is used up; then the oldest-snapshot fallback.
fn apply_bucket_rule(
    rule: BucketRule,
    count: Count,
    group: &[Candidate],
    complete: &[usize],
    reasons: &mut [Vec<String>],
) {
    let mut seen = HashSet::new();
    let mut used: u32 = 0;
    for (position, &i) in complete.iter().enumerate() {
        if let Count::N(n) = count {
            if used >= n {
                return;
            }
        }
        let bucket = rule.bucket(&group[i].time.to_datetime(), position);
        if seen.insert(bucket) {
            used += 1;
            reasons[i].push(format!("{} #{used}", rule.name()));
        } else if position + 1 == complete.len() {
            reasons[i].push(format!("oldest {}", rule.name()));
        }
    }
}

/// Newest first: by instant descending, then id descending.
fn newest_first(a: &Candidate, b: &Candidate) -> Ordering {
    (b.time.at, b.id).cmp(&(a.time.at, a.id))
}

fn nanos(t: &SnapshotTime) -> i128 {
    i128::from(t.at.sec) * 1_000_000_000 + i128::from(t.at.nsec)
}

fn duration_nanos(d: chrono::Duration) -> i128 {
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
/// Duration units in the order they must appear, with their fixed length in seconds.
const UNITS: [(char, u64); 5] = [
    ('y', 365 * DAY),
    ('m', 30 * DAY),
    ('w', 7 * DAY),
    ('d', DAY),
    ('h', HOUR),
];

/// Parse a `keep_within` duration: `NUMBER UNIT` pairs such as `10d`, `2w` or
/// `1y2m3d4h`. Units, in this order and each at most once: `y` = 365 days,
/// `m` = 30 days, `w` = 7 days, `d` = 24 hours, `h` = 1 hour. Must be positive.
pub fn parse_duration(s: &str) -> std::result::Result<chrono::Duration, String> {
    const EXPECTED: &str =
        "expected NUMBER+UNIT pairs like 10d, 2w or 1y2m3d4h (y=365d, m=30d, w=7d, d, h)";
    if s.is_empty() {
        return Err(format!("{EXPECTED}, got an empty string"));
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut seconds: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{EXPECTED}, found {rest:?} where a number belongs"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("number {:?} is too large", &rest[..digits]))?;
        rest = &rest[digits..];
        let Some(unit) = rest.chars().next() else {
            return Err(format!("{EXPECTED}, the number {number} has no unit"));
        };
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("{EXPECTED}, found unknown unit {unit:?}"));
        };
        if pos < next_unit {
            return Err(format!(
                "{EXPECTED}, unit {unit:?} is repeated or out of order"
            ));
        }
        next_unit = pos + 1;
        rest = &rest[unit.len_utf8()..];
        seconds = number
            .checked_mul(UNITS[pos].1)
            .and_then(|v| v.checked_add(seconds))
            .ok_or_else(|| "duration is too long".to_string())?;
    }
    if seconds == 0 {
        return Err("duration must be longer than zero".to_string());
    }
    i64::try_from(seconds)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(|| "duration is too long".to_string())
}

/// Print a duration in days and hours (`10d`, `1d12h` for 36 hours); minutes
/// (`min`) and seconds (`s`) appear only for durations that are not whole hours.
pub fn format_duration(d: chrono::Duration) -> String {
    let mut out = String::new();
    if d < chrono::Duration::zero() {
        out.push('-');
    }
    let total = d.num_seconds().unsigned_abs();
    let parts = [
        (total / DAY, "d"),
        (total % DAY / HOUR, "h"),
        (total % HOUR / 60, "min"),
        (total % 60, "s"),
    ];
    for (value, unit) in parts {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if total == 0 {
        out.push_str("0s");
    }
    out
}

/// Parse a rule's count: a non-negative integer or `unlimited`.
pub fn parse_count(s: &str) -> std::result::Result<Count, String> {
    if s == "unlimited" {
        return Ok(Count::Unlimited);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a count (a whole number such as 7) or \"unlimited\", got {s:?}"
        ));
    }
    s.parse()
        .map(Count::N)
        .map_err(|_| format!("count {s:?} is too large (at most {})", u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Timestamp;
    use chrono::NaiveDate;
    use std::collections::BTreeMap;

    fn at(s: &str) -> SnapshotTime {
        SnapshotTime::from_datetime(
            DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("bad time {s:?}: {e}")),
        )
    }

    /// Distinct ids in row order: row i gets id i+1 (big-endian in the first bytes).
    fn id(i: usize) -> SnapshotId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        SnapshotId(b)
    }

    /// One row of a table: a snapshot and every reason it must be kept for (none:
    /// it must be removed).
    struct Row {
        time: &'static str,
        complete: bool,
        tags: &'static [&'static str],
        keep: &'static [&'static str],
    }

    const fn ok(time: &'static str, keep: &'static [&'static str]) -> Row {
        Row {
            time,
            complete: true,
            tags: &[],
            keep,
        }
    }

    const fn partial(time: &'static str, keep: &'static [&'static str]) -> Row {
        Row {
            time,
            complete: false,
            tags: &[],
            keep,
        }
    }

    const fn tagged(
        time: &'static str,
        tags: &'static [&'static str],
        keep: &'static [&'static str],
    ) -> Row {
        Row {
            time,
            complete: true,
            tags,
            keep,
        }
    }

    fn candidates(rows: &[Row]) -> Vec<Candidate> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| Candidate {
                id: id(i),
                time: at(r.time),
                tags: r.tags.iter().map(|t| t.to_string()).collect(),
                complete: r.complete,
            })
            .collect()
    }

    /// Decide in the given order and reversed; both must give the table's reasons,
    /// newest first, one decision per row.
    fn check(policy: &Policy, rows: &[Row]) {
        let group = candidates(rows);
        let expected: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.keep.iter().map(|s| s.to_string()).collect())
            .collect();
        let forward = policy.decide(&group);
        let mut reversed_group = group.clone();
        reversed_group.reverse();
        let backward = policy.decide(&reversed_group);
        assert_eq!(forward, backward, "decision depends on the input order");
        check_decisions(&group, &forward, &expected);
    }

    fn check_decisions(group: &[Candidate], got: &[Decision], expected: &[Vec<String>]) {
        assert_eq!(got.len(), group.len(), "one decision per snapshot");
        let row_of: BTreeMap<SnapshotId, usize> =
            group.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        let rows: Vec<usize> = got.iter().map(|d| row_of[&d.id]).collect();
        for w in rows.windows(2) {
            let (a, b) = (&group[w[0]], &group[w[1]]);
            assert!(
                (a.time.at, a.id) > (b.time.at, b.id),
                "not newest first: {} before {}",
                a.time.rfc3339(),
                b.time.rfc3339()
            );
        }
        let mut wrong = String::new();
        for (d, &row) in got.iter().zip(&rows) {
            let want_action = if expected[row].is_empty() {
                Action::Remove
            } else {
                Action::Keep
            };
            if d.reasons != expected[row] || d.action != want_action {
                wrong.push_str(&format!(
                    "\n  {} (row {row}): expected {:?}, got {} {:?}",
                    group[row].time.rfc3339(),
                    expected[row],
                    d.action,
                    d.reasons
                ));
            }
        }
        assert!(wrong.is_empty(), "wrong decisions:{wrong}");
    }

    fn counts(
        last: Option<u32>,
        daily: Option<u32>,
        weekly: Option<u32>,
        monthly: Option<u32>,
    ) -> Policy {
        Policy {
            keep_last: last.map(Count::N),
            keep_daily: daily.map(Count::N),
            keep_weekly: weekly.map(Count::N),
            keep_monthly: monthly.map(Count::N),
            ..Policy::default()
        }
    }

    // ---- a year of daily snapshots, against an independent model ----

    /// The expected reasons for daily snapshots (one per date, dates ascending)
    /// under keep_daily + keep_monthly, written over dates: a date is the newest of
    /// its month when the next date is in another month or there is none.
    fn daily_monthly_model(dates: &[NaiveDate], daily: u32, monthly: u32) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); dates.len()];
        for (rank, i) in (0..dates.len()).rev().enumerate() {
            if rank < daily as usize {
                out[i].push(format!("daily #{}", rank + 1));
            }
        }
        let month_ends: Vec<usize> = (0..dates.len())
            .filter(|&i| {
                i + 1 == dates.len()
                    || dates[i + 1].format("%Y-%m").to_string()
                        != dates[i].format("%Y-%m").to_string()
            })
            .rev()
            .collect();
        for (rank, &i) in month_ends.iter().enumerate().take(monthly as usize) {
            out[i].push(format!("monthly #{}", rank + 1));
        }
        if month_ends.len() < monthly as usize && !month_ends.contains(&0) {
            out[0].push("oldest monthly".to_string());
        }
        out
    }

    fn daily_year(first: NaiveDate, days: u32, offset: &str) -> (Vec<NaiveDate>, Vec<Candidate>) {
        let dates: Vec<NaiveDate> = (0..days)
            .map(|d| first + chrono::Duration::days(i64::from(d)))
            .collect();
        let group = dates
            .iter()
            .enumerate()
            .map(|(i, d)| Candidate {
                id: id(i),
                time: at(&format!("{}T00:30:00{offset}", d.format("%Y-%m-%d"))),
                tags: vec![],
                complete: true,
            })
            .collect();
        (dates, group)
    }

    #[test]
    fn year_of_daily_snapshots_keeps_31_daily_and_12_monthly() {
        let first = NaiveDate::from_ymd_opt(2025, 3, 15).unwrap();
        // 00:30 at +07:00 is the previous day in UTC: buckets must use the offset.
        let (dates, group) = daily_year(first, 365, "+07:00");
        let expected = daily_monthly_model(&dates, 31, 12);
        let got = counts(None, Some(31), None, Some(12)).decide(&group);
        check_decisions(&group, &got, &expected);

        let kept = got.iter().filter(|d| d.action == Action::Keep).count();
        // 31 days from 2026-02-12 to 2026-03-14, plus the ends of 12 months from
        // 2026-03 back to 2025-04, of which 2026-03-14 and 2026-02-28 are also daily.
        assert_eq!(kept, 31 + 12 - 2);
        let is_kept = |date: &str| {
            let i = dates.iter().position(|d| d.to_string() == date).unwrap();
            got.iter()
                .any(|d| d.id == id(i) && d.action == Action::Keep)
        };
        assert!(is_kept("2025-04-30") && is_kept("2026-01-31") && is_kept("2026-02-12"));
        assert!(!is_kept("2025-03-31") && !is_kept("2025-05-01") && !is_kept("2026-02-11"));
    }

    #[test]
    fn year_of_daily_snapshots_with_monthly_count_not_used_up_keeps_the_oldest() {
        let first = NaiveDate::from_ymd_opt(2025, 3, 15).unwrap();
        let (dates, group) = daily_year(first, 365, "+00:00");
        // 13 months hold snapshots; 24 are allowed, so 2025-03-15 stays as the oldest.
        let expected = daily_monthly_model(&dates, 7, 24);
        assert_eq!(expected[0], vec!["oldest monthly".to_string()]);
        let got = counts(None, Some(7), None, Some(24)).decide(&group);
        check_decisions(&group, &got, &expected);
    }

    // ---- calendar edge cases ----

    #[test]
    fn month_ends_and_leap_day() {
        let policy = counts(None, Some(4), None, Some(5));
        check(
            &policy,
            &[
                ok("2025-03-01T09:00:00+00:00", &["daily #1", "monthly #1"]),
                ok("2025-02-28T23:00:00+00:00", &["daily #2", "monthly #2"]),
                ok("2025-02-28T08:00:00+00:00", &[]),
                ok("2024-02-29T23:30:00+00:00", &["daily #3", "monthly #3"]),
                // 20 minutes earlier than the row above, but March where it was taken.
                ok("2024-03-01T00:10:00+01:00", &["daily #4", "monthly #4"]),
                ok("2024-02-29T10:00:00+00:00", &[]),
                ok("2024-02-28T10:00:00+00:00", &[]),
                ok("2024-01-31T23:59:59+00:00", &["monthly #5"]),
                ok("2024-01-31T00:00:00+00:00", &[]),
                ok("2023-12-31T12:00:00+00:00", &[]),
            ],
        );
    }

    #[test]
    fn leap_day_is_its_own_day_in_its_iso_week() {
        let policy = Policy {
            keep_daily: Some(Count::N(3)),
            keep_weekly: Some(Count::N(2)),
            ..Policy::default()
        };
        check(
            &policy,
            &[
                // 2024-03-04 is a Monday: week 10; Feb 26 .. Mar 3 is week 9.
                ok("2024-03-04T06:00:00+00:00", &["daily #1", "weekly #1"]),
                ok("2024-03-03T06:00:00+00:00", &["daily #2", "weekly #2"]),
                ok("2024-02-29T06:00:00+00:00", &["daily #3"]),
                ok("2024-02-28T06:00:00+00:00", &[]),
                ok("2024-02-25T06:00:00+00:00", &[]),
            ],
        );
    }

    #[test]
    fn dst_spring_forward_in_berlin() {
        // 2026-03-29 02:00 CET becomes 03:00 CEST; each snapshot recorded its offset.
        let policy = Policy {
            keep_hourly: Some(Count::N(4)),
            keep_daily: Some(Count::N(3)),
            ..Policy::default()
        };
        check(
            &policy,
            &[
                ok("2026-03-30T02:30:00+02:00", &["hourly #1", "daily #1"]),
                ok("2026-03-29T03:30:00+02:00", &["hourly #2", "daily #2"]),
                ok("2026-03-29T03:10:00+02:00", &[]),
                ok("2026-03-29T01:30:00+01:00", &["hourly #3"]),
                // 23:30 UTC on the 27th, but the 28th in Berlin.
                ok("2026-03-28T00:30:00+01:00", &["hourly #4", "daily #3"]),
                ok("2026-03-27T22:00:00+01:00", &[]),
            ],
        );
    }

    #[test]
    fn dst_fall_back_in_berlin_repeats_one_wall_clock_hour() {
        // 2026-10-25 03:00 CEST becomes 02:00 CET: 02:30 happens twice, an hour apart,
        // and both are wall-clock hour 02 of that day — one hourly bucket.
        let policy = Policy {
            keep_hourly: Some(Count::N(10)),
            ..Policy::default()
        };
        check(
            &policy,
            &[
                ok("2026-10-25T03:30:00+01:00", &["hourly #1"]),
                ok("2026-10-25T02:30:00+01:00", &["hourly #2"]),
                ok("2026-10-25T02:30:00+02:00", &[]),
                ok("2026-10-25T01:30:00+02:00", &["hourly #3"]),
            ],
        );
        let daily = Policy {
            keep_daily: Some(Count::N(3)),
            ..Policy::default()
        };
        check(
            &daily,
            &[
                ok("2026-10-26T00:15:00+01:00", &["daily #1"]),
                ok("2026-10-25T02:30:00+01:00", &["daily #2"]),
                ok("2026-10-25T02:30:00+02:00", &[]),
                // 22:30 UTC on the 24th, the 25th in Berlin: already counted.
                ok("2026-10-25T00:30:00+02:00", &[]),
                ok("2026-10-24T12:00:00+02:00", &["daily #3"]),
            ],
        );
    }

    #[test]
    fn snapshots_taken_in_two_time_zones() {
        let policy = counts(None, Some(5), None, None);
        check(
            &policy,
            &[
                ok("2026-11-21T20:00:00+00:00", &["daily #1"]),
                // 18:00 UTC on the 21st, but the 22nd where it was taken.
                ok("2026-11-22T01:00:00+07:00", &["daily #2"]),
                // The 21st again: already counted, its newest snapshot is kept.
                ok("2026-11-21T10:00:00+00:00", &[]),
                ok("2026-11-21T16:30:00+07:00", &[]),
                ok("2026-11-20T12:00:00+00:00", &["daily #3"]),
            ],
        );
        let yearly = Policy {
            keep_yearly: Some(Count::N(3)),
            ..Policy::default()
        };
        check(
            &yearly,
            &[
                ok("2027-01-01T06:00:00+00:00", &["yearly #1"]),
                // 04:30 UTC on 2027-01-01, still 2026 where it was taken.
                ok("2026-12-31T23:30:00-05:00", &["yearly #2"]),
                ok("2026-06-01T00:00:00+00:00", &[]),
                // 06:00 UTC on 2026-01-01, still 2025 where it was taken.
                ok("2025-12-31T20:00:00-10:00", &["yearly #3"]),
                // 23:00 UTC on 2025-12-31, already 2026 where it was taken.
                ok("2026-01-01T06:00:00+07:00", &[]),
            ],
        );
    }

    #[test]
    fn gaps_of_several_months_count_only_months_with_snapshots() {
        let rows = |short: bool| -> Vec<Row> {
            vec![
                ok("2026-01-10T00:00:00+00:00", &["monthly #1"]),
                ok("2025-08-30T00:00:00+00:00", &["monthly #2"]),
                ok("2025-08-02T00:00:00+00:00", &[]),
                ok("2025-07-15T00:00:00+00:00", &["monthly #3"]),
                if short {
                    ok("2025-02-01T00:00:00+00:00", &[])
                } else {
                    ok("2025-02-01T00:00:00+00:00", &["monthly #4"])
                },
                if short {
                    ok("2025-01-20T00:00:00+00:00", &[])
                } else {
                    ok("2025-01-20T00:00:00+00:00", &["monthly #5"])
                },
                if short {
                    ok("2025-01-05T00:00:00+00:00", &[])
                } else {
                    ok("2025-01-05T00:00:00+00:00", &["oldest monthly"])
                },
            ]
        };
        check(&counts(None, None, None, Some(3)), &rows(true));
        check(&counts(None, None, None, Some(12)), &rows(false));
    }

    #[test]
    fn oldest_opening_a_new_bucket_is_counted_not_marked_oldest() {
        check(
            &counts(None, Some(10), None, None),
            &[
                ok("2026-05-03T10:00:00+00:00", &["daily #1"]),
                ok("2026-05-03T08:00:00+00:00", &[]),
                ok("2026-05-01T10:00:00+00:00", &["daily #2"]),
            ],
        );
    }

    #[test]
    fn iso_week_boundaries() {
        // 2026 starts on a Thursday, so it has 53 ISO weeks: Mon 2026-12-28 to
        // Sun 2027-01-03 is 2026-W53, and 2027-W01 starts on Mon 2027-01-04.
        let weekly = Policy {
            keep_weekly: Some(Count::N(3)),
            ..Policy::default()
        };
        check(
            &weekly,
            &[
                ok("2027-01-04T09:00:00+00:00", &["weekly #1"]),
                ok("2027-01-03T09:00:00+00:00", &["weekly #2"]),
                ok("2027-01-01T09:00:00+00:00", &[]),
                ok("2026-12-31T09:00:00+00:00", &[]),
                ok("2026-12-28T09:00:00+00:00", &[]),
                ok("2026-12-27T09:00:00+00:00", &["weekly #3"]),
                ok("2026-12-21T09:00:00+00:00", &[]),
            ],
        );
        // Sunday and the next Monday are different weeks; a Monday 00:30 at +02:00
        // is still Sunday in UTC but Monday where it was taken.
        check(
            &weekly,
            &[
                ok("2026-03-15T23:00:00+00:00", &["weekly #1"]),
                // 22:30 UTC on Sunday, but Monday where it was taken.
                ok("2026-03-16T00:30:00+02:00", &["weekly #2"]),
                ok("2026-03-15T21:00:00+00:00", &[]),
                // The Monday that opens the Sunday's week.
                ok("2026-03-09T00:00:00+00:00", &[]),
                ok("2026-03-08T23:59:59+00:00", &["weekly #3"]),
            ],
        );
        // Yearly uses the calendar year, not the ISO year.
        let yearly = Policy {
            keep_yearly: Some(Count::N(5)),
            ..Policy::default()
        };
        check(
            &yearly,
            &[
                ok("2027-01-04T09:00:00+00:00", &["yearly #1"]),
                ok("2027-01-01T09:00:00+00:00", &[]),
                ok("2026-12-31T09:00:00+00:00", &["yearly #2"]),
                ok("2026-12-27T09:00:00+00:00", &["oldest yearly"]),
            ],
        );
    }

    #[test]
    fn group_with_one_snapshot() {
        let one = |keep: &'static [&'static str]| [ok("2026-04-01T12:00:00+02:00", keep)];
        check(
            &counts(Some(3), Some(7), Some(4), Some(12)),
            &one(&["last #1", "daily #1", "weekly #1", "monthly #1"]),
        );
        check(&counts(Some(1), None, None, None), &one(&["last #1"]));
        check(&counts(None, Some(0), None, None).with_tag("x"), &one(&[]));
        let within = Policy {
            keep_within: Some(chrono::Duration::days(1)),
            ..Policy::default()
        };
        check(&within, &one(&["within 1d"]));
        check(
            &counts(Some(1), None, None, None),
            &[partial(
                "2026-04-01T12:00:00+02:00",
                &["newer than the last complete snapshot"],
            )],
        );
    }

    #[test]
    fn empty_group_gives_no_decisions() {
        assert!(counts(Some(1), None, None, None).decide(&[]).is_empty());
    }

    #[test]
    fn rules_are_independent_and_finer_rules_do_not_consume_coarser_counts() {
        // Borg would give daily #1 to 06-03 and daily #2 to 06-02 only after keep_last
        // had taken its two; restic counting lets both rules keep 06-03 18:00.
        let policy = Policy {
            keep_last: Some(Count::N(2)),
            keep_daily: Some(Count::N(2)),
            keep_monthly: Some(Count::N(1)),
            ..Policy::default()
        };
        check(
            &policy,
            &[
                ok(
                    "2026-06-03T18:00:00+00:00",
                    &["last #1", "daily #1", "monthly #1"],
                ),
                ok("2026-06-03T12:00:00+00:00", &["last #2"]),
                ok("2026-06-03T06:00:00+00:00", &[]),
                ok("2026-06-02T18:00:00+00:00", &["daily #2"]),
                ok("2026-06-02T06:00:00+00:00", &[]),
                ok("2026-06-01T18:00:00+00:00", &[]),
            ],
        );
    }

    // ---- incomplete snapshots ----

    #[test]
    fn keep_last_with_incomplete_snapshots() {
        check(
            &counts(Some(3), None, None, None),
            &[
                partial(
                    "2026-07-10T00:00:00+00:00",
                    &["newer than the last complete snapshot"],
                ),
                partial(
                    "2026-07-09T00:00:00+00:00",
                    &["newer than the last complete snapshot"],
                ),
                ok("2026-07-08T00:00:00+00:00", &["last #1"]),
                partial("2026-07-07T00:00:00+00:00", &[]),
                ok("2026-07-06T00:00:00+00:00", &["last #2"]),
                ok("2026-07-05T00:00:00+00:00", &["last #3"]),
                ok("2026-07-04T00:00:00+00:00", &[]),
            ],
        );
    }

    #[test]
    fn incomplete_snapshots_neither_fill_buckets_nor_take_the_oldest_fallback() {
        check(
            &counts(None, Some(10), None, None),
            &[
                ok("2026-07-03T12:00:00+00:00", &["daily #1"]),
                // Newest of 07-02 but incomplete: the complete 08:00 one fills the day.
                partial("2026-07-02T20:00:00+00:00", &[]),
                ok("2026-07-02T12:00:00+00:00", &["daily #2"]),
                ok("2026-07-02T08:00:00+00:00", &["oldest daily"]),
                partial("2026-07-01T12:00:00+00:00", &[]),
            ],
        );
        // An incomplete snapshot at the same instant as the newest complete one is
        // not newer than it.
        check(
            &counts(Some(1), None, None, None),
            &[
                ok("2026-07-03T12:00:00+00:00", &["last #1"]),
                partial("2026-07-03T12:00:00+00:00", &[]),
            ],
        );
    }

    #[test]
    fn group_of_incomplete_snapshots_only_keeps_them_all() {
        let reason = &["newer than the last complete snapshot"] as &'static [&'static str];
        check(
            &counts(Some(1), Some(1), None, None),
            &[
                partial("2026-07-03T12:00:00+00:00", reason),
                partial("2026-07-02T12:00:00+00:00", reason),
            ],
        );
    }

    // ---- keep_within, tags, unlimited, empty policy, ties ----

    #[test]
    fn keep_within_is_measured_from_the_newest_snapshot_not_from_now() {
        let policy = Policy {
            keep_within: Some(parse_duration("10d").unwrap()),
            ..Policy::default()
        };
        // Years old: measured from now, nothing would be kept.
        check(
            &policy,
            &[
                ok("2020-06-30T12:00:00+00:00", &["within 10d"]),
                ok("2020-06-25T12:00:00+02:00", &["within 10d"]),
                ok("2020-06-20T12:00:01+00:00", &["within 10d"]),
                // Exactly ten days before the newest: outside (exclusive, as restic).
                ok("2020-06-20T12:00:00+00:00", &[]),
                // Same instant written at another offset: also exactly ten days.
                ok("2020-06-20T19:00:00+07:00", &[]),
                ok("2020-05-01T00:00:00+00:00", &[]),
            ],
        );
    }

    #[test]
    fn keep_within_is_anchored_on_the_newest_complete_snapshot() {
        let policy = Policy {
            keep_within: Some(parse_duration("2d").unwrap()),
            ..Policy::default()
        };
        check(
            &policy,
            &[
                // A week of failed runs does not move the window.
                partial(
                    "2026-08-10T00:00:00+00:00",
                    &["within 2d", "newer than the last complete snapshot"],
                ),
                partial(
                    "2026-08-05T00:00:00+00:00",
                    &["within 2d", "newer than the last complete snapshot"],
                ),
                ok("2026-08-03T00:00:00+00:00", &["within 2d"]),
                partial("2026-08-02T00:00:00+00:00", &["within 2d"]),
                ok("2026-08-01T12:00:00+00:00", &["within 2d"]),
                ok("2026-08-01T00:00:00+00:00", &[]),
            ],
        );
    }

    #[test]
    fn unlimited_counts() {
        let daily = Policy {
            keep_daily: Some(Count::Unlimited),
            ..Policy::default()
        };
        check(
            &daily,
            &[
                ok("2026-09-03T10:00:00+00:00", &["daily #1"]),
                ok("2026-09-02T10:00:00+00:00", &["daily #2"]),
                ok("2026-09-02T09:00:00+00:00", &[]),
                ok("2025-01-01T10:00:00+00:00", &["daily #3"]),
                // Unlimited is never used up: the oldest is kept as well.
                ok("2025-01-01T09:00:00+00:00", &["oldest daily"]),
            ],
        );
        let last = Policy {
            keep_last: Some(Count::Unlimited),
            ..Policy::default()
        };
        check(
            &last,
            &[
                // Equal instants: the second row has the greater id, so it is newer.
                ok("2026-09-03T10:00:00+00:00", &["last #2"]),
                ok("2026-09-03T10:00:00+00:00", &["last #1"]),
                ok("2026-09-02T10:00:00+00:00", &["last #3"]),
                partial("2026-09-01T10:00:00+00:00", &[]),
            ],
        );
    }

    impl Policy {
        fn with_tag(mut self, t: &str) -> Policy {
            self.keep_tags.push(t.to_string());
            self
        }
    }

    #[test]
    fn keep_tags() {
        let policy = counts(Some(1), None, None, None)
            .with_tag("keep")
            .with_tag("release")
            .with_tag("keep");
        check(
            &policy,
            &[
                ok("2026-10-05T00:00:00+00:00", &["last #1"]),
                tagged(
                    "2026-10-04T00:00:00+00:00",
                    &["release", "keep"],
                    &["tag keep", "tag release"],
                ),
                tagged("2026-10-03T00:00:00+00:00", &["nightly"], &[]),
                tagged("2026-10-02T00:00:00+00:00", &["Keep"], &[]),
                Row {
                    time: "2026-10-01T00:00:00+00:00",
                    complete: false,
                    tags: &["keep"],
                    keep: &["tag keep"],
                },
                tagged("2026-09-30T00:00:00+00:00", &["release"], &["tag release"]),
            ],
        );
    }

    #[test]
    fn empty_policy_keeps_everything_with_a_reason() {
        let rows = [
            ok("2026-10-05T00:00:00+00:00", &["no policy"]),
            partial("2026-10-04T00:00:00+00:00", &["no policy"]),
        ];
        assert!(Policy::default().is_empty());
        check(&Policy::default(), &rows);
        let zeros = Policy {
            keep_last: Some(Count::N(0)),
            keep_daily: Some(Count::N(0)),
            keep_within: Some(chrono::Duration::zero()),
            ..Policy::default()
        };
        assert!(zeros.is_empty());
        check(&zeros, &rows);
    }

    #[test]
    fn every_rule_makes_a_policy_non_empty() {
        let one = Some(Count::N(1));
        let rules = [
            Policy {
                keep_last: one,
                ..Policy::default()
            },
            Policy {
                keep_hourly: one,
                ..Policy::default()
            },
            Policy {
                keep_daily: one,
                ..Policy::default()
            },
            Policy {
                keep_weekly: one,
                ..Policy::default()
            },
            Policy {
                keep_monthly: one,
                ..Policy::default()
            },
            Policy {
                keep_yearly: Some(Count::Unlimited),
                ..Policy::default()
            },
            Policy {
                keep_within: Some(chrono::Duration::hours(1)),
                ..Policy::default()
            },
            Policy::default().with_tag("keep"),
        ];
        for p in rules {
            assert!(!p.is_empty(), "{p:?}");
        }
    }

    #[test]
    fn ties_are_broken_by_id() {
        // Rows get ids 1, 2, 3 in order: of equal instants the greater id is newer.
        check(
            &counts(Some(1), Some(2), None, None),
            &[
                ok("2026-12-01T10:00:00+00:00", &[]),
                ok("2026-12-01T11:00:00+01:00", &["last #1", "daily #1"]),
                ok("2026-11-30T10:00:00+00:00", &["daily #2"]),
            ],
        );
    }

    #[test]
    fn nanoseconds_order_snapshots_within_a_second() {
        let mk = |i: usize, nsec: u32| Candidate {
            id: id(i),
            time: SnapshotTime {
                at: Timestamp {
                    sec: 1_780_000_000,
                    nsec,
                },
                utc_offset: 0,
            },
            tags: vec![],
            complete: true,
        };
        // Row 0 has the greater id but the earlier nanosecond.
        let group = [mk(1, 5), mk(0, 6)];
        let got = counts(Some(1), None, None, None).decide(&group);
        assert_eq!(got[0].id, id(0));
        assert_eq!(got[0].reasons, vec!["last #1".to_string()]);
        assert_eq!(got[1].action, Action::Remove);
    }

    // ---- a declarative model on generated groups ----

    /// Restic counting restated per bucket instead of as a walk: the kept snapshot
    /// of a bucket is its newest; buckets rank by that snapshot; bucket keys come
    /// from chrono's formatter rather than the implementation's tuples.
    fn model(policy: &Policy, group: &[Candidate]) -> Vec<Vec<String>> {
        let key = |c: &Candidate| (c.time.at, c.id);
        let mut out = vec![Vec::new(); group.len()];
        let complete: Vec<usize> = (0..group.len()).filter(|&i| group[i].complete).collect();
        let formats = [
            ("last", policy.keep_last, ""),
            ("hourly", policy.keep_hourly, "%Y-%m-%dT%H"),
            ("daily", policy.keep_daily, "%Y-%m-%d"),
            ("weekly", policy.keep_weekly, "%G-W%V"),
            ("monthly", policy.keep_monthly, "%Y-%m"),
            ("yearly", policy.keep_yearly, "%Y"),
        ];
        for (name, count, fmt) in formats {
            let Some(count) = count else { continue };
            let mut newest_of_bucket: BTreeMap<String, usize> = BTreeMap::new();
            for &i in &complete {
                let bucket = if fmt.is_empty() {
                    format!("{i}")
                } else {
                    group[i].time.to_datetime().format(fmt).to_string()
                };
                let e = newest_of_bucket.entry(bucket).or_insert(i);
                if key(&group[i]) > key(&group[*e]) {
                    *e = i;
                }
            }
            let mut ranked: Vec<usize> = newest_of_bucket.values().copied().collect();
            ranked.sort_by_key(|&i| std::cmp::Reverse(key(&group[i])));
            let limit = match count {
                Count::N(n) => n as usize,
                Count::Unlimited => usize::MAX,
            };
            for (rank, &i) in ranked.iter().take(limit).enumerate() {
                out[i].push(format!("{name} #{}", rank + 1));
            }
            if ranked.len() < limit {
                if let Some(&oldest) = complete.iter().min_by_key(|&&i| key(&group[i])) {
                    if !ranked.contains(&oldest) {
                        out[oldest].push(format!("oldest {name}"));
                    }
                }
            }
        }
        let newest_complete = complete.iter().map(|&i| key(&group[i])).max();
        if let Some(d) = policy.keep_within {
            let anchor = newest_complete.or(group.iter().map(key).max()).unwrap();
            let anchor_dt = DateTime::from_timestamp(anchor.0.sec, anchor.0.nsec).unwrap();
            for (i, c) in group.iter().enumerate() {
                let t = DateTime::from_timestamp(c.time.at.sec, c.time.at.nsec).unwrap();
                if anchor_dt - t < d {
                    out[i].push(format!("within {}", format_duration(d)));
                }
            }
        }
        for (i, c) in group.iter().enumerate() {
            for t in &policy.keep_tags {
                if c.tags.contains(t) {
                    out[i].push(format!("tag {t}"));
                }
            }
            if !c.complete && newest_complete.is_none_or(|n| c.time.at > n.0) {
                out[i].push("newer than the last complete snapshot".to_string());
            }
        }
        out
    }

    /// A small deterministic generator (SplitMix64), so failures reproduce.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn count(&mut self) -> Option<Count> {
            match self.below(6) {
                0 | 1 => None,
                2 => Some(Count::Unlimited),
                _ => Some(Count::N(self.below(6) as u32)),
            }
        }
    }

    #[test]
    fn matches_a_declarative_model_on_generated_groups() {
        let offsets = [
            -10 * 3600,
            -5 * 3600,
            0,
            3600,
            2 * 3600,
            19800,
            7 * 3600,
            14 * 3600,
        ];
        let mut g = Gen(4);
        for case in 0..2000 {
            let mut policy = Policy {
                keep_last: g.count(),
                keep_hourly: g.count(),
                keep_daily: g.count(),
                keep_weekly: g.count(),
                keep_monthly: g.count(),
                keep_yearly: g.count(),
                keep_within: (g.below(3) == 0)
                    .then(|| chrono::Duration::hours(1 + g.below(24 * 60) as i64)),
                keep_tags: vec![],
            };
            if g.below(4) == 0 {
                policy.keep_tags.push("keep".to_string());
            }
            if policy.is_empty() {
                policy.keep_last = Some(Count::N(1));
            }
            // Times cluster around a moving point so buckets collide; some share an
            // instant exactly.
            let n = 1 + g.below(25) as usize;
            let mut sec: i64 = 1_700_000_000;
            let mut group = Vec::new();
            for i in 0..n {
                if g.below(5) != 0 {
                    sec -= [600, 3600, 20_000, 86_400, 400_000, 3_000_000][g.below(6) as usize];
                }
                group.push(Candidate {
                    id: id(g.below(1000) as usize * 100 + i),
                    time: SnapshotTime {
                        at: Timestamp { sec, nsec: 0 },
                        utc_offset: offsets[g.below(offsets.len() as u64) as usize],
                    },
                    tags: if g.below(5) == 0 {
                        vec!["keep".to_string()]
                    } else {
                        vec![]
                    },
                    complete: g.below(6) != 0,
                });
            }
            let swaps = g.below(n as u64) as usize;
            for _ in 0..swaps {
                let (a, b) = (g.below(n as u64) as usize, g.below(n as u64) as usize);
                group.swap(a, b);
            }
            let expected = model(&policy, &group);
            let got = policy.decide(&group);
            let row_of: BTreeMap<SnapshotId, usize> =
                group.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
            for d in &got {
                let i = row_of[&d.id];
                assert_eq!(
                    d.reasons,
                    expected[i],
                    "case {case}, snapshot {} ({}), policy {policy:?}",
                    group[i].time.rfc3339(),
                    if group[i].complete {
                        "complete"
                    } else {
                        "incomplete"
                    }
                );
            }
            check_decisions(&group, &got, &expected);
        }
    }

    // ---- parsing ----

    #[test]
    fn parse_duration_table() {
        let h = chrono::Duration::hours;
        let ok_cases: &[(&str, chrono::Duration, &str)] = &[
            ("10d", h(240), "10d"),
            ("2w", h(14 * 24), "14d"),
            ("1y", h(365 * 24), "365d"),
            ("1m", h(30 * 24), "30d"),
            ("36h", h(36), "1d12h"),
            ("1y2m3d4h", h((365 + 60 + 3) * 24 + 4), "428d4h"),
            ("1m1w", h(37 * 24), "37d"),
            ("0d5h", h(5), "5h"),
            ("007d", h(7 * 24), "7d"),
        ];
        for (text, want, shown) in ok_cases {
            let got = parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(got, *want, "{text:?}");
            assert_eq!(format_duration(got), *shown, "{text:?}");
        }
        let bad = [
            "",
            "10",
            "d",
            "10x",
            "10D",
            "1d2y",
            "1d1d",
            "1h1d",
            "-1d",
            "1.5d",
            " 1d",
            "1d ",
            "0d",
            "0y0h",
            "99999999999999999999d",
            "18446744073709551615y",
            "10d!",
            "1μ",
        ];
        for text in bad {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn format_duration_of_odd_durations() {
        assert_eq!(format_duration(chrono::Duration::seconds(90)), "1min30s");
        assert_eq!(format_duration(chrono::Duration::zero()), "0s");
        assert_eq!(format_duration(chrono::Duration::hours(-25)), "-1d1h");
    }

    #[test]
    fn parse_count_table() {
        let cases: &[(&str, Option<Count>)] = &[
            ("7", Some(Count::N(7))),
            ("0", Some(Count::N(0))),
            ("031", Some(Count::N(31))),
            ("4294967295", Some(Count::N(u32::MAX))),
            ("unlimited", Some(Count::Unlimited)),
            ("4294967296", None),
            ("-1", None),
            ("", None),
            ("7d", None),
            (" 7", None),
            ("+7", None),
            ("Unlimited", None),
            ("all", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_count(text).ok(), *want, "{text:?}");
        }
    }
}
