//! Recovery objectives as DR plans write them: `RTO 30m`, `RPO 1h30m`, tier "critical".

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Units in printing order, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses a duration the way DR plans write one: `30s`, `5m`, `1h30m`, `2 hours`,
/// `< 15 minutes`, `0 minutes`. Components are summed; each is a whole number
/// and a unit. A leading `<` or `<=` ("RPO < 1 hour") is read as the bound itself.
pub(crate) fn parse_duration(what: &'static str, input: &str) -> Result<Duration> {
    let err = |reason| Error::Parse {
        what,
        input: input.to_owned(),
        reason,
    };
    let mut rest = input.trim();
    rest = rest
        .strip_prefix("<=")
        .or_else(|| rest.strip_prefix('<'))
        .unwrap_or(rest)
        .trim_start();
    if rest.is_empty() {
        return Err(err("empty duration"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(err("a number needs a unit (d, h, m, s, ms)"));
        }
        let nanos_per_unit = unit_nanos(&rest[..unit_len]).ok_or(err("unknown unit"))?;
        rest = rest[unit_len..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        total = number
            .checked_mul(nanos_per_unit)
            .and_then(|n| total.checked_add(n))
            .ok_or(err("duration too large"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("duration too large"))?;
    // The remainder is below one second, so it fits in u32.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

fn unit_nanos(unit: &str) -> Option<u128> {
    let unit = unit.to_ascii_lowercase();
    let name = match unit.as_str() {
        "d" | "day" | "days" => "d",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        "m" | "min" | "mins" | "minute" | "minutes" | "menit" => "m",
        "s" | "sec" | "secs" | "second" | "seconds" | "detik" => "s",
        "ms" | "millisecond" | "milliseconds" => "ms",
        "us" | "microsecond" | "microseconds" => "us",
        "ns" | "nanosecond" | "nanoseconds" => "ns",
        "jam" => "h",
        _ => return None,
    };
    UNITS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Prints a duration in the compact form `1d2h30m`, `45s`, `1s500ms`, `0s`.
/// [`parse_duration`] reads it back exactly.
pub(crate) fn format_duration(d: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut rest = d.as_nanos();
    if rest == 0 {
        return f.write_str("0s");
    }
    for (unit, nanos) in UNITS {
        let count = rest / nanos;
        if count > 0 {
            write!(f, "{count}{unit}")?;
            rest -= count * nanos;
        }
    }
    Ok(())
}

macro_rules! objective {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Duration);

        impl $name {
            /// The objective as a duration.
            pub const fn new(duration: Duration) -> Self {
                Self(duration)
            }

            /// Whole minutes.
            pub const fn from_mins(minutes: u64) -> Self {
                Self(Duration::from_secs(minutes * 60))
            }

            /// Whole seconds.
            pub const fn from_secs(seconds: u64) -> Self {
                Self(Duration::from_secs(seconds))
            }

            /// The duration.
            pub const fn as_duration(self) -> Duration {
                self.0
            }
        }

        impl From<Duration> for $name {
            fn from(duration: Duration) -> Self {
                Self(duration)
            }
        }

        impl From<$name> for Duration {
            fn from(value: $name) -> Duration {
                value.0
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                parse_duration($what, s).map(Self)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;

            fn try_from(s: String) -> Result<Self> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                format_duration(self.0, f)
            }
        }
    };
}

objective!(
    /// Recovery time objective: the longest a component may be down, from the
    /// incident until it serves again.
    ///
    /// ```
    /// # use dr_core::Rto;
    /// let rto: Rto = "1h30m".parse()?;
    /// assert_eq!(rto.as_duration().as_secs(), 5400);
    /// assert_eq!(rto.to_string(), "1h30m");
    /// assert_eq!("30 minutes".parse::<Rto>()?, Rto::from_mins(30));
    /// # Ok::<(), dr_core::Error>(())
    /// ```
    Rto,
    "RTO"
);

objective!(
    /// Recovery point objective: the most recent window of data a component
    /// may lose.
    ///
    /// ```
    /// # use dr_core::Rpo;
    /// let rpo: Rpo = "< 15 minutes".parse()?;
    /// assert_eq!(rpo.to_string(), "15m");
    /// assert_eq!("0s".parse::<Rpo>()?, Rpo::from_secs(0));
    /// # Ok::<(), dr_core::Error>(())
    /// ```
    Rpo,
    "RPO"
);

/// The objectives of one component, as a DR plan's table gives them.
/// There is no `Default`: every component's objectives are a business decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// How long recovery may take.
    pub rto: Rto,
    /// How much recent data may be lost.
    pub rpo: Rpo,
}

impl Objectives {
    /// Objectives from an RTO and an RPO.
    pub const fn new(rto: Rto, rpo: Rpo) -> Self {
        Self { rto, rpo }
    }
}

/// The business-impact tier of a DR plan's table ("Critical - Data integrity"),
/// which also orders recovery: critical components first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Outage stops the business (P0).
    Critical,
    /// Outage degrades core functions (P1).
    High,
    /// Outage degrades secondary functions (P2).
    Medium,
    /// Outage is an inconvenience (P3).
    Low,
}

impl Tier {
    /// Every tier, most urgent first.
    pub const ALL: [Tier; 4] = [Tier::Critical, Tier::High, Tier::Medium, Tier::Low];

    /// The lowercase name, as printed and parsed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::High => "high",
            Tier::Medium => "medium",
            Tier::Low => "low",
        }
    }

    /// The incident priority plans attach to the tier (P0 to P3).
    pub const fn priority(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = Error;

    /// Reads `critical`, `Critical`, `Critical - Video streaming`, `P0`, `non-critical`.
    fn from_str(s: &str) -> Result<Self> {
        let head = s
            .split(" - ")
            .next()
            .unwrap_or(s)
            .trim()
            .to_ascii_lowercase();
        let tier = match head.as_str() {
            "critical" | "p0" => Tier::Critical,
            "high" | "p1" => Tier::High,
            "medium" | "p2" => Tier::Medium,
            "low" | "p3" | "non-critical" => Tier::Low,
            _ => {
                return Err(Error::Parse {
                    what: "tier",
                    input: s.to_owned(),
                    reason: "expected critical, high, medium, low or P0-P3",
                });
            }
        };
        Ok(tier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plans_write_durations_many_ways() {
        let cases = [
            ("30s", 30),
            ("5m", 300),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2 hours", 7200),
            ("< 4 hours", 14_400),
            ("<= 1 hour", 3600),
            ("15 minutes", 900),
            ("0 minutes", 0),
            ("1d", 86_400),
            ("1 day, 2 hours", 93_600),
            ("30 menit", 1800),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration("RTO", text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        assert_eq!(
            parse_duration("RTO", "1s500ms").unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn bad_durations_are_rejected_with_the_reason() {
        for (text, reason) in [
            ("", "empty duration"),
            ("<", "empty duration"),
            ("m", "expected a number"),
            ("30", "a number needs a unit (d, h, m, s, ms)"),
            ("5 fortnights", "unknown unit"),
            ("-5m", "expected a number"),
            (
                "99999999999999999999999999999999999999999d",
                "number too large",
            ),
            ("9999999999999999999d", "duration too large"),
        ] {
            match parse_duration("RTO", text) {
                Err(Error::Parse { reason: r, .. }) => assert_eq!(r, reason, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn printing_is_compact() {
        assert_eq!(Rto::from_secs(0).to_string(), "0s");
        assert_eq!(Rto::from_secs(5400).to_string(), "1h30m");
        assert_eq!(Rto::from_secs(93_600).to_string(), "1d2h");
        assert_eq!(Rpo::new(Duration::from_millis(1500)).to_string(), "1s500ms");
    }

    #[test]
    fn objectives_serialize_as_plan_strings() {
        let o = Objectives::new("30m".parse().unwrap(), "15m".parse().unwrap());
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"{"rto":"30m","rpo":"15m"}"#);
        assert_eq!(serde_json::from_str::<Objectives>(&json).unwrap(), o);
        assert!(serde_json::from_str::<Objectives>(r#"{"rto":"30m"}"#).is_err());
        assert!(serde_json::from_str::<Objectives>(r#"{"rto":"x","rpo":"1m"}"#).is_err());
        assert!(
            serde_json::from_str::<Objectives>(r#"{"rto":"1m","rpo":"1m","extra":1}"#).is_err()
        );
    }

    #[test]
    fn tiers_parse_from_plan_tables() {
        assert_eq!(
            "Critical - Video streaming".parse::<Tier>().unwrap(),
            Tier::Critical
        );
        assert_eq!("P1".parse::<Tier>().unwrap(), Tier::High);
        assert_eq!("Non-Critical".parse::<Tier>().unwrap(), Tier::Low);
        assert!("urgent".parse::<Tier>().is_err());
        for tier in Tier::ALL {
            assert_eq!(tier.to_string().parse::<Tier>().unwrap(), tier);
        }
        assert!(Tier::Critical < Tier::Low);
        assert_eq!(Tier::Critical.priority(), 0);
    }

    proptest! {
        #[test]
        fn any_duration_prints_and_parses_back(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let rto = Rto::new(d);
            let printed = rto.to_string();
            prop_assert_eq!(printed.parse::<Rto>().unwrap(), rto);
            let rpo: Rpo = printed.parse().unwrap();
            prop_assert_eq!(rpo.as_duration(), d);
        }

        #[test]
        fn components_sum_in_any_order(h in 0u64..1000, m in 0u64..1000, s in 0u64..1000) {
            let a = parse_duration("RTO", &format!("{h}h{m}m{s}s")).unwrap();
            let b = parse_duration("RTO", &format!("{s} seconds {m} minutes {h} hours")).unwrap();
            prop_assert_eq!(a, b);
            prop_assert_eq!(a, Duration::from_secs(h * 3600 + m * 60 + s));
        }

        #[test]
        fn parser_never_panics(text in "\\PC{0,24}") {
            let _ = parse_duration("RTO", &text);
        }
    }
}
