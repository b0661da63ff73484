//! Logical backups: `pg_dump` of a server's databases streamed into one
//! snapshot, with what the dump saw recorded beside it.
//!
//! - `backup`: [`LogicalBackup`] (dr-core `Backup`), [`Databases`],
//!   [`logical_backups`].
//! - `details`: [`LogicalBackupDetails`], [`DumpedDatabase`], [`DumpedTable`].
//! - `restore`: [`LogicalRestore`] (dr-core `Restore`) into a new
//!   database or over one, whole, a schema or one table ([`Selection`]),
//!   then [`SmokeCheck`]s.
//! - `catalog`: the exported snapshot, the tables and their row counts.
//! - `verify`: [`verify_logical_backup`] and [`LogicalBackupVerifier`]
//!   (dr-core `Verify`): `pg_restore --list` of each stored dump.
//! - `tools`: [`PgTools`] (where `pg_dump` is, its version) and
//!   [`LibpqTls`] (how it connects).

pub(crate) mod archive;
pub(crate) mod backup;
pub(crate) mod catalog;
pub(crate) mod details;
pub(crate) mod restore;
pub(crate) mod tools;
pub(crate) mod verify;

pub use self::backup::{
    Databases, GLOBALS_STREAM, LOGICAL_KIND_LABEL, LogicalBackup, is_logical_backup,
    logical_backups,
};
pub use self::details::{DumpedDatabase, DumpedTable, LogicalBackupDetails};
pub use self::restore::{
    CheckOutcome, LogicalRestore, RestoreInto, Selection, SmokeCheck, SmokeReport, smoke_check,
};
pub use self::tools::{LibpqTls, PgTools};
pub use self::verify::{LogicalBackupVerifier, verify_logical_backup};
