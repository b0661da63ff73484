//! One row of a replication command's result, as the server sent it (text format).

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};

/// One row of a replication command's result set. Values are in the server's
/// text format (raw bytes for `TIMELINE_HISTORY`'s content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Option<Bytes>>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Option<Bytes>>) -> Self {
        Self { columns, values }
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the row has no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The column names from the result's row description.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The value at `idx`; `None` if it is NULL or there is no such column.
    pub fn get(&self, idx: usize) -> Option<&[u8]> {
        self.values.get(idx)?.as_deref()
    }

    /// The value at `idx` sharing the message's buffer; `None` as for [`Row::get`].
    pub fn get_bytes(&self, idx: usize) -> Option<Bytes> {
        self.values.get(idx)?.clone()
    }

    /// The value at `idx` as text; `None` as for [`Row::get`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the value is not UTF-8.
    pub fn get_str(&self, idx: usize) -> Result<Option<&str>> {
        self.get(idx)
            .map(|raw| {
                std::str::from_utf8(raw).map_err(|_| Error::InvalidInput {
                    what: "column value",
                    reason: format!("column {idx} is not UTF-8"),
                })
            })
            .transpose()
    }

    /// The value of the column named `name` as text.
    ///
    /// # Errors
    /// As [`Row::get_str`].
    pub fn get_named(&self, name: &str) -> Result<Option<&str>> {
        match self.columns.iter().position(|c| c == name) {
            Some(idx) => self.get_str(idx),
            None => Ok(None),
        }
    }
}
