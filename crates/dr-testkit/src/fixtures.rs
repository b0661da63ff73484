//! Files the tests share: TLS certificates made for them (see `tls/README.md`).

use std::path::PathBuf;

/// The path of a test TLS file: `ca.pem`, `server.pem` (for `db.internal`,
/// signed by that CA), `other-ca.pem`, `client.pem` and `client.key`.
pub fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tls")
        .join(name)
}
