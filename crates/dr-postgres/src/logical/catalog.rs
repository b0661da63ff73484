//! What a logical backup reads in the database, in the transaction whose
//! snapshot `pg_dump` imports: the snapshot itself, the tables with data,
//! their definitions' fingerprints and their exact row counts.

use dr_core::{Lsn, Position};
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::logical::details::sql_name;
use crate::replication::{Row, SqlClient};

/// A snapshot exported for `pg_dump --snapshot`.
pub(crate) struct ExportedSnapshot {
    /// Its id, as `pg_export_snapshot()` returns it.
    pub(crate) id: String,
    /// The server's clock when it was taken.
    pub(crate) at: Timestamp,
    /// The cluster's position just before it, where the role may read it.
    pub(crate) position: Option<Position>,
}

/// A table whose data `pg_dump` dumps.
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) fingerprint: String,
    /// Its indexes' names (those behind constraints too).
    pub(crate) indexes: Vec<String>,
    /// The sequences it owns (`serial`, identity columns).
    pub(crate) sequences: Vec<String>,
}

/// Opens a repeatable-read, read-only transaction on `sql` and exports its
/// snapshot. The transaction must stay open until `pg_dump` has imported it.
pub(crate) async fn export_snapshot(sql: &mut SqlClient) -> Result<ExportedSnapshot> {
    // Read first, outside the transaction: a role that may not read the
    // control data only loses the position, not the transaction.
    let position = position(sql).await;
    sql.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let rows = sql
        .query(
            "SELECT pg_export_snapshot(),
                    to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .await?;
    let row = one(sql, &rows)?;
    let id = text(sql, row, 0)?.to_owned();
    let at: Timestamp = text(sql, row, 1)?
        .parse()
        .map_err(|e| protocol(sql, format!("clock_timestamp(): {e}")))?;
    Ok(ExportedSnapshot { id, at, position })
}

/// The cluster's position just before the snapshot, where the role may
/// read it: a bonus, since a restore of a dump replays no WAL.
async fn position(sql: &mut SqlClient) -> Option<Position> {
    let rows = sql
        .query(
            "SELECT (SELECT system_identifier FROM pg_control_system()),
                    (SELECT timeline_id FROM pg_control_checkpoint()),
                    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                         ELSE pg_current_wal_lsn() END",
        )
        .await
        .ok()?;
    let row = rows.first()?;
    let lsn: Lsn = row.get_str(2).ok()??.parse().ok()?;
    Some(Position::Postgres {
        system_identifier: row.get_str(0).ok()??.parse().ok()?,
        timeline: row.get_str(1).ok()??.parse().ok()?,
        lsn,
    })
}

/// The tables `pg_dump` dumps the data of, with their fingerprints: ordinary
/// and unlogged tables (partitions included; a partitioned parent has no
/// rows of its own), outside the system schemas and extensions.
pub(crate) async fn tables(sql: &mut SqlClient) -> Result<Vec<Table>> {
    let rows = sql
        .query(
            "SELECT n.nspname, c.relname, encode(sha256(convert_to(
                 coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                      || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                      || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
                                      ', ' ORDER BY a.attnum)
                           FROM pg_attribute a
                           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                 || ' | ' ||
                 coalesce((SELECT string_agg(con.conname || ' ' || pg_get_constraintdef(con.oid), '; '
                                             ORDER BY con.conname)
                           FROM pg_constraint con WHERE con.conrelid = c.oid), '')
                 || ' | ' ||
                 coalesce((SELECT string_agg(pg_get_indexdef(i.indexrelid), '; '
                                             ORDER BY pg_get_indexdef(i.indexrelid))
                           FROM pg_index i WHERE i.indrelid = c.oid), ''),
                 'UTF8')), 'hex'),
                 coalesce((SELECT json_agg(ic.relname ORDER BY ic.relname)
                           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                           WHERE i.indrelid = c.oid), '[]'),
                 coalesce((SELECT json_agg(s.relname ORDER BY s.relname)
                           FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid
                           WHERE dep.classid = 'pg_class'::regclass
                             AND dep.refclassid = 'pg_class'::regclass
                             AND dep.refobjid = c.oid AND s.relkind = 'S'
                             AND dep.deptype IN ('a', 'i')), '[]')
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r'
               AND c.relpersistence <> 't'
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%'
               AND n.nspname NOT LIKE 'pg\\_temp%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend dep
                               WHERE dep.classid = 'pg_class'::regclass
                                 AND dep.objid = c.oid AND dep.deptype = 'e')
             ORDER BY 1, 2",
        )
        .await?;
    rows.iter()
        .map(|row| {
            let names = |column: usize| -> Result<Vec<String>> {
                serde_json::from_str(text(sql, row, column)?)
                    .map_err(|e| protocol(sql, format!("column {column}: {e}")))
            };
            Ok(Table {
                schema: text(sql, row, 0)?.to_owned(),
                name: text(sql, row, 1)?.to_owned(),
                fingerprint: text(sql, row, 2)?.to_owned(),
                indexes: names(3)?,
                sequences: names(4)?,
            })
        })
        .collect()
}

/// The exact row count of `table` (its own rows, not its children's).
pub(crate) async fn count(sql: &mut SqlClient, schema: &str, name: &str) -> Result<u64> {
    let query = format!(
        "SELECT count(*) FROM ONLY {}.{}",
        sql_name(schema),
        sql_name(name)
    );
    let rows = sql.query(&query).await?;
    let row = one(sql, &rows)?;
    text(sql, row, 0)?
        .parse()
        .map_err(|e| protocol(sql, format!("count(*): {e}")))
}

fn one<'a>(sql: &SqlClient, rows: &'a [Row]) -> Result<&'a Row> {
    match rows {
        [row] => Ok(row),
        _ => Err(protocol(
            sql,
            format!("{} rows where one was expected", rows.len()),
        )),
    }
}

fn text<'a>(sql: &SqlClient, row: &'a Row, column: usize) -> Result<&'a str> {
    row.get_str(column)?
        .ok_or_else(|| protocol(sql, format!("column {column} is NULL")))
}

fn protocol(sql: &SqlClient, reason: String) -> Error {
    Error::Protocol {
        addr: sql.addr().to_owned(),
        reason,
    }
}
