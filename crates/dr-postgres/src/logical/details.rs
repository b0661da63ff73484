//! [`LogicalBackupDetails`]: what a logical backup records in its manifest,
//! read back by its verification, its restore and its smoke checks.

use dr_core::{Manifest, SnapshotDetails, StreamName};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What a logical backup snapshot records (see [`SnapshotDetails`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogicalBackupDetails {
    /// The server's version, as it reports it (`server_version`).
    pub server_version: String,
    /// The `pg_dump` that dumped it (`15.18 (Debian 15.18-0+deb12u1)`).
    pub pg_dump_version: String,
    /// Each database dumped, in the order dumped.
    pub databases: Vec<DumpedDatabase>,
    /// The stream holding `pg_dumpall --globals-only` (roles, tablespaces),
    /// when globals were dumped.
    pub globals: Option<StreamName>,
}

/// One database of a logical backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DumpedDatabase {
    /// Its name.
    pub name: String,
    /// The stream holding its `pg_dump --format=custom` archive.
    pub stream: StreamName,
    /// The server's clock when the dump's snapshot was taken: the dump
    /// holds every transaction committed before it.
    pub snapshot_at: Timestamp,
    /// Its tables with data, by schema and name.
    pub tables: Vec<DumpedTable>,
}

/// One table of a dumped database, as the dump's own snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DumpedTable {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Its rows, counted exactly in the dump's snapshot.
    pub rows: u64,
    /// SHA-256 of its definition: columns with types, nullability and
    /// defaults, constraints, and indexes.
    pub fingerprint: String,
    /// Its indexes' names (those behind its constraints too), which a
    /// restore of the table alone brings with it.
    pub indexes: Vec<String>,
    /// The sequences it owns (`serial` and identity columns).
    pub sequences: Vec<String>,
}

impl DumpedTable {
    /// `schema.name`, each part quoted where SQL needs it.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", sql_name(&self.schema), sql_name(&self.name))
    }
}

/// An identifier as SQL reads it: bare when it is lower-case letters,
/// digits and `_` not starting with a digit, else double-quoted.
pub(crate) fn sql_name(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl SnapshotDetails for LogicalBackupDetails {
    const KEY: &'static str = "postgres.logical_backup";
}

impl LogicalBackupDetails {
    /// The details logical backup `manifest` records.
    ///
    /// # Errors
    /// [`dr_core::Error::Corrupt`] if it records none (it is not a logical
    /// backup) or they do not read.
    pub fn of(manifest: &Manifest) -> dr_core::Result<Self> {
        manifest.details()?.ok_or_else(|| {
            dr_core::Error::corrupt(
                format!("snapshot {}", manifest.id),
                format!("not a logical backup: it records no {} details", Self::KEY),
            )
        })
    }

    /// The database named `name`.
    pub fn database(&self, name: &str) -> Option<&DumpedDatabase> {
        self.databases.iter().find(|d| d.name == name)
    }
}
