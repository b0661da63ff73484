//! Resource backup and restore: Velero's core, embedded. A
//! [`ResourceBackup`] lists what a [`ResourceFilter`] selects through
//! discovery ([`Cluster::discover`](crate::Cluster::discover)) and stores
//! it as one snapshot; a [`ResourceRestore`] puts it back in dependency
//! order, saying what became of every object.

mod archive;
mod backup;
mod clean;
mod discovery;
mod filter;
mod restore;

pub use archive::{BackupContents, LeftOut, StoredObject, TakenResource};
pub use backup::{ResourceBackup, ResourceBackupDetails};
pub use clean::clean_object;
pub use discovery::{Discovered, ResourceType};
pub use filter::{ClusterScoped, ResourceFilter};
pub use restore::{
    ExistingPolicy, FIELD_MANAGER, ObjectOutcome, Outcome, ResourceRestore, ResourceRestoreReport,
    is_resource_backup, read_backup, resource_backups,
};
