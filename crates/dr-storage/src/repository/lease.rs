//! The failover lease on the repository's store (dr-core's
//! [`FailoverLease`]), for monitors that share a repository and nothing
//! else: each grant is a sealed, create-only object
//! `leases/<component>/.<term>`, so of two monitors racing for the same term
//! exactly one wins, and terms only ever grow.
//!
//! The latest term's object says who holds the lease and until when. A grant
//! is taken over once it lapses; renewing is taking the next term while
//! still holding it; releasing writes a next term that has already lapsed,
//! so that a term is never granted twice. Lapse is judged by the clocks of
//! the monitors: keep their clocks in sync and the TTL well above their skew.

use std::time::Duration;

use async_trait::async_trait;
use dr_core::{ComponentId, FailoverLease, LeaseGrant};
use jiff::Timestamp;

use super::Repository;
use crate::backend::{PutOptions, ReadBackendExt};
use crate::error::Error;

const LEASE_CONTEXT: &[u8] = b"drkit failover lease";
/// Older terms kept for the record; the rest are deleted as new ones are granted.
const KEPT_TERMS: u64 = 16;

fn lease_prefix(component: &ComponentId) -> String {
    format!("leases/{}/", component.storage_path())
}

fn term_key(component: &ComponentId, term: u64) -> String {
    // Zero-padded, so that listing order is term order; after a '.', which
    // no segment of a component's storage form starts with, so that no
    // other component's keys can be taken for a term.
    format!("{}.{term:020}", lease_prefix(component))
}

fn refused(component: &ComponentId, reason: String) -> dr_core::Error {
    dr_core::Error::Refused {
        operation: format!("the failover lease of {component}"),
        reason,
    }
}

impl Repository {
    /// The latest grant of `component`'s lease, if any was ever made.
    async fn latest_grant(&self, component: &ComponentId) -> dr_core::Result<Option<LeaseGrant>> {
        let prefix = lease_prefix(component);
        let mut terms: Vec<(u64, String)> = self
            .inner
            .backend
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let term = o.key.strip_prefix(&prefix)?.strip_prefix('.')?;
                Some((term.parse().ok()?, o.key))
            })
            .collect();
        terms.sort();
        let Some((term, key)) = terms.pop() else {
            return Ok(None);
        };
        let raw = self.inner.backend.get_all(&key).await?;
        let grant: LeaseGrant = self.decode(&raw, LEASE_CONTEXT, &key)?;
        if grant.term != term || &grant.component != component {
            return Err(
                Error::corrupt(&key, "holds the grant of another term or component").into(),
            );
        }
        Ok(Some(grant))
    }

    /// Writes the grant of a new term; `Refused` if another took that term first.
    async fn grant(&self, grant: LeaseGrant) -> dr_core::Result<LeaseGrant> {
        let key = term_key(&grant.component, grant.term);
        let bytes = self.encode(&grant, LEASE_CONTEXT)?;
        match self
            .inner
            .backend
            .put(&key, bytes.into(), PutOptions::CREATE)
            .await
        {
            Ok(()) => {}
            Err(Error::AlreadyExists { .. }) => {
                return Err(refused(
                    &grant.component,
                    format!("another holder took term {} first", grant.term),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        if grant.term > KEPT_TERMS {
            // Best effort: an old term left behind changes nothing.
            self.inner
                .backend
                .delete(&term_key(&grant.component, grant.term - KEPT_TERMS))
                .await
                .ok();
        }
        Ok(grant)
    }
}

#[async_trait]
impl FailoverLease for Repository {
    async fn acquire(
        &self,
        component: &ComponentId,
        holder: &str,
        ttl: Duration,
    ) -> dr_core::Result<LeaseGrant> {
        self.writable("taking a failover lease")?;
        let now = Timestamp::now();
        let latest = self.latest_grant(component).await?;
        if let Some(held) = &latest
            && held.holder != holder
            && held.expires_at > now
        {
            return Err(refused(
                component,
                format!(
                    "{} holds it (term {}) until {}",
                    held.holder, held.term, held.expires_at
                ),
            ));
        }
        let expires_at = jiff::SignedDuration::try_from(ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl).ok())
            .ok_or_else(|| dr_core::Error::invalid("lease TTL", "too long"))?;
        self.grant(LeaseGrant {
            component: component.clone(),
            holder: holder.to_owned(),
            term: latest.map_or(1, |l| l.term + 1),
            expires_at,
        })
        .await
    }

    async fn confirm(&self, grant: &LeaseGrant) -> dr_core::Result<()> {
        let latest = self.latest_grant(&grant.component).await?;
        match latest {
            Some(latest) if latest == *grant => {
                if grant.expires_at <= Timestamp::now() {
                    return Err(refused(
                        &grant.component,
                        format!("term {} lapsed at {}", grant.term, grant.expires_at),
                    ));
                }
                Ok(())
            }
            Some(latest) => Err(refused(
                &grant.component,
                format!(
                    "term {} of {} was superseded by term {} of {}",
                    grant.term, grant.holder, latest.term, latest.holder
                ),
            )),
            None => Err(refused(
                &grant.component,
                format!("term {} is not in the store", grant.term),
            )),
        }
    }

    async fn release(&self, grant: &LeaseGrant) -> dr_core::Result<()> {
        match self.latest_grant(&grant.component).await? {
            Some(latest) if latest == *grant => {
                // A next term that has lapsed already: free, and never granted again.
                match self
                    .grant(LeaseGrant {
                        term: grant.term + 1,
                        expires_at: Timestamp::now(),
                        ..grant.clone()
                    })
                    .await
                {
                    Ok(_) => Ok(()),
                    // Someone took the next term: ours is superseded anyway.
                    Err(e) if e.kind() == dr_core::ErrorKind::Refused => Ok(()),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }
}
