//! Cron schedules in a time zone: when a job runs next.
//!
//! [`Cron`] is the classic five-field expression (with an optional leading
//! seconds field); [`Schedule`] is a cron
//! expression in an IANA time zone. Times are found day by day in the
//! zone's civil calendar, so a schedule keeps its wall-clock time across
//! daylight-saving changes, with the rule cron implementations share:
//!
//! - a time the spring change skips (02:30 when clocks jump from 02:00 to
//!   03:00) runs once, at the instant of the change;
//! - a time the autumn change repeats (02:30 when clocks fall back from 03:00
//!   to 02:00) runs once, at its first occurrence.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, Zoned};
use serde::de::{self, Deserialize, Deserializer};

use crate::error::{Error, Result};

/// How many years ahead [`Cron::next_after`] looks: the Gregorian calendar
/// repeats every 400 years, so an expression that matches no day in that
/// span matches none ever.
const SEARCH_YEARS: i16 = 400;

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's range and names.
struct Field {
    name: &'static str,
    min: u8,
    max: u8,
    /// Names for `min`, `min + 1`, ...
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTH_NAMES,
};
// 7 is Sunday too, as in every cron.
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &WEEKDAY_NAMES,
};

/// A cron expression: `minute hour day-of-month month day-of-week`, or with
/// six fields `second minute hour day-of-month month day-of-week` (as
/// Quartz and most cron libraries read six fields), for jobs more frequent
/// than once a minute.
///
/// Each field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or
/// `a/n` (from `a` to the field's end), or a comma-separated list of these.
/// Months may be named `jan`-`dec` and weekdays `sun`-`sat` (any case);
/// weekday 0 and 7 are both Sunday. The aliases `@yearly` (`@annually`),
/// `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly` stand for
/// their usual expressions.
///
/// As in Vixie cron, when both the day of month and the day of week are
/// restricted (neither field starts with `*`), a day matches if *either*
/// does: `0 0 1 * mon` runs on the first of the month and on Mondays.
///
/// Expressions that can never run, such as `0 0 30 feb *`, are rejected.
///
/// # Daylight-saving time
///
/// Times are found in the time zone's civil calendar, so a job keeps its
/// wall-clock time across changes, with the rule cron implementations share:
/// a time the spring change skips (02:30 when clocks jump from 02:00 to
/// 03:00) runs once, at the instant of the change; a time the autumn change
/// repeats (02:30 when clocks fall back from 03:00 to 02:00) runs once, at
/// its first occurrence.
///
/// ```
/// use drkit::Cron;
///
/// let cron: Cron = "0 */6 * * *".parse()?;
/// let after: jiff::Zoned = "2026-11-21T13:05:00+01:00[Europe/Berlin]".parse().unwrap();
/// let next = cron.next_after(&after).unwrap();
/// assert_eq!(next.to_string(), "2026-11-21T18:00:00+01:00[Europe/Berlin]");
/// assert!("0 0 30 feb *".parse::<Cron>().is_err());
/// # Ok::<(), drkit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cron {
    text: String,
    /// Bit `s` for second `s`; only bit 0 for five fields.
    seconds: u64,
    /// Bit `m` for minute `m`.
    minutes: u64,
    hours: u64,
    /// Bit `d` for day `d` (1-31).
    days: u64,
    /// Bit `m` for month `m` (1-12).
    months: u64,
    /// Bit `d` for weekday `d`, 0 = Sunday.
    weekdays: u64,
    /// Both day fields are restricted: a day matches if either does.
    either_day: bool,
}

impl Cron {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` that the expression matches, in
    /// `after`'s time zone, at a whole minute (a whole second with six
    /// fields); daylight-saving changes are
    /// handled as the [type's docs](Cron#daylight-saving-time) say. `None` if there is none
    /// before the end of the calendar jiff supports.
    pub fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        let tz = after.time_zone();
        let instant = after.timestamp();
        let start = after.datetime();
        let start_second = start
            .date()
            .at(start.hour(), start.minute(), start.second(), 0);
        let mut date = start.date();
        let end = date.year().checked_add(SEARCH_YEARS)?;
        while date.year() <= end {
            if !bit(self.months, date.month()) {
                date = first_of_next_month(date)?;
                continue;
            }
            if self.day_matches(date) {
                for hour in bits(self.hours) {
                    for minute in bits(self.minutes) {
                        for second in bits(self.seconds) {
                            let civil = date.at(hour, minute, second, 0);
                            // Earlier civil times ran before `after` (or, in a
                            // repeated hour, at their first occurrence).
                            if civil < start_second {
                                continue;
                            }
                            let Some(run) = first_instant(tz, civil) else {
                                continue;
                            };
                            if run > instant {
                                return Some(run.to_zoned(tz.clone()));
                            }
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// Whether the civil time `at` (its minute, and its second with six
    /// fields) is one the expression names.
    pub fn matches(&self, at: DateTime) -> bool {
        bit(self.seconds, at.second())
            && bit(self.months, at.month())
            && self.day_matches(at.date())
            && bit(self.hours, at.hour())
            && bit(self.minutes, at.minute())
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = bit(self.days, date.day());
        let weekday = bit(self.weekdays, date.weekday().to_sunday_zero_offset());
        if self.either_day {
            day || weekday
        } else {
            day && weekday
        }
    }
}

/// The instant a civil time runs at in `tz`: its only instant, the first of
/// two in a repeated hour, or the instant of the change for a skipped time.
fn first_instant(tz: &TimeZone, civil: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, a skipped time is an instant just
            // before the change; the change is the next transition.
            let early = after.to_timestamp(civil).ok()?;
            tz.following(early).next().map(|t| t.timestamp())
        }
    }
}

fn first_of_next_month(date: Date) -> Option<Date> {
    date.first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .ok()
}

fn bit<N: Into<i64>>(mask: u64, n: N) -> bool {
    let n: i64 = n.into();
    (0..64).contains(&n) && mask & (1 << n) != 0
}

/// The set bits of `mask`, lowest first, as `i8` (every field fits).
fn bits(mask: u64) -> impl Iterator<Item = i8> {
    (0i8..64).filter(move |&n| mask & (1 << n) != 0)
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: "cron expression",
        input: input.to_owned(),
        reason: reason.into(),
    }
}

impl FromStr for Cron {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let text = s.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            alias if alias.starts_with('@') => {
                return Err(invalid(
                    s,
                    "unknown alias; expected @yearly, @monthly, @weekly, @daily or @hourly",
                ));
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, [minute, hour, day, month, weekday]) = match fields[..] {
            [minute, hour, day, month, weekday] => ("0", [minute, hour, day, month, weekday]),
            [second, minute, hour, day, month, weekday] => {
                (second, [minute, hour, day, month, weekday])
            }
            _ => {
                return Err(invalid(
                    s,
                    format!(
                        "expected 5 fields (minute hour day-of-month month day-of-week) \
                         or 6 with seconds first, found {}",
                        fields.len()
                    ),
                ));
            }
        };
        let field = |text: &str, spec: &Field| parse_field(text, spec).map_err(|r| invalid(s, r));
        let mut weekdays = field(weekday, &WEEKDAY)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let cron = Cron {
            text: text.to_owned(),
            seconds: field(second, &SECOND)?,
            minutes: field(minute, &MINUTE)?,
            hours: field(hour, &HOUR)?,
            days: field(day, &DAY)?,
            months: field(month, &MONTH)?,
            weekdays,
            either_day: !day.starts_with('*') && !weekday.starts_with('*'),
        };
        if !cron.either_day && !cron.some_month_has_a_day() {
            return Err(invalid(
                s,
                "the day of month never falls in the selected months, so it never runs",
            ));
        }
        Ok(cron)
    }
}

impl Cron {
    /// Whether some selected month has some selected day (February with 29).
    fn some_month_has_a_day(&self) -> bool {
        const LONGEST: [i8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1i8..=12).any(|month| {
            bit(self.months, month)
                && (1..=LONGEST[usize::from(month.unsigned_abs() - 1)]).any(|d| bit(self.days, d))
        })
    }
}

fn parse_field(text: &str, spec: &Field) -> std::result::Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty item in the {} list {text:?}", spec.name));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u8 = step
                    .parse()
                    .map_err(|_| format!("step {step:?} of the {} is not a number", spec.name))?;
                if step == 0 {
                    return Err(format!("step 0 in the {}", spec.name));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, spec)?, value(high, spec)?)
        } else {
            let v = value(range, spec)?;
            (v, if step.is_some() { spec.max } else { v })
        };
        if low > high {
            return Err(format!("the {} range {range:?} runs backwards", spec.name));
        }
        let step = step.unwrap_or(1);
        let mut v = low;
        while v <= high {
            mask |= 1 << v;
            v = match v.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
    }
    Ok(mask)
}

fn value(text: &str, spec: &Field) -> std::result::Result<u8, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|name| *name == lower) {
        // Names start at the field's minimum; there are at most 12.
        return Ok(spec.min + i as u8);
    }
    let v: u8 = text.parse().map_err(|_| {
        if spec.names.is_empty() {
            format!("{} {text:?} is not a number", spec.name)
        } else {
            format!(
                "{} {text:?} is neither a number nor a name ({}-{})",
                spec.name,
                spec.names[0],
                spec.names[spec.names.len() - 1]
            )
        }
    })?;
    if v < spec.min || v > spec.max {
        return Err(format!(
            "{} {v} is out of range {}-{}",
            spec.name, spec.min, spec.max
        ));
    }
    Ok(v)
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Cron {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e: Error| {
            de::Error::custom(format!(
                "{e}; expected a cron expression such as \"0 2 * * *\" \
                 (minute hour day-of-month month day-of-week, optionally seconds first)"
            ))
        })
    }
}

/// A cron expression in an IANA time zone.
///
/// ```
/// use drkit::Schedule;
///
/// let nightly = Schedule::new("0 2 * * *".parse()?, "Europe/Berlin")?;
/// let now: jiff::Zoned = "2026-03-28T12:00:00Z[UTC]".parse().unwrap();
/// // 02:00 does not exist on 2026-03-29 in Berlin: the job runs at the change.
/// let next = nightly.next_after(&now).unwrap();
/// assert_eq!(next.to_string(), "2026-03-29T03:00:00+02:00[Europe/Berlin]");
/// # Ok::<(), drkit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    cron: Cron,
    time_zone: TimeZone,
    zone_name: String,
}

impl Schedule {
    /// `cron` in the IANA time zone `time_zone` (`UTC`, `Europe/Berlin`).
    ///
    /// # Errors
    /// [`Error::Invalid`] if the time zone is not in the IANA database.
    pub fn new(cron: Cron, time_zone: &str) -> Result<Self> {
        let zone = TimeZone::get(time_zone).map_err(|e| Error::Invalid {
            what: "time zone",
            input: time_zone.to_owned(),
            reason: format!("{e}; expected an IANA name such as \"UTC\" or \"Europe/Berlin\""),
        })?;
        Ok(Self {
            cron,
            time_zone: zone,
            zone_name: time_zone.to_owned(),
        })
    }

    /// A schedule from a zone already looked up, with its name.
    pub(crate) fn from_parts(cron: Cron, time_zone: TimeZone, zone_name: String) -> Self {
        Self {
            cron,
            time_zone,
            zone_name,
        }
    }

    /// `cron` in UTC.
    pub fn utc(cron: Cron) -> Self {
        Self {
            cron,
            time_zone: TimeZone::UTC,
            zone_name: "UTC".to_owned(),
        }
    }

    /// The cron expression.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// The time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// The time zone's name as configured.
    pub fn time_zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The next run strictly after `after`, in the schedule's time zone.
    pub fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        self.cron
            .next_after(&after.with_time_zone(self.time_zone.clone()))
    }

    /// The next run strictly after the instant `after`.
    pub fn next_after_timestamp(&self, after: Timestamp) -> Option<Zoned> {
        self.cron
            .next_after(&after.to_zoned(self.time_zone.clone()))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.cron, self.zone_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::ToSpan;
    use proptest::prelude::*;

    fn cron(s: &str) -> Cron {
        s.parse().unwrap()
    }

    fn zoned(s: &str) -> Zoned {
        s.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    /// The runs of `cron` after `after`, `n` of them, as strings.
    fn runs(cron: &Cron, after: &Zoned, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = after.clone();
        for _ in 0..n {
            at = cron.next_after(&at).unwrap();
            out.push(at.to_string());
        }
        out
    }

    /// The reference: every minute instant after `after`, up to `limit`
    /// minutes, judged on its own. An instant runs if its civil time matches
    /// and this is the civil time's first occurrence, or if it ends a skipped
    /// stretch of civil time in which some minute matches.
    fn brute_force(cron: &Cron, after: &Zoned, limit: i64) -> Option<Zoned> {
        let tz = after.time_zone().clone();
        let seconds = after.timestamp().as_second();
        let mut t = Timestamp::from_second(seconds - seconds.rem_euclid(60)).unwrap();
        for _ in 0..limit {
            t = t.checked_add(1.minute()).unwrap();
            let civil = t.to_zoned(tz.clone()).datetime();
            let first = match tz.to_ambiguous_timestamp(civil).offset() {
                AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil).unwrap() == t,
                _ => true,
            };
            if first && cron.matches(civil) {
                return Some(t.to_zoned(tz));
            }
            let previous = t
                .checked_sub(1.minute())
                .unwrap()
                .to_zoned(tz.clone())
                .datetime();
            let mut skipped = previous.checked_add(1.minute()).unwrap();
            while skipped < civil {
                if cron.matches(skipped) {
                    return Some(t.to_zoned(tz));
                }
                skipped = skipped.checked_add(1.minute()).unwrap();
            }
        }
        None
    }

    #[test]
    fn the_seeds_expressions() {
        let daily = cron("0 2 * * *");
        let after = zoned("2026-11-21T14:30:00+07:00[Asia/Jakarta]");
        assert_eq!(
            runs(&daily, &after, 2),
            [
                "2026-11-22T02:00:00+07:00[Asia/Jakarta]",
                "2026-11-23T02:00:00+07:00[Asia/Jakarta]"
            ]
        );
        let six_hourly = cron("0 */6 * * *");
        let after = zoned("2026-11-21T05:59:59Z[UTC]");
        assert_eq!(
            runs(&six_hourly, &after, 5),
            [
                "2026-11-21T06:00:00+00:00[UTC]",
                "2026-11-21T12:00:00+00:00[UTC]",
                "2026-11-21T18:00:00+00:00[UTC]",
                "2026-11-22T00:00:00+00:00[UTC]",
                "2026-11-22T06:00:00+00:00[UTC]",
            ]
        );
        // Strictly after: a run at exactly `after` is not the next one.
        let at_six = zoned("2026-11-21T06:00:00Z[UTC]");
        assert_eq!(
            six_hourly.next_after(&at_six).unwrap().to_string(),
            "2026-11-21T12:00:00+00:00[UTC]"
        );
    }

    #[test]
    fn spring_change_2026_in_berlin_runs_skipped_times_once_at_the_change() {
        // 2026-03-29: at 02:00 CET clocks jump to 03:00 CEST (01:00 UTC).
        let tz = berlin();
        let after = zoned("2026-03-28T12:00:00+01:00[Europe/Berlin]");
        for expr in ["0 2 * * *", "30 2 * * *", "59 2 * * *"] {
            let next = cron(expr).next_after(&after).unwrap();
            assert_eq!(
                next.to_string(),
                "2026-03-29T03:00:00+02:00[Europe/Berlin]",
                "{expr}"
            );
            assert_eq!(next.timestamp(), "2026-03-29T01:00:00Z".parse().unwrap());
            // The day after, the usual time again.
            let following = cron(expr).next_after(&next).unwrap();
            assert_eq!(following.date(), jiff::civil::date(2026, 3, 30), "{expr}");
            assert_eq!(following.time_zone(), &tz);
        }
        // Every minute of the skipped hour plus 03:00 itself: one run at 03:00.
        let busy = cron("* 2,3 * * *");
        let after = zoned("2026-03-29T01:59:00+01:00[Europe/Berlin]");
        assert_eq!(
            runs(&busy, &after, 3),
            [
                "2026-03-29T03:00:00+02:00[Europe/Berlin]",
                "2026-03-29T03:01:00+02:00[Europe/Berlin]",
                "2026-03-29T03:02:00+02:00[Europe/Berlin]",
            ]
        );
        // Hourly: 01:00, then 03:00 (for 02:00 and 03:00 at once), then 04:00.
        let hourly = cron("@hourly");
        let after = zoned("2026-03-29T00:30:00+01:00[Europe/Berlin]");
        assert_eq!(
            runs(&hourly, &after, 3),
            [
                "2026-03-29T01:00:00+01:00[Europe/Berlin]",
                "2026-03-29T03:00:00+02:00[Europe/Berlin]",
                "2026-03-29T04:00:00+02:00[Europe/Berlin]",
            ]
        );
    }

    #[test]
    fn autumn_change_2026_in_berlin_runs_repeated_times_once_the_first() {
        // 2026-10-25: at 03:00 CEST clocks fall back to 02:00 CET (01:00 UTC).
        let after = zoned("2026-10-24T12:00:00+02:00[Europe/Berlin]");
        let job = cron("30 2 * * *");
        assert_eq!(
            runs(&job, &after, 2),
            [
                "2026-10-25T02:30:00+02:00[Europe/Berlin]",
                "2026-10-26T02:30:00+01:00[Europe/Berlin]",
            ]
        );
        // From inside the second 02:xx, the repeated 02:30 has already run.
        let second_pass = zoned("2026-10-25T02:10:00+01:00[Europe/Berlin]");
        assert_eq!(
            job.next_after(&second_pass).unwrap().to_string(),
            "2026-10-26T02:30:00+01:00[Europe/Berlin]"
        );
        // From inside the first 02:xx, before 02:30: the first 02:30.
        let first_pass = zoned("2026-10-25T02:10:00+02:00[Europe/Berlin]");
        assert_eq!(
            job.next_after(&first_pass).unwrap().to_string(),
            "2026-10-25T02:30:00+02:00[Europe/Berlin]"
        );
        // Hourly: 02:00 runs once, then 03:00 CET, two hours later.
        let hourly = cron("0 * * * *");
        let after = zoned("2026-10-25T01:30:00+02:00[Europe/Berlin]");
        assert_eq!(
            runs(&hourly, &after, 3),
            [
                "2026-10-25T02:00:00+02:00[Europe/Berlin]",
                "2026-10-25T03:00:00+01:00[Europe/Berlin]",
                "2026-10-25T04:00:00+01:00[Europe/Berlin]",
            ]
        );
    }

    #[test]
    fn schedules_convert_into_their_zone() {
        let nightly = Schedule::new(cron("0 2 * * *"), "Europe/Berlin").unwrap();
        let now = zoned("2026-11-21T01:30:00Z[UTC]");
        assert_eq!(
            nightly.next_after(&now).unwrap().to_string(),
            "2026-11-22T02:00:00+01:00[Europe/Berlin]"
        );
        assert_eq!(
            nightly
                .next_after_timestamp("2026-11-21T00:30:00Z".parse().unwrap())
                .unwrap()
                .to_string(),
            "2026-11-21T02:00:00+01:00[Europe/Berlin]"
        );
        assert_eq!(nightly.to_string(), "0 2 * * * (Europe/Berlin)");
        assert!(Schedule::new(cron("0 2 * * *"), "Europe/Atlantis").is_err());
        assert_eq!(Schedule::utc(cron("@daily")).time_zone_name(), "UTC");
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let c = cron("5,10-12,50-59/4 9-17/2 * jan-mar,DEC mon-fri");
        let monday = jiff::civil::date(2026, 1, 5);
        assert!(c.matches(monday.at(9, 5, 0, 0)));
        assert!(c.matches(monday.at(11, 11, 0, 0)));
        assert!(c.matches(monday.at(17, 58, 0, 0)));
        assert!(!c.matches(monday.at(17, 59, 0, 0)));
        assert!(!c.matches(monday.at(10, 5, 0, 0)));
        assert!(
            !c.matches(jiff::civil::date(2026, 1, 4).at(9, 5, 0, 0)),
            "Sunday"
        );
        assert!(
            !c.matches(jiff::civil::date(2026, 4, 6).at(9, 5, 0, 0)),
            "April"
        );
        assert!(c.matches(jiff::civil::date(2026, 12, 7).at(9, 5, 0, 0)));
        // 7 is Sunday; `a/n` runs to the field's end.
        assert!(cron("0 0 * * 7").matches(jiff::civil::date(2026, 1, 4).at(0, 0, 0, 0)));
        assert!(cron("45/5 * * * *").matches(jiff::civil::date(2026, 1, 4).at(3, 55, 0, 0)));
        // Both day fields restricted: either matches.
        let either = cron("0 0 13 * fri");
        assert!(either.matches(jiff::civil::date(2026, 1, 13).at(0, 0, 0, 0)));
        assert!(either.matches(jiff::civil::date(2026, 1, 16).at(0, 0, 0, 0)));
        assert!(!either.matches(jiff::civil::date(2026, 1, 14).at(0, 0, 0, 0)));
        // One starts with `*`: both must.
        let both = cron("0 0 */2 * fri");
        assert!(!both.matches(jiff::civil::date(2026, 1, 16).at(0, 0, 0, 0)));
        assert!(both.matches(jiff::civil::date(2026, 1, 23).at(0, 0, 0, 0)));
        for (alias, expr) in [
            ("@yearly", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            let a = cron(alias);
            let e = cron(expr);
            assert_eq!(
                (a.minutes, a.hours, a.days, a.months, a.weekdays),
                (e.minutes, e.hours, e.days, e.months, e.weekdays)
            );
            assert_eq!(a.to_string(), alias);
        }
    }

    #[test]
    fn leap_days_are_found_years_ahead() {
        let c = cron("0 0 29 2 *");
        let after = zoned("2097-03-01T00:00:00Z[UTC]");
        assert_eq!(
            c.next_after(&after).unwrap().to_string(),
            "2104-02-29T00:00:00+00:00[UTC]"
        );
    }

    #[test]
    fn six_fields_start_with_seconds() {
        let every_five = cron("*/5 * * * * *");
        let after = zoned("2026-11-21T23:59:52.5Z[UTC]");
        assert_eq!(
            runs(&every_five, &after, 3),
            [
                "2026-11-21T23:59:55+00:00[UTC]",
                "2026-11-22T00:00:00+00:00[UTC]",
                "2026-11-22T00:00:05+00:00[UTC]"
            ]
        );
        let at_thirty = cron("30 0 2 * * *");
        let after = zoned("2026-11-21T02:00:30Z[UTC]");
        assert_eq!(
            runs(&at_thirty, &after, 1),
            ["2026-11-22T02:00:30+00:00[UTC]"]
        );
        assert!(at_thirty.matches("2026-11-21T02:00:30".parse().unwrap()));
        assert!(!at_thirty.matches("2026-11-21T02:00:00".parse().unwrap()));
        // Five fields run at second 0 only.
        assert!(!cron("* * * * *").matches("2026-11-21T02:00:01".parse().unwrap()));
        // Seconds skipped by the spring change run once, at the change.
        let tz = berlin();
        let every_second_at_two = cron("* 30 2 * * *");
        let after = zoned("2026-03-29T01:59:00+01:00[Europe/Berlin]").with_time_zone(tz);
        assert_eq!(
            runs(&every_second_at_two, &after, 2),
            [
                "2026-03-29T03:00:00+02:00[Europe/Berlin]",
                "2026-03-30T02:30:00+02:00[Europe/Berlin]"
            ]
        );
        let err = "60 * * * * *".parse::<Cron>().unwrap_err().to_string();
        assert!(err.contains("second 60 is out of range 0-59"), "{err}");
    }

    #[test]
    fn bad_expressions_say_why() {
        for (expr, reason) in [
            ("0 2 * *", "expected 5 fields"),
            ("0 0 2 * * * *", "or 6 with seconds first, found 7"),
            ("60 2 * * *", "minute 60 is out of range 0-59"),
            ("0 24 * * *", "hour 24 is out of range 0-23"),
            ("0 0 0 * *", "day of month 0 is out of range 1-31"),
            ("0 0 * 13 *", "month 13 is out of range 1-12"),
            ("0 0 * * 8", "day of week 8 is out of range 0-7"),
            ("0 0 * foo *", "neither a number nor a name (jan-dec)"),
            ("*/0 * * * *", "step 0"),
            ("5-1 * * * *", "runs backwards"),
            ("1,,2 * * * *", "empty item"),
            ("@often", "unknown alias"),
            ("0 0 30 2 *", "never runs"),
            ("0 0 31 apr,jun *", "never runs"),
        ] {
            let err = expr.parse::<Cron>().unwrap_err().to_string();
            assert!(err.contains(reason), "{expr}: {err}");
        }
        // Restricted weekdays rescue an impossible day: either may match.
        assert!("0 0 30 2 mon".parse::<Cron>().is_ok());
    }

    fn field_strategy(min: u8, max: u8) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (min..=max).prop_map(|v| v.to_string()),
            (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1u8..=max.max(1)).prop_map(|s| format!("*/{s}")),
            prop::collection::vec(min..=max, 1..4)
                .prop_map(|v| { v.iter().map(u8::to_string).collect::<Vec<_>>().join(",") }),
        ]
    }

    /// Expressions that run often enough for the reference to find a run
    /// within a few days: any minute and hour, days mostly unrestricted.
    fn frequent_cron() -> impl Strategy<Value = Cron> {
        (
            field_strategy(0, 59),
            field_strategy(0, 23),
            prop_oneof![3 => Just("*".to_owned()), 1 => field_strategy(1, 31)],
            prop_oneof![3 => Just("*".to_owned()), 1 => field_strategy(0, 7)],
        )
            .prop_filter_map("never runs", |(m, h, d, w)| {
                format!("{m} {h} {d} * {w}").parse().ok()
            })
    }

    /// Instants in 2026, a third of them within two days of a change.
    fn instant_2026() -> impl Strategy<Value = Timestamp> {
        let spring = Timestamp::from_second(1_774_746_000).unwrap(); // 2026-03-29T01:00Z
        let autumn = Timestamp::from_second(1_792_890_000).unwrap(); // 2026-10-25T01:00Z
        prop_oneof![
            (0i64..365 * 86_400).prop_map(|s| Timestamp::from_second(1_767_225_600 + s).unwrap()),
            (-2 * 86_400i64..2 * 86_400)
                .prop_map(move |s| spring.checked_add(s.seconds()).unwrap()),
            (-2 * 86_400i64..2 * 86_400)
                .prop_map(move |s| autumn.checked_add(s.seconds()).unwrap()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn agrees_with_minute_by_minute_search(
            cron in frequent_cron(),
            at in instant_2026(),
            in_berlin in any::<bool>(),
        ) {
            let tz = if in_berlin { berlin() } else { TimeZone::UTC };
            let after = at.to_zoned(tz);
            const LIMIT: i64 = 40 * 24 * 60;
            let fast = cron.next_after(&after);
            match brute_force(&cron, &after, LIMIT) {
                Some(expected) => prop_assert_eq!(fast, Some(expected), "{}", cron),
                None => {
                    let horizon = after.timestamp().checked_add((LIMIT * 60).seconds()).unwrap();
                    prop_assert!(fast.is_none_or(|z| z.timestamp() > horizon), "{}", cron);
                }
            }
        }

        #[test]
        fn parser_never_panics(text in "[0-9*/,a-z@ -]{0,24}") {
            let _ = text.parse::<Cron>();
        }
    }
}
