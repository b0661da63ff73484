//! Which snapshots a retention policy keeps: restic's `forget` rules, decided
//! without I/O. The rules are documented on [`RetentionPolicy`].

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::objectives::Rpo;
use crate::snapshot::Manifest;

/// How many snapshots to keep, restic-style: the newest `n`, the newest of each of
/// the last `n` hours, days, ISO weeks, months and years, and all within a window.
/// Periods are computed in UTC.
///
/// Built with [`new`](Self::new) and the setters, or parsed from
/// `last=3,daily=7,weekly=4,within=30d`, which is also how it prints. With serde it
/// is a map with the same keys (`{"daily": 7, "within": "30d"}`), and unknown keys
/// are rejected. There is no `Default`: how long to keep backups is the caller's
/// decision.
///
/// ```
/// use std::time::Duration;
/// use dr_core::RetentionPolicy;
///
/// let policy = RetentionPolicy::new()
///     .keep_last(3)
///     .daily(7)
///     .within(Duration::from_secs(30 * 86_400));
/// assert_eq!(policy.to_string(), "last=3,daily=7,within=30d");
/// assert_eq!("last=3, daily=7, within=30 days".parse::<RetentionPolicy>()?, policy);
/// assert!(RetentionPolicy::new().is_empty());
/// # Ok::<(), dr_core::Error>(())
/// ```
///
/// # Rules
///
/// [`apply`](Self::apply) takes the snapshots of one component as [`Candidate`]s and
/// returns one [`Decision`] per candidate, naming every rule that kept it as a
/// [`KeepReason`]; deleting what is not kept is the caller's business. The rules are
/// restic's:
///
/// - Snapshots are ordered newest first by their time `at`; equal times by id, the
///   greater id first.
/// - `last=n` keeps the `n` newest snapshots.
/// - `hourly=n`, `daily=n`, `weekly=n`, `monthly=n` and `yearly=n` walk from the newest
///   snapshot to the oldest and keep the newest snapshot of each hour, day, ISO 8601
///   week, month or year, until `n` distinct periods have been kept. Periods are
///   calendar periods in UTC. A period without snapshots does not count, so `daily=7`
///   keeps the last snapshot of each of the seven most recent days *that have one*,
///   however far back that reaches.
/// - `within=d` keeps every snapshot with `at >= now - d`, where `now` is given to
///   `apply`. Snapshots later than `now` (a skewed clock) are kept too. Unlike restic,
///   which measures from the newest snapshot, this measures from `now`: if backups
///   stopped a month ago, `within=7d` alone keeps nothing, so pair it with a count rule.
/// - A snapshot is kept if any rule keeps it, and its decision lists every rule that
///   did, in the order above.
/// - A policy with no rules keeps every snapshot, with the reason
///   [`KeepReason::EmptyPolicy`]. Callers that delete should refuse such a policy
///   ([`is_empty`](Self::is_empty)) rather than rely on this.
/// - The same id given twice counts as one snapshot, at the later of its times; each
///   copy gets the same decision.
/// - Decisions come back in the order of the input, one per candidate.
///
/// ```
/// use dr_core::SnapshotId;
/// use dr_core::{Candidate, KeepReason, RetentionPolicy};
///
/// let policy: RetentionPolicy = "last=1,daily=2".parse()?;
/// let snapshot = |at: &str| -> Candidate {
///     let at: jiff::Timestamp = at.parse().unwrap();
///     Candidate::new(SnapshotId::from_parts(at, 0).unwrap(), at)
/// };
/// let snapshots = [
///     snapshot("2026-11-20T08:00:00Z"),
///     snapshot("2026-11-21T08:00:00Z"),
///     snapshot("2026-11-21T20:00:00Z"),
/// ];
/// let decisions = policy.apply(&snapshots, "2026-11-22T00:00:00Z".parse().unwrap());
/// assert!(decisions[0].keep); // the newest of 20 November
/// assert!(!decisions[1].keep); // 21 November has a newer one
/// assert_eq!(decisions[2].reasons, [KeepReason::Last, KeepReason::Daily]);
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hourly: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    daily: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weekly: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    monthly: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    yearly: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    within: Option<Window>,
}

impl RetentionPolicy {
    /// A policy with no rules, which keeps nothing by itself; see [`is_empty`](Self::is_empty).
    #[expect(
        clippy::new_without_default,
        reason = "a policy has no Default: how long to keep backups is the caller's decision"
    )]
    pub fn new() -> Self {
        Self {
            last: None,
            hourly: None,
            daily: None,
            weekly: None,
            monthly: None,
            yearly: None,
            within: None,
        }
    }

    /// Keeps the `n` newest snapshots. `0` removes the rule.
    pub fn keep_last(mut self, n: u32) -> Self {
        self.last = NonZeroU32::new(n);
        self
    }

    /// Keeps the newest snapshot of each of the `n` most recent hours that have one.
    /// `0` removes the rule.
    pub fn hourly(mut self, n: u32) -> Self {
        self.hourly = NonZeroU32::new(n);
        self
    }

    /// Keeps the newest snapshot of each of the `n` most recent days that have one.
    /// `0` removes the rule.
    pub fn daily(mut self, n: u32) -> Self {
        self.daily = NonZeroU32::new(n);
        self
    }

    /// Keeps the newest snapshot of each of the `n` most recent ISO 8601 weeks
    /// (Monday to Sunday) that have one. `0` removes the rule.
    pub fn weekly(mut self, n: u32) -> Self {
        self.weekly = NonZeroU32::new(n);
        self
    }

    /// Keeps the newest snapshot of each of the `n` most recent months that have one.
    /// `0` removes the rule.
    pub fn monthly(mut self, n: u32) -> Self {
        self.monthly = NonZeroU32::new(n);
        self
    }

    /// Keeps the newest snapshot of each of the `n` most recent years that have one.
    /// `0` removes the rule.
    pub fn yearly(mut self, n: u32) -> Self {
        self.yearly = NonZeroU32::new(n);
        self
    }

    /// Keeps every snapshot whose time is within `window` before `now`, or later.
    /// A zero window removes the rule.
    pub fn within(mut self, window: Duration) -> Self {
        self.within = (!window.is_zero()).then_some(Window(window));
        self
    }

    /// Whether the policy has no rules at all. Refuse to delete anything with such a
    /// policy: it almost always means a configuration was not read.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| n.is_none()) && self.within.is_none()
    }

    /// Decides, for each candidate, whether the policy keeps it and why; `now` is the
    /// end of the `within` window. One decision per candidate, in the input's order.
    pub fn apply(&self, snapshots: &[Candidate], now: Timestamp) -> Vec<Decision> {
        let mut times: HashMap<SnapshotId, Timestamp> = HashMap::with_capacity(snapshots.len());
        for c in snapshots {
            times
                .entry(c.id)
                .and_modify(|at| *at = (*at).max(c.at))
                .or_insert(c.at);
        }
        let mut newest_first: Vec<(Timestamp, SnapshotId)> =
            times.into_iter().map(|(id, at)| (at, id)).collect();
        newest_first.sort_unstable_by(|a, b| b.cmp(a));

        let mut reasons = vec![Vec::new(); newest_first.len()];
        if self.is_empty() {
            reasons
                .iter_mut()
                .for_each(|r| r.push(KeepReason::EmptyPolicy));
        }
        for (count, n) in self.counts() {
            let Some(n) = n else { continue };
            let mut taken = 0;
            let mut previous = None;
            for (i, (at, _)) in newest_first.iter().enumerate() {
                if taken == n.get() {
                    break;
                }
                let period = count.period(i, *at);
                if previous != Some(period) {
                    previous = Some(period);
                    reasons[i].push(count.reason());
                    taken += 1;
                }
            }
        }
        if let Some(Window(window)) = self.within {
            for (i, (at, _)) in newest_first.iter().enumerate() {
                let age = now.duration_since(*at);
                if age.is_negative() || age.unsigned_abs() <= window {
                    reasons[i].push(KeepReason::Within);
                }
            }
        }

        let by_id: HashMap<SnapshotId, Vec<KeepReason>> = newest_first
            .into_iter()
            .map(|(_, id)| id)
            .zip(reasons)
            .collect();
        snapshots
            .iter()
            .map(|c| {
                // Every input id is in the map by construction.
                let reasons = by_id[&c.id].clone();
                Decision {
                    id: c.id,
                    keep: !reasons.is_empty(),
                    reasons,
                }
            })
            .collect()
    }

    /// The count rules in the order they print, with their counts.
    fn counts(&self) -> [(Count, Option<NonZeroU32>); 6] {
        [
            (Count::Last, self.last),
            (Count::Hourly, self.hourly),
            (Count::Daily, self.daily),
            (Count::Weekly, self.weekly),
            (Count::Monthly, self.monthly),
            (Count::Yearly, self.yearly),
        ]
    }

    fn count_mut(&mut self, count: Count) -> &mut Option<NonZeroU32> {
        match count {
            Count::Last => &mut self.last,
            Count::Hourly => &mut self.hourly,
            Count::Daily => &mut self.daily,
            Count::Weekly => &mut self.weekly,
            Count::Monthly => &mut self.monthly,
            Count::Yearly => &mut self.yearly,
        }
    }
}

impl FromStr for RetentionPolicy {
    type Err = Error;

    /// Reads comma-separated `key=value` rules: `last`, `hourly`, `daily`, `weekly`,
    /// `monthly` and `yearly` take a whole number of at least 1, `within` a duration
    /// as RPOs are written (`30d`, `12h`, `1h30m`, `30 days`; `m` is minutes). Spaces
    /// around rules, keys and values are ignored; each key may appear once.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the problem: an empty policy or rule, an unknown
    /// key, a missing `=`, a bad or zero number, a bad or zero duration, or a key
    /// given twice.
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidInput {
            what: format!("retention policy {s:?}"),
            reason,
        };
        if s.trim().is_empty() {
            return Err(invalid(
                "empty; give at least one rule, such as last=3 or daily=7".into(),
            ));
        }
        let mut policy = Self::new();
        let mut seen: Vec<&str> = Vec::new();
        for rule in s.split(',') {
            let rule = rule.trim();
            if rule.is_empty() {
                return Err(invalid("empty rule between commas".into()));
            }
            let Some((key, value)) = rule.split_once('=') else {
                return Err(invalid(format!("expected key=value, found {rule:?}")));
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(invalid(format!("{key} given twice")));
            }
            if key == KeepReason::Within.as_str() {
                let window = Window::parse(value).map_err(invalid)?;
                policy.within = Some(window);
            } else if let Some(count) = Count::from_key(key) {
                *policy.count_mut(count) = Some(parse_count(key, value).map_err(invalid)?);
            } else {
                return Err(invalid(format!(
                    "unknown rule {key:?}; expected last, hourly, daily, weekly, monthly, yearly or within"
                )));
            }
            seen.push(key);
        }
        Ok(policy)
    }
}

/// A rule's count: a whole number of at least 1; the error is the reason.
fn parse_count(key: &str, value: &str) -> Result<NonZeroU32, String> {
    let all_digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u32>() {
        Ok(n) => NonZeroU32::new(n)
            .ok_or_else(|| format!("{key}=0 keeps nothing; leave the rule out instead")),
        Err(_) if all_digits => Err(format!("{key}={value} is too large (at most {})", u32::MAX)),
        Err(_) => Err(format!("{key} needs a whole number, found {value:?}")),
    }
}

/// Prints the rules in a fixed order (`last`, `hourly`, `daily`, `weekly`, `monthly`,
/// `yearly`, `within`), durations compactly (`30d`, `1h30m`). The result parses back
/// to the same policy, except that an empty policy prints as the empty string, which
/// [`FromStr`] rejects.
impl fmt::Display for RetentionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        for (count, n) in self.counts() {
            if let Some(n) = n {
                write!(f, "{separator}{}={n}", count.reason())?;
                separator = ",";
            }
        }
        if let Some(window) = self.within {
            write!(f, "{separator}within={window}")?;
        }
        Ok(())
    }
}

/// A `within` window: a non-zero duration, written as RPOs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct Window(Duration);

impl Window {
    /// Reads `30d`, `1h30m`, `30 days`; the error is the reason.
    fn parse(value: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected a duration such as 30d, 12h or 1h30m";
        if !value.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("within: {EXPECTED}, found {value:?}"));
        }
        let duration = match value.parse::<Rpo>() {
            Ok(rpo) => rpo.as_duration(),
            Err(Error::Parse { reason, .. }) => {
                return Err(format!("within: {reason} in {value:?}; {EXPECTED}"));
            }
            Err(other) => return Err(format!("within: {other}")),
        };
        if duration.is_zero() {
            return Err("within=0s keeps nothing; leave the rule out instead".into());
        }
        Ok(Self(duration))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // dr-core's compact form, which its parser reads back exactly.
        fmt::Display::fmt(&Rpo::new(self.0), f)
    }
}

impl TryFrom<String> for Window {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        Self::parse(s.trim()).map_err(|reason| Error::InvalidInput {
            what: format!("retention window {s:?}"),
            reason,
        })
    }
}

impl From<Window> for String {
    fn from(value: Window) -> String {
        value.to_string()
    }
}

/// The rules that keep a number of snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Count {
    const ALL: [Count; 6] = [
        Count::Last,
        Count::Hourly,
        Count::Daily,
        Count::Weekly,
        Count::Monthly,
        Count::Yearly,
    ];

    fn reason(self) -> KeepReason {
        match self {
            Count::Last => KeepReason::Last,
            Count::Hourly => KeepReason::Hourly,
            Count::Daily => KeepReason::Daily,
            Count::Weekly => KeepReason::Weekly,
            Count::Monthly => KeepReason::Monthly,
            Count::Yearly => KeepReason::Yearly,
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.reason().as_str() == key)
    }

    /// The period the rule counts: for `last` each snapshot is its own (its place in
    /// the newest-first order), for the others the UTC calendar period it falls in.
    fn period(self, index: usize, at: Timestamp) -> (i64, i8, i8, i8) {
        let t = TimeZone::UTC.to_datetime(at);
        let year = i64::from(t.year());
        match self {
            // usize fits in i64 on every platform Rust supports with this many snapshots.
            Count::Last => (index as i64, 0, 0, 0),
            Count::Hourly => (year, t.month(), t.day(), t.hour()),
            Count::Daily => (year, t.month(), t.day(), 0),
            Count::Weekly => {
                let week = t.date().iso_week_date();
                (i64::from(week.year()), week.week(), 0, 0)
            }
            Count::Monthly => (year, t.month(), 0, 0),
            Count::Yearly => (year, 0, 0, 0),
        }
    }
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its time: the manifest's `started_at`.
    pub at: Timestamp,
}

impl Candidate {
    /// A candidate from an id and the snapshot's time.
    pub fn new(id: SnapshotId, at: Timestamp) -> Self {
        Self { id, at }
    }
}

impl From<&Manifest> for Candidate {
    /// The snapshot's id and `started_at`.
    fn from(manifest: &Manifest) -> Self {
        Self::new(manifest.id, manifest.started_at)
    }
}

/// Whether one snapshot is kept, and which rules keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Whether any rule keeps it; if not, the policy lets it be forgotten.
    pub keep: bool,
    /// Every rule that keeps it, in the order rules print; empty exactly when `keep`
    /// is false.
    pub reasons: Vec<KeepReason>,
}

/// A rule that keeps a snapshot. Prints (and serializes) as the rule's key, such as `daily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeepReason {
    /// One of the `last` newest snapshots.
    Last,
    /// The newest snapshot of one of the `hourly` most recent hours.
    Hourly,
    /// The newest snapshot of one of the `daily` most recent days.
    Daily,
    /// The newest snapshot of one of the `weekly` most recent ISO weeks.
    Weekly,
    /// The newest snapshot of one of the `monthly` most recent months.
    Monthly,
    /// The newest snapshot of one of the `yearly` most recent years.
    Yearly,
    /// Taken within the `within` window, or later than `now`.
    Within,
    /// The policy has no rules, and a policy with no rules keeps everything.
    EmptyPolicy,
    /// A kept snapshot is stored against it ([`crate::Manifest::depends_on`]).
    Dependency,
}

impl KeepReason {
    /// The rule's key: `last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`,
    /// `within`, `empty-policy`, or `dependency`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeepReason::Last => "last",
            KeepReason::Hourly => "hourly",
            KeepReason::Daily => "daily",
            KeepReason::Weekly => "weekly",
            KeepReason::Monthly => "monthly",
            KeepReason::Yearly => "yearly",
            KeepReason::Within => "within",
            KeepReason::EmptyPolicy => "empty-policy",
            KeepReason::Dependency => "dependency",
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use crate::ErrorKind;
    use proptest::prelude::*;

    use super::*;

    const DAY: u64 = 86_400;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn candidate(at: Timestamp, nonce: u32) -> Candidate {
        Candidate::new(SnapshotId::from_parts(at, nonce).unwrap(), at)
    }

    fn at(text: &str) -> Candidate {
        candidate(ts(text), 0)
    }

    /// The times of the kept candidates, newest first.
    fn kept(policy: &RetentionPolicy, snapshots: &[Candidate], now: Timestamp) -> Vec<String> {
        let decisions = policy.apply(snapshots, now);
        let mut kept: Vec<Timestamp> = snapshots
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| d.keep)
            .map(|(c, _)| c.at)
            .collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        kept.iter().map(Timestamp::to_string).collect()
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day() {
        let mut snapshots = Vec::new();
        for day in 1..=10 {
            for hour in [2, 10, 18] {
                snapshots.push(at(&format!("2026-03-{day:02}T{hour:02}:00:00Z")));
            }
        }
        let now = ts("2026-03-11T00:00:00Z");
        let policy = RetentionPolicy::new().daily(7);
        let expected: Vec<String> = (4..=10)
            .rev()
            .map(|day| format!("2026-03-{day:02}T18:00:00Z"))
            .collect();
        assert_eq!(kept(&policy, &snapshots, now), expected);
        for d in policy.apply(&snapshots, now).iter().filter(|d| d.keep) {
            assert_eq!(d.reasons, [KeepReason::Daily]);
        }
    }

    #[test]
    fn periods_without_snapshots_do_not_count() {
        let snapshots = [
            at("2026-01-01T12:00:00Z"),
            at("2026-01-05T12:00:00Z"),
            at("2026-01-09T12:00:00Z"),
            at("2026-01-20T12:00:00Z"),
        ];
        let policy = RetentionPolicy::new().daily(3);
        assert_eq!(
            kept(&policy, &snapshots, ts("2026-02-01T00:00:00Z")),
            [
                "2026-01-20T12:00:00Z",
                "2026-01-09T12:00:00Z",
                "2026-01-05T12:00:00Z"
            ]
        );
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_recent_hour() {
        let start = ts("2026-05-01T09:00:00Z");
        // Every 20 minutes from 09:00 to 13:40.
        let snapshots: Vec<Candidate> = (0..15)
            .map(|i| candidate(start + Duration::from_secs(i * 1200), 0))
            .collect();
        let policy = RetentionPolicy::new().hourly(3);
        assert_eq!(
            kept(&policy, &snapshots, ts("2026-05-02T00:00:00Z")),
            [
                "2026-05-01T13:40:00Z",
                "2026-05-01T12:40:00Z",
                "2026-05-01T11:40:00Z"
            ]
        );
    }

    #[test]
    fn weekly_uses_iso_weeks_across_a_year_boundary() {
        // ISO 2026-W53 runs from Monday 2026-12-28 to Sunday 2027-01-03.
        let snapshots = [
            at("2026-12-20T12:00:00Z"), // W51
            at("2026-12-27T12:00:00Z"), // Sunday of W52
            at("2026-12-28T12:00:00Z"), // W53
            at("2027-01-02T12:00:00Z"), // W53 too
            at("2027-01-04T12:00:00Z"), // 2027-W01
        ];
        let policy = RetentionPolicy::new().weekly(3);
        assert_eq!(
            kept(&policy, &snapshots, ts("2027-02-01T00:00:00Z")),
            [
                "2027-01-04T12:00:00Z",
                "2027-01-02T12:00:00Z",
                "2026-12-27T12:00:00Z"
            ]
        );
    }

    #[test]
    fn monthly_and_yearly_use_utc_calendar_periods() {
        let snapshots = [
            at("2024-06-01T00:00:00Z"),
            at("2025-01-01T00:00:00Z"),
            // 2026-01-01T00:30+01:00 is still 2025 in UTC.
            candidate(ts("2026-01-01T00:30:00+01:00"), 0),
            at("2026-01-15T00:00:00Z"),
            at("2026-02-01T00:00:00Z"),
            at("2026-02-28T23:59:59Z"),
            at("2026-03-01T00:00:00Z"),
        ];
        let now = ts("2026-04-01T00:00:00Z");
        assert_eq!(
            kept(&RetentionPolicy::new().monthly(3), &snapshots, now),
            [
                "2026-03-01T00:00:00Z",
                "2026-02-28T23:59:59Z",
                "2026-01-15T00:00:00Z"
            ]
        );
        assert_eq!(
            kept(&RetentionPolicy::new().yearly(3), &snapshots, now),
            [
                "2026-03-01T00:00:00Z",
                "2025-12-31T23:30:00Z",
                "2024-06-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn within_keeps_the_window_and_the_future() {
        let now = ts("2026-06-30T00:00:00Z");
        let snapshots = [
            candidate(now - Duration::from_secs(30 * DAY + 1), 0),
            candidate(now - Duration::from_secs(30 * DAY), 0),
            candidate(now - Duration::from_secs(3600), 0),
            candidate(now + Duration::from_secs(3600), 0),
        ];
        let policy = RetentionPolicy::new().within(Duration::from_secs(30 * DAY));
        let decisions = policy.apply(&snapshots, now);
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [false, true, true, true]);
        assert_eq!(decisions[3].reasons, [KeepReason::Within]);
        assert!(decisions[0].reasons.is_empty());
    }

    #[test]
    fn last_keeps_the_newest_with_ties_broken_by_id() {
        let noon = ts("2026-06-01T12:00:00Z");
        let snapshots = [
            candidate(noon, 1),
            candidate(noon, 2),
            candidate(noon - Duration::from_secs(60), 9),
            candidate(noon + Duration::from_secs(DAY), 0), // in the future
        ];
        let decisions = RetentionPolicy::new().keep_last(2).apply(&snapshots, noon);
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [false, true, false, true]);
        assert_eq!(decisions[1].reasons, [KeepReason::Last]);
    }

    #[test]
    fn combined_rules_record_every_reason() {
        let snapshots = [
            at("2026-06-01T08:00:00Z"),
            at("2026-06-02T08:00:00Z"),
            at("2026-06-02T20:00:00Z"),
            at("2026-06-03T08:00:00Z"),
        ];
        let policy: RetentionPolicy = "last=1,daily=2,monthly=1,within=1d".parse().unwrap();
        let decisions = policy.apply(&snapshots, ts("2026-06-03T12:00:00Z"));
        let reasons: Vec<&[KeepReason]> = decisions.iter().map(|d| &d.reasons[..]).collect();
        use KeepReason::*;
        assert_eq!(
            reasons,
            [
                &[][..],
                &[][..],
                &[Daily, Within][..],
                &[Last, Daily, Monthly, Within][..],
            ]
        );
        assert_eq!(
            decisions.iter().map(|d| d.keep).collect::<Vec<_>>(),
            [false, false, true, true]
        );
    }

    #[test]
    fn an_empty_policy_keeps_everything_and_says_so() {
        let policy = RetentionPolicy::new();
        assert!(policy.is_empty());
        let snapshots = [at("2026-06-01T08:00:00Z"), at("2020-06-01T08:00:00Z")];
        for d in policy.apply(&snapshots, ts("2030-01-01T00:00:00Z")) {
            assert!(d.keep);
            assert_eq!(d.reasons, [KeepReason::EmptyPolicy]);
        }
        // Zero counts and windows remove a rule.
        let cleared = RetentionPolicy::new()
            .daily(7)
            .daily(0)
            .within(Duration::from_secs(60))
            .within(Duration::ZERO);
        assert!(cleared.is_empty());
        assert_eq!(cleared, RetentionPolicy::new());
        assert!(!RetentionPolicy::new().yearly(1).is_empty());
        assert!(policy.apply(&[], ts("2030-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn duplicate_ids_count_once_and_share_a_decision() {
        let newest = at("2026-06-02T08:00:00Z");
        let older = at("2026-06-01T08:00:00Z");
        let snapshots = [newest, older, newest];
        let decisions = RetentionPolicy::new()
            .keep_last(2)
            .apply(&snapshots, ts("2026-07-01T00:00:00Z"));
        assert_eq!(decisions.len(), 3);
        assert!(decisions.iter().all(|d| d.keep));
        assert_eq!(decisions[0], decisions[2]);
        // The same id at two times counts at the later one.
        let late = Candidate::new(older.id, ts("2026-06-03T08:00:00Z"));
        let decisions = RetentionPolicy::new()
            .keep_last(1)
            .apply(&[newest, older, late], ts("2026-07-01T00:00:00Z"));
        let keep: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [false, true, true]);
    }

    #[test]
    fn policies_print_and_parse_back() {
        for (text, printed) in [
            (
                "last=3,daily=7,weekly=4,within=30d",
                "last=3,daily=7,weekly=4,within=30d",
            ),
            (
                " within = 36h , yearly=2,last=1 ",
                "last=1,yearly=2,within=1d12h",
            ),
            ("within=1h30m", "within=1h30m"),
            ("within=30 days", "within=30d"),
            (
                "hourly=24,daily=7,weekly=5,monthly=12,yearly=10",
                "hourly=24,daily=7,weekly=5,monthly=12,yearly=10",
            ),
            ("daily=4294967295", "daily=4294967295"),
        ] {
            let policy: RetentionPolicy = text.parse().unwrap();
            assert_eq!(policy.to_string(), printed, "{text}");
            assert_eq!(printed.parse::<RetentionPolicy>().unwrap(), policy);
        }
        let built = RetentionPolicy::new()
            .keep_last(3)
            .within(Duration::from_secs(5400));
        assert_eq!(built.to_string(), "last=3,within=1h30m");
        assert_eq!(RetentionPolicy::new().to_string(), "");
    }

    #[test]
    fn bad_policies_are_rejected_with_the_reason() {
        for (text, reason) in [
            ("", "empty; give at least one rule"),
            ("   ", "empty; give at least one rule"),
            ("last=3,,daily=7", "empty rule between commas"),
            ("last=3,", "empty rule between commas"),
            ("daily", "expected key=value, found \"daily\""),
            ("dayly=7", "unknown rule \"dayly\""),
            ("keep-daily=7", "unknown rule \"keep-daily\""),
            ("Daily=7", "unknown rule \"Daily\""),
            ("daily=x", "daily needs a whole number, found \"x\""),
            ("daily=", "daily needs a whole number, found \"\""),
            ("daily=-1", "daily needs a whole number, found \"-1\""),
            ("daily=1.5", "daily needs a whole number"),
            ("daily=0", "daily=0 keeps nothing"),
            ("daily=4294967296", "too large (at most 4294967295)"),
            ("daily=7,daily=3", "daily given twice"),
            ("within=1d,last=2,within=2d", "within given twice"),
            ("within=", "within: expected a duration"),
            ("within=<30d", "within: expected a duration"),
            ("within=30", "a number needs a unit"),
            ("within=2w", "unknown unit"),
            ("within=0s", "within=0s keeps nothing"),
            (
                "within=1 day, 2 hours",
                "expected key=value, found \"2 hours\"",
            ),
        ] {
            match text.parse::<RetentionPolicy>() {
                Err(err @ Error::InvalidInput { .. }) => {
                    assert_eq!(err.kind(), ErrorKind::InvalidInput);
                    let message = err.to_string();
                    assert!(message.contains(reason), "{text:?}: {message}");
                    assert!(
                        message.starts_with(&format!("invalid retention policy {text:?}: ")),
                        "{message}"
                    );
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn policies_serialize_as_maps_with_the_same_keys() {
        let policy: RetentionPolicy = "last=3,daily=7,within=30d".parse().unwrap();
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(json, r#"{"last":3,"daily":7,"within":"30d"}"#);
        assert_eq!(
            serde_json::from_str::<RetentionPolicy>(&json).unwrap(),
            policy
        );
        assert_eq!(
            serde_json::from_str::<RetentionPolicy>("{}").unwrap(),
            RetentionPolicy::new()
        );
        for bad in [
            r#"{"dayly":7}"#,
            r#"{"daily":0}"#,
            r#"{"daily":-1}"#,
            r#"{"within":"0s"}"#,
            r#"{"within":"soon"}"#,
        ] {
            assert!(
                serde_json::from_str::<RetentionPolicy>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reasons_print_as_rule_keys() {
        use KeepReason::*;
        let printed: Vec<String> = [
            Last,
            Hourly,
            Daily,
            Weekly,
            Monthly,
            Yearly,
            Within,
            EmptyPolicy,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            printed,
            [
                "last",
                "hourly",
                "daily",
                "weekly",
                "monthly",
                "yearly",
                "within",
                "empty-policy"
            ]
        );
        assert_eq!(
            serde_json::to_string(&EmptyPolicy).unwrap(),
            "\"empty-policy\""
        );
        assert_eq!(serde_json::to_string(&Daily).unwrap(), "\"daily\"");
    }

    /// 2025-01-01T00:00:00Z.
    const BASE: i64 = 1_735_689_600;

    /// Snapshots spread over years, weeks or hours (so that periods are shared),
    /// with some ids repeated.
    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        let offset = prop_oneof![0i64..100_000_000, 0i64..2_000_000, 0i64..20_000];
        (prop::collection::vec((offset, 0u32..4), 0..40), 0usize..4).prop_map(
            |(points, repeats)| {
                let mut out: Vec<Candidate> = points
                    .into_iter()
                    .map(|(secs, nonce)| {
                        candidate(Timestamp::from_second(BASE + secs).unwrap(), nonce)
                    })
                    .collect();
                let repeated: Vec<Candidate> = out.iter().take(repeats).copied().collect();
                out.extend(repeated);
                out
            },
        )
    }

    fn policies() -> impl Strategy<Value = RetentionPolicy> {
        (
            prop::array::uniform6(prop_oneof![Just(0u32), 1u32..6]),
            prop::option::of(1u64..50_000_000),
        )
            .prop_map(|(counts, within)| {
                let policy = RetentionPolicy::new()
                    .keep_last(counts[0])
                    .hourly(counts[1])
                    .daily(counts[2])
                    .weekly(counts[3])
                    .monthly(counts[4])
                    .yearly(counts[5]);
                match within {
                    Some(secs) => policy.within(Duration::from_secs(secs)),
                    None => policy,
                }
            })
    }

    fn now() -> impl Strategy<Value = Timestamp> {
        (0i64..110_000_000).prop_map(|secs| Timestamp::from_second(BASE + secs).unwrap())
    }

    /// The same policy split into one policy per rule.
    fn single_rules(policy: &RetentionPolicy) -> Vec<RetentionPolicy> {
        let mut singles: Vec<RetentionPolicy> = policy
            .counts()
            .into_iter()
            .filter_map(|(count, n)| {
                let mut single = RetentionPolicy::new();
                *single.count_mut(count) = Some(n?);
                Some(single)
            })
            .collect();
        if let Some(Window(window)) = policy.within {
            singles.push(RetentionPolicy::new().within(window));
        }
        singles
    }

    fn kept_ids(decisions: &[Decision]) -> HashSet<SnapshotId> {
        decisions.iter().filter(|d| d.keep).map(|d| d.id).collect()
    }

    /// Distinct snapshots, newest first.
    fn newest_first(snapshots: &[Candidate]) -> Vec<SnapshotId> {
        let mut unique: Vec<(Timestamp, SnapshotId)> = snapshots
            .iter()
            .map(|c| (c.at, c.id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        unique.sort_unstable_by(|a, b| b.cmp(a));
        unique.into_iter().map(|(_, id)| id).collect()
    }

    proptest! {
        #[test]
        fn keep_last_keeps_exactly_the_newest(snapshots in candidates(), n in 0u32..50, now in now()) {
            let decisions = RetentionPolicy::new().keep_last(n).apply(&snapshots, now);
            let newest = newest_first(&snapshots);
            let expected: HashSet<SnapshotId> = if n == 0 {
                // No rule: the empty policy keeps everything.
                newest.iter().copied().collect()
            } else {
                newest.iter().take(n as usize).copied().collect()
            };
            prop_assert_eq!(kept_ids(&decisions), expected);
        }

        #[test]
        fn a_policy_keeps_the_union_of_its_rules(
            snapshots in candidates(),
            policy in policies(),
            now in now(),
        ) {
            let decisions = policy.apply(&snapshots, now);
            prop_assert_eq!(decisions.len(), snapshots.len());
            for (c, d) in snapshots.iter().zip(&decisions) {
                prop_assert_eq!(c.id, d.id);
                prop_assert_eq!(d.keep, !d.reasons.is_empty());
            }
            if policy.is_empty() {
                prop_assert!(decisions.iter().all(|d| d.reasons == [KeepReason::EmptyPolicy]));
                return Ok(());
            }
            let mut union = HashSet::new();
            let mut reasons: HashMap<SnapshotId, Vec<KeepReason>> = HashMap::new();
            for single in single_rules(&policy) {
                let single_decisions = single.apply(&snapshots, now);
                let single_kept = kept_ids(&single_decisions);
                prop_assert!(kept_ids(&decisions).is_superset(&single_kept));
                union.extend(single_kept);
                let mut seen = HashSet::new();
                for d in single_decisions {
                    if seen.insert(d.id) {
                        reasons.entry(d.id).or_default().extend(d.reasons);
                    }
                }
            }
            prop_assert_eq!(kept_ids(&decisions), union);
            for d in &decisions {
                prop_assert_eq!(&d.reasons, &reasons[&d.id]);
            }
        }

        #[test]
        fn decisions_do_not_depend_on_input_order(
            (snapshots, shuffled) in candidates().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            policy in policies(),
            now in now(),
        ) {
            let by_id = |input: &[Candidate]| -> HashMap<SnapshotId, Decision> {
                policy.apply(input, now).into_iter().map(|d| (d.id, d)).collect()
            };
            prop_assert_eq!(by_id(&snapshots), by_id(&shuffled));
        }

        #[test]
        fn the_newest_snapshot_is_kept_by_any_count_rule(
            snapshots in candidates(),
            policy in policies(),
            now in now(),
        ) {
            prop_assume!(policy.counts().iter().any(|(_, n)| n.is_some()));
            if let Some(newest) = newest_first(&snapshots).first() {
                let decisions = policy.apply(&snapshots, now);
                let decision = decisions.iter().find(|d| d.id == *newest).unwrap();
                prop_assert!(decision.keep);
            }
        }

        #[test]
        fn policies_round_trip_through_text_and_serde(policy in policies()) {
            prop_assume!(!policy.is_empty());
            let text = policy.to_string();
            prop_assert_eq!(text.parse::<RetentionPolicy>().unwrap(), policy.clone());
            let json = serde_json::to_string(&policy).unwrap();
            prop_assert_eq!(serde_json::from_str::<RetentionPolicy>(&json).unwrap(), policy);
        }

        #[test]
        fn the_parser_never_panics(text in "[a-z=, 0-9dhms]{0,30}") {
            let _ = text.parse::<RetentionPolicy>();
        }
    }
}
