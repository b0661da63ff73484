//! `--to`: what a restore recovers to, as an operator writes it.

use dr_core::{Lsn, RecoveryTarget, SnapshotId};
use jiff::Timestamp;

/// A restore target from the command line, before the facts it needs from
/// the repository (a position's cluster and timeline) are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetArg {
    /// `latest`.
    Latest,
    /// An RFC 3339 time, such as `2026-12-06T14:30:00Z`.
    Time(Timestamp),
    /// `lsn:<lsn>` or `lsn:<lsn>@<timeline>`.
    Lsn { lsn: Lsn, timeline: Option<u32> },
    /// `name:<restore point>`.
    RestorePoint(String),
    /// A snapshot id: that base backup, without replaying WAL.
    Snapshot(SnapshotId),
}

impl std::str::FromStr for TargetArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = "expected latest, a time such as 2026-12-06T14:30:00Z, \
                        lsn:<lsn>[@<timeline>], name:<restore point> or a snapshot id";
        if text == "latest" {
            return Ok(Self::Latest);
        }
        if let Some(rest) = text.strip_prefix("lsn:") {
            let (lsn, timeline) = match rest.split_once('@') {
                Some((lsn, timeline)) => {
                    let timeline = timeline
                        .parse::<u32>()
                        .ok()
                        .filter(|t| *t > 0)
                        .ok_or_else(|| format!("{text:?}: {timeline:?} is not a timeline"))?;
                    (lsn, Some(timeline))
                }
                None => (rest, None),
            };
            let lsn = lsn.parse::<Lsn>().map_err(|e| format!("{text:?}: {e}"))?;
            return Ok(Self::Lsn { lsn, timeline });
        }
        if let Some(name) = text.strip_prefix("name:") {
            if name.is_empty() {
                return Err(format!("{text:?}: the restore point's name is missing"));
            }
            return Ok(Self::RestorePoint(name.to_owned()));
        }
        if let Ok(at) = text.parse::<Timestamp>() {
            return Ok(Self::Time(at));
        }
        if let Ok(id) = text.parse::<SnapshotId>() {
            return Ok(Self::Snapshot(id));
        }
        Err(format!("{text:?}: {expected}"))
    }
}

impl TargetArg {
    /// The target; an LSN instead, which needs the cluster's system
    /// identifier and timeline from the repository to become one.
    pub(crate) fn target(&self) -> Result<RecoveryTarget, (Lsn, Option<u32>)> {
        Ok(match self {
            Self::Latest => RecoveryTarget::Latest,
            Self::Time(at) => RecoveryTarget::Time(*at),
            Self::Lsn { lsn, timeline } => return Err((*lsn, *timeline)),
            Self::RestorePoint(name) => RecoveryTarget::RestorePoint(name.clone()),
            Self::Snapshot(id) => RecoveryTarget::Snapshot(*id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_nonsense_names_the_forms() {
        assert_eq!("latest".parse(), Ok(TargetArg::Latest));
        assert_eq!(
            "lsn:0/3000028".parse(),
            Ok(TargetArg::Lsn {
                lsn: Lsn::new(0x300_0028),
                timeline: None
            })
        );
        assert_eq!(
            "lsn:1/28@2".parse(),
            Ok(TargetArg::Lsn {
                lsn: Lsn::new(0x1_0000_0028),
                timeline: Some(2)
            })
        );
        assert_eq!(
            "name:before-migration".parse(),
            Ok(TargetArg::RestorePoint("before-migration".into()))
        );
        assert!(matches!(
            "2026-12-06T14:30:00Z".parse(),
            Ok(TargetArg::Time(_))
        ));
        for bad in ["", "yesterday", "lsn:", "lsn:0/1@0", "name:", "lsn:xyz"] {
            let err = bad.parse::<TargetArg>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
