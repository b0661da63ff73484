//! Health probes: one look at a component (is the primary up, does a
//! replica follow, does the store answer), as a value with its latency, for
//! the monitors that decide on failovers and for status pages.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::id::ComponentId;

/// How a component looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Answering and doing its job.
    Healthy,
    /// Answering, but not as it should (behind, read-only, slow).
    Degraded,
    /// Not answering, or refusing.
    Down,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// The component probed.
    pub component: ComponentId,
    /// How it looked.
    pub state: HealthState,
    /// How long the probe took.
    #[serde(with = "secs")]
    pub latency: Duration,
    /// What was seen, for people ("replica 2 s behind", "connection refused").
    pub detail: String,
    /// When the probe began.
    pub checked_at: Timestamp,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Down => "down",
        };
        write!(
            f,
            "{} {state} in {} ms: {}",
            self.component,
            self.latency.as_millis(),
            self.detail
        )
    }
}

/// Looks at a component once. A probe that cannot reach it answers
/// [`HealthState::Down`] with why, rather than an error: an unreachable
/// component is what probes are for.
#[async_trait]
pub trait Probe: Send + Sync {
    /// The component probed.
    fn component(&self) -> &ComponentId;

    /// Probes once.
    async fn probe(&self) -> Health;
}

/// Durations as seconds (with fractions) in JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Duration::try_from_secs_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The trait is used as `dyn`: this fails to compile if it stops being object-safe.
fn _assert_object_safe(_: &dyn Probe) {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A component that answers until it is stopped.
    struct Switch {
        component: ComponentId,
        up: AtomicBool,
    }

    #[async_trait]
    impl Probe for Switch {
        fn component(&self) -> &ComponentId {
            &self.component
        }

        async fn probe(&self) -> Health {
            let checked_at = Timestamp::now();
            let started = std::time::Instant::now();
            let (state, detail) = if self.up.load(Ordering::SeqCst) {
                (HealthState::Healthy, "answering".to_owned())
            } else {
                (HealthState::Down, "connection refused".to_owned())
            };
            Health {
                component: self.component.clone(),
                state,
                latency: started.elapsed(),
                detail,
                checked_at,
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_component_is_a_down_health_not_an_error() {
        let switch = Switch {
            component: "postgres/main".parse().unwrap(),
            up: AtomicBool::new(true),
        };
        let probes: [&dyn Probe; 1] = [&switch];
        assert_eq!(probes[0].probe().await.state, HealthState::Healthy);
        switch.up.store(false, Ordering::SeqCst);
        let health = probes[0].probe().await;
        assert_eq!(health.state, HealthState::Down);
        assert!(
            health.to_string().starts_with("postgres/main down in "),
            "{health}"
        );
        assert!(
            HealthState::Healthy < HealthState::Degraded
                && HealthState::Degraded < HealthState::Down
        );
        let json = serde_json::to_string(&health).unwrap();
        let back: Health = serde_json::from_str(&json).unwrap();
        // Seconds as a float: to the microsecond.
        assert!(back.latency.abs_diff(health.latency) < Duration::from_micros(1));
        assert_eq!(
            Health {
                latency: health.latency,
                ..back
            },
            health
        );
    }
}
