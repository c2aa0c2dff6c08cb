//! A principal's credentials: made on the client (a fresh key and its certificate signing
//! request, the key never leaving the machine), written to a directory (`ca.pem`,
//! `cert.pem`, `key.pem` 0600) and read back to connect.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::ClientError;

/// A principal's credentials: the domain CA, the certificate and its key (PEM).
#[derive(Clone)]
pub struct Credentials {
    /// Domain CA certificate.
    pub ca_pem: String,
    /// Client certificate.
    pub cert_pem: String,
    /// Client private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Reads `ca.pem`, `cert.pem` and `key.pem` from a directory.
    ///
    /// # Errors
    /// If a file is missing or unreadable.
    pub fn from_dir(dir: &Path) -> Result<Credentials, ClientError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ClientError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        Ok(Credentials {
            ca_pem: read("ca.pem")?,
            cert_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
        })
    }
}

/// A fresh key and CSR for a principal (used by the CLI, and by `init` for the first admin).
///
/// # Errors
/// On key generation failure.
pub fn new_key_and_csr(
    principal_hint: &str,
) -> Result<(zeroize::Zeroizing<String>, String), ClientError> {
    let csr_err = |e: rcgen::Error| ClientError::Csr(e.to_string());
    let key = KeyPair::generate().map_err(csr_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(csr_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, principal_hint);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(csr_err)?;
    Ok((
        zeroize::Zeroizing::new(key.serialize_pem()),
        csr.pem().map_err(csr_err)?,
    ))
}

/// Writes a principal's credentials into `dir` (created if missing): `ca.pem`, `cert.pem`
/// and `key.pem`, the key replaced, created 0600 and synced.
///
/// # Errors
/// On IO failure.
pub fn write_credentials(
    dir: &Path,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), ClientError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ClientError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_pem).map_err(io(&ca_path))?;
    let cert_path = dir.join("cert.pem");
    std::fs::write(&cert_path, cert_pem).map_err(io(&cert_path))?;
    let key_path = dir.join("key.pem");
    let _ = std::fs::remove_file(&key_path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(&key_path))?;
    file.write_all(key_pem.as_bytes()).map_err(io(&key_path))?;
    file.sync_all().map_err(io(&key_path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn written_credentials_read_back_with_the_key_private() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("p_1");
        let (key, csr) = new_key_and_csr("p_1").unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        write_credentials(&creds, "CA", "CERT", &key).unwrap();
        // Written again (a renewed certificate), the key file is replaced.
        write_credentials(&creds, "CA", "CERT2", &key).unwrap();
        let read = Credentials::from_dir(&creds).unwrap();
        assert_eq!(
            (read.ca_pem.as_str(), read.cert_pem.as_str()),
            ("CA", "CERT2")
        );
        assert_eq!(read.key_pem, *key);
        let mode = std::fs::metadata(creds.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{read:?}").contains("PRIVATE KEY"));
        // Two keys are never the same.
        assert_ne!(*new_key_and_csr("p_1").unwrap().0, *key);
    }
}
