//! Listing snapshots by component, time and labels, and forgetting the ones
//! a retention policy does not keep. Forgetting deletes snapshot files only;
//! [`Repository::prune`] then removes the data nothing refers to any more.

use std::collections::{BTreeMap, HashSet};

use dr_core::{ComponentId, Labels, Manifest, SnapshotId};
use jiff::Timestamp;

use super::{Repository, snapshot_key};
use crate::error::{Error, Result};
use dr_core::{Candidate, KeepReason, RetentionPolicy};

/// Which snapshots to list or forget. Empty matches every snapshot; each
/// setting narrows it. Times are the snapshots' start times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    component: Option<ComponentId>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    labels: Labels,
}

impl SnapshotFilter {
    /// Matches every snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only the snapshots of `component`.
    #[must_use]
    pub fn component(mut self, component: ComponentId) -> Self {
        self.component = Some(component);
        self
    }

    /// Only snapshots started at or after `at`.
    #[must_use]
    pub fn since(mut self, at: Timestamp) -> Self {
        self.since = Some(at);
        self
    }

    /// Only snapshots started before `at`.
    #[must_use]
    pub fn until(mut self, at: Timestamp) -> Self {
        self.until = Some(at);
        self
    }

    /// Only snapshots labelled `key=value` (every label given must match).
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Whether `manifest` matches.
    pub fn matches(&self, manifest: &Manifest) -> bool {
        self.component
            .as_ref()
            .is_none_or(|c| *c == manifest.component)
            && self.since.is_none_or(|t| manifest.started_at >= t)
            && self.until.is_none_or(|t| manifest.started_at < t)
            && self
                .labels
                .iter()
                .all(|(k, v)| manifest.labels.get(k) == Some(v))
    }
}

/// What a retention policy does to the snapshots a filter selects, worked
/// out by [`Repository::plan_forget`] and carried out by [`Repository::forget`].
#[derive(Debug, Clone, Default)]
pub struct ForgetPlan {
    /// Snapshots kept, with the rules that keep them, oldest first.
    pub keep: Vec<(Manifest, Vec<KeepReason>)>,
    /// Snapshots to forget, oldest first.
    pub forget: Vec<Manifest>,
}

/// What [`Repository::forget`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    /// Snapshots forgotten.
    pub forgotten: Vec<SnapshotId>,
    /// Snapshots the policy let go but Object Lock still retains; a later
    /// forget, after their retention ends, removes them.
    pub retained: Vec<SnapshotId>,
}

impl Repository {
    /// The committed snapshots `filter` matches, oldest first.
    ///
    /// # Errors
    /// The store failed or a snapshot file is damaged.
    pub async fn snapshots_matching(&self, filter: &SnapshotFilter) -> Result<Vec<Manifest>> {
        let mut all = self.all_snapshots().await?;
        all.retain(|m| filter.matches(m));
        Ok(all)
    }

    /// Applies `policy` to the snapshots `filter` matches, separately for
    /// each component (a policy of "last 7" keeps 7 of each), as of `now`.
    /// Deletes nothing.
    ///
    /// # Errors
    /// `InvalidInput` for an empty policy (it would forget everything); the
    /// store failed or a snapshot file is damaged.
    pub async fn plan_forget(
        &self,
        filter: &SnapshotFilter,
        policy: &RetentionPolicy,
        now: Timestamp,
    ) -> Result<ForgetPlan> {
        if policy.is_empty() {
            return Err(Error::InvalidInput {
                what: "retention policy".into(),
                reason: "it keeps nothing; forget snapshots by id instead".into(),
            });
        }
        let all = self.all_snapshots().await?;
        let mut groups: BTreeMap<ComponentId, Vec<Manifest>> = BTreeMap::new();
        for manifest in all.iter().filter(|m| filter.matches(m)).cloned() {
            groups
                .entry(manifest.component.clone())
                .or_default()
                .push(manifest);
        }
        let mut plan = ForgetPlan::default();
        for manifests in groups.into_values() {
            let candidates: Vec<Candidate> = manifests
                .iter()
                .map(|m| Candidate {
                    id: m.id,
                    at: m.started_at,
                })
                .collect();
            let decisions = policy.apply(&candidates, now);
            for (manifest, decision) in manifests.into_iter().zip(decisions) {
                debug_assert_eq!(manifest.id, decision.id);
                if decision.keep {
                    plan.keep.push((manifest, decision.reasons));
                } else {
                    plan.forget.push(manifest);
                }
            }
        }
        keep_dependencies(&mut plan, &all);
        plan.keep.sort_by_key(|(m, _)| m.id);
        plan.forget.sort_by_key(|m| m.id);
        Ok(plan)
    }

    /// Forgets the snapshots `plan` lets go (under an exclusive lock).
    ///
    /// # Errors
    /// The lock could not be taken or the store failed.
    pub async fn forget(&self, plan: &ForgetPlan) -> Result<ForgetReport> {
        let ids: Vec<SnapshotId> = plan.forget.iter().map(|m| m.id).collect();
        self.forget_snapshots(&ids).await
    }

    /// Forgets the given snapshots (under an exclusive lock). Ids of
    /// snapshots that do not exist are skipped.
    ///
    /// # Errors
    /// `InvalidInput`, forgetting nothing, if a snapshot that stays is
    /// stored against one of them ([`Manifest::depends_on`]); the lock could
    /// not be taken or the store failed.
    pub async fn forget_snapshots(&self, ids: &[SnapshotId]) -> Result<ForgetReport> {
        let lock = self.lock(true, self.lock_wait).await?;
        let gone: HashSet<SnapshotId> = ids.iter().copied().collect();
        let all = match self.all_snapshots().await {
            Ok(all) => all,
            Err(e) => {
                lock.release().await.ok();
                return Err(e);
            }
        };
        if let Some((user, base)) = all.iter().find_map(|m| {
            let base = m.depends_on.filter(|base| gone.contains(base))?;
            (!gone.contains(&m.id)).then_some((m.id, base))
        }) {
            lock.release().await.ok();
            return Err(Error::InvalidInput {
                what: format!("forgetting snapshot {base}"),
                reason: format!("snapshot {user} is stored against it; forget both or neither"),
            });
        }
        let mut report = ForgetReport::default();
        for id in ids {
            match self.inner.backend.delete(&snapshot_key(id)).await {
                Ok(()) => report.forgotten.push(*id),
                Err(Error::Retained { .. }) => report.retained.push(*id),
                Err(e) => {
                    lock.release().await.ok();
                    return Err(e);
                }
            }
        }
        lock.release().await?;
        Ok(report)
    }
}

/// Moves every snapshot a kept one depends on (directly or through others)
/// from `plan.forget` to `plan.keep`, with [`KeepReason::Dependency`].
/// `all` is every snapshot, since one the filter left out may depend on one
/// it selected.
fn keep_dependencies(plan: &mut ForgetPlan, all: &[Manifest]) {
    loop {
        let forgotten: HashSet<SnapshotId> = plan.forget.iter().map(|m| m.id).collect();
        let needed: HashSet<SnapshotId> = all
            .iter()
            .filter(|m| !forgotten.contains(&m.id))
            .filter_map(|m| m.depends_on)
            .filter(|base| forgotten.contains(base))
            .collect();
        if needed.is_empty() {
            return;
        }
        let (kept, forget): (Vec<Manifest>, Vec<Manifest>) = std::mem::take(&mut plan.forget)
            .into_iter()
            .partition(|m| needed.contains(&m.id));
        plan.forget = forget;
        plan.keep
            .extend(kept.into_iter().map(|m| (m, vec![KeepReason::Dependency])));
    }
}
