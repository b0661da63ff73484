//! [`SqlClient`]: a plain SQL session over the same wire client as the
//! replication connection, so with the same TLS checks and authentication:
//! simple queries with text results, for catalog reads and the exported
//! snapshot of a logical backup.

use crate::error::Result;
use crate::replication::client::major_version;
use crate::replication::conn::Conn;
use crate::replication::row::Row;
use crate::replication::startup::{self, Session};
use crate::replication::tls::Tls;

/// A SQL session on one database (simple query protocol, text results).
pub struct SqlClient {
    conn: Conn,
    database: String,
}

impl std::fmt::Debug for SqlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlClient")
            .field("addr", &self.conn.addr())
            .field("database", &self.database)
            .field("tls", &self.conn.is_tls())
            .finish_non_exhaustive()
    }
}

impl SqlClient {
    /// Connects to `database` with the hosts, user, password and TLS
    /// settings of `config` (its `dbname` is not used), as
    /// [`ReplicationClient::connect`](crate::replication::ReplicationClient::connect) does.
    ///
    /// # Errors
    /// As `ReplicationClient::connect`; [`Error::Server`](crate::Error::Server)
    /// with SQLSTATE `3D000` for a database that does not exist.
    pub async fn connect(
        config: &tokio_postgres::Config,
        tls: &Tls,
        database: &str,
    ) -> Result<Self> {
        let conn = startup::connect_session(config, tls, Session::Database(database)).await?;
        Ok(Self {
            conn,
            database: database.to_owned(),
        })
    }

    /// The database connected to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server's address: `host:port`, or the socket path.
    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// The server's version string, such as `15.18 (Debian 15.18-0+deb12u1)`.
    pub fn server_version(&self) -> Option<&str> {
        self.conn.parameter("server_version")
    }

    /// The server's major version, such as 15.
    pub fn server_major_version(&self) -> Option<u32> {
        major_version(self.server_version()?)
    }

    /// Runs `sql` (one statement or several, `;`-separated) and returns the
    /// rows of every result.
    ///
    /// # Errors
    /// [`Error::Server`](crate::Error::Server) for what the server refused,
    /// [`Error::Io`](crate::Error::Io) if the connection broke.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Row>> {
        self.conn.simple_query(sql).await
    }

    /// Ends the session politely.
    ///
    /// # Errors
    /// The connection broke while saying goodbye.
    pub async fn close(self) -> Result<()> {
        self.conn.terminate().await
    }
}
