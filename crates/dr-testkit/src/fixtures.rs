//! Files and data the tests share: TLS certificates made for them (see `tls/README.md`), and
//! bytes that do not compress ([`noise`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The path of a test TLS file: `ca.pem`, `server.pem` (for `db.internal`,
/// signed by that CA), `other-ca.pem`, `client.pem` and `client.key`.
pub fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tls")
        .join(name)
}

/// A CA and a server certificate for `127.0.0.1` signed by it, made for one
/// test ([`make_certificates`]), valid for two days.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM), with `IP:127.0.0.1` as its name.
    pub cert: PathBuf,
    /// The server's private key (PEM, EC P-256).
    pub key: PathBuf,
}

/// Makes [`TestCertificates`] in `dir` with the openssl CLI.
///
/// # Errors
/// openssl is missing or failed.
pub fn make_certificates(dir: &Path) -> Result<TestCertificates> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=drkit test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| Error::io("writing server.ext", e))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )?;
    Ok(TestCertificates {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    })
}

/// Runs the openssl CLI in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|_| Error::MissingBinary {
            binary: "openssl".into(),
            hint: "install it (Debian: apt-get install -y openssl)".into(),
        })?;
    if !output.status.success() {
        return Err(Error::Server {
            server: "openssl".into(),
            reason: format!("{args:?}: {}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(())
}

/// `len` bytes that do not compress and that spread like random bytes,
/// the same for the same `seed` (xorshift64*, its top byte).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}
