//! [`LeaseLock`]: a coordination.k8s.io Lease held by one process at a
//! time, as client-go's leader election holds one: for the failover
//! monitors and the agent, so that two of them never act at once.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// A Lease as read: who holds it and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseRecord {
    /// The holder, or `None` where it was released (or never held).
    pub holder: Option<String>,
    /// How long a holder keeps it without renewing.
    pub duration: Duration,
    /// When the holder took it.
    pub acquired_at: Option<Timestamp>,
    /// When the holder last renewed it.
    pub renewed_at: Option<Timestamp>,
    /// How many times it changed hands.
    pub transitions: i32,
    /// Its resourceVersion: every write is made against it.
    pub resource_version: String,
}

/// What [`LeaseLock::try_acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// This holder has it, renewed now.
    Held(LeaseRecord),
    /// Another holder has it, for at least this long unless it renews.
    Taken {
        /// The holder.
        holder: String,
        /// How long before this lock would take it, if not renewed.
        expires_in: Duration,
    },
}

/// The record of the Lease last seen, and when this process saw it change:
/// a holder's lease runs out a duration after this process last saw it
/// renewed, by this process's clock (client-go's rule: clocks of two
/// machines are never compared).
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renewed_at: Option<Timestamp>,
    at: Instant,
}

/// A Lease (`coordination.k8s.io/v1`) that one holder at a time has, by
/// client-go's leader election algorithm: every write is an update against
/// the resourceVersion read (the server refuses a stale one with 409), and
/// another holder's lease is taken only once it has gone a whole duration
/// unrenewed, as this process saw it. The holder calls
/// [`LeaseLock::try_acquire`] more often than the duration to keep it.
///
/// ```no_run
/// # async fn demo(cluster: dr_k8s::Cluster) -> dr_k8s::Result<()> {
/// use std::time::Duration;
/// use dr_k8s::{Acquired, LeaseLock};
/// let lock = LeaseLock::new(cluster, "drkit", "postgres-failover", "agent-7f9c", Duration::from_secs(15));
/// loop {
///     if let Acquired::Held(_) = lock.try_acquire().await? {
///         // act as the one monitor; renew within 15 s
///     }
///     tokio::time::sleep(Duration::from_secs(5)).await;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct LeaseLock {
    cluster: Cluster,
    namespace: String,
    name: String,
    holder: String,
    duration: Duration,
    observed: Mutex<Option<Observed>>,
}

impl LeaseLock {
    /// The Lease `name` in `namespace`, held as `holder` for `duration`
    /// (whole seconds, at least one) at a time.
    pub fn new(
        cluster: Cluster,
        namespace: impl Into<String>,
        name: impl Into<String>,
        holder: impl Into<String>,
        duration: Duration,
    ) -> Self {
        Self {
            cluster,
            namespace: namespace.into(),
            name: name.into(),
            holder: holder.into(),
            duration: duration.max(Duration::from_secs(1)),
            observed: Mutex::new(None),
        }
    }

    /// Its holder's identity.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the Lease or renews it: creates it where there is none; takes
    /// it where it is released, or where its holder has not renewed it for
    /// a whole duration as this process saw; renews it where this holder
    /// has it. Losing a race to another writer is [`Acquired::Taken`], not
    /// an error.
    ///
    /// # Errors
    /// [`Error::Api`] (403 where the user may not write Leases),
    /// [`Error::Client`].
    pub async fn try_acquire(&self) -> Result<Acquired> {
        let what = format!("acquiring {}", self.describe());
        let api = self.api();
        let now = Timestamp::now();
        let Some(lease) = api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.cluster.failed(&what, e))?
        else {
            let lease = self.lease(None, now, now, 0);
            return match api.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(Acquired::Held(self.record(&created))),
                Err(kube::Error::Api(s)) if s.code == 409 => self.taken_now(&what).await,
                Err(e) => Err(self.cluster.failed(&what, e)),
            };
        };
        let record = self.record(&lease);
        let elapsed = self.observe(&record);
        let mine = record.holder.as_deref() == Some(self.holder.as_str());
        if let Some(holder) = &record.holder
            && !mine
            && elapsed < record.duration
        {
            return Ok(Acquired::Taken {
                holder: holder.clone(),
                expires_in: record.duration - elapsed,
            });
        }
        let (acquired_at, transitions) = if mine {
            (record.acquired_at.unwrap_or(now), record.transitions)
        } else {
            (now, record.transitions + 1)
        };
        let update = self.lease(
            Some(record.resource_version.clone()),
            acquired_at,
            now,
            transitions,
        );
        match api
            .replace(&self.name, &PostParams::default(), &update)
            .await
        {
            Ok(updated) => {
                let record = self.record(&updated);
                self.observe(&record);
                Ok(Acquired::Held(record))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => self.taken_now(&what).await,
            Err(e) => Err(self.cluster.failed(&what, e)),
        }
    }

    /// Gives the Lease up where this holder has it (client-go's release:
    /// no holder, a duration of one second), so that the next holder need
    /// not wait; whether it had it.
    ///
    /// # Errors
    /// [`Error::Api`] (409 where another writer came first),
    /// [`Error::Client`].
    pub async fn release(&self) -> Result<bool> {
        let what = format!("releasing {}", self.describe());
        let api = self.api();
        let Some(lease) = api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.cluster.failed(&what, e))?
        else {
            return Ok(false);
        };
        let record = self.record(&lease);
        if record.holder.as_deref() != Some(self.holder.as_str()) {
            return Ok(false);
        }
        let now = Timestamp::now();
        let mut released = self.lease(Some(record.resource_version), now, now, record.transitions);
        if let Some(spec) = released.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        api.replace(&self.name, &PostParams::default(), &released)
            .await
            .map_err(|e| self.cluster.failed(&what, e))?;
        Ok(true)
    }

    /// The Lease as it is, or `None` where there is none.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Client`].
    pub async fn read(&self) -> Result<Option<LeaseRecord>> {
        let lease = self.api().get_opt(&self.name).await.map_err(|e| {
            self.cluster
                .failed(format!("reading {}", self.describe()), e)
        })?;
        Ok(lease.map(|l| self.record(&l)))
    }

    /// After a lost race: who has it now.
    async fn taken_now(&self, what: &str) -> Result<Acquired> {
        let record = self.read().await?.ok_or_else(|| Error::Unsupported {
            what: what.to_owned(),
            reason: "the Lease was written and deleted at once by another writer".to_owned(),
        })?;
        self.observe(&record);
        Ok(Acquired::Taken {
            holder: record.holder.unwrap_or_default(),
            expires_in: record.duration,
        })
    }

    /// Notes `record`; how long since it was first seen as it is.
    fn observe(&self, record: &LeaseRecord) -> Duration {
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = observed
            .as_ref()
            .is_some_and(|o| o.holder == record.holder && o.renewed_at == record.renewed_at);
        if !same {
            *observed = Some(Observed {
                holder: record.holder.clone(),
                renewed_at: record.renewed_at,
                at: Instant::now(),
            });
        }
        observed.as_ref().map_or(Duration::ZERO, |o| o.at.elapsed())
    }

    fn lease(
        &self,
        resource_version: Option<String>,
        acquired_at: Timestamp,
        renewed_at: Timestamp,
        transitions: i32,
    ) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.holder.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
                ),
                acquire_time: Some(MicroTime(acquired_at)),
                renew_time: Some(MicroTime(renewed_at)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    fn record(&self, lease: &Lease) -> LeaseRecord {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration: Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
            ),
            acquired_at: spec.acquire_time.map(|t| t.0),
            renewed_at: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
            resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
        }
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.cluster.client().clone(), &self.namespace)
    }

    fn describe(&self) -> String {
        format!(
            "lease {} in namespace {} as {}",
            self.name, self.namespace, self.holder
        )
    }
}
