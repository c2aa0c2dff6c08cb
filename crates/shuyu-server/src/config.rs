//! The server's typed configuration: built from flags or a TOML file, validated once at
//! start, passed explicitly. `deploy/shuyu.toml` is the documented example (a test parses it).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Result, ServerError};

/// Configuration of `shuyu serve`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The domain's data directory.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Policy file; the built-in `policies/default.toml` when absent.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    /// Largest accepted ingest, in bytes.
    #[serde(default = "default_max_ingest_bytes")]
    pub max_ingest_bytes: usize,
    /// Jobs running at once (the job runtime's worker threads).
    #[serde(default = "default_job_threads")]
    pub job_threads: usize,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:7443".parse().expect("valid address")
}
fn default_max_ingest_bytes() -> usize {
    256 << 20
}
fn default_job_threads() -> usize {
    2
}

impl ServerConfig {
    /// Defaults for a data dir.
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen: default_listen(),
            policy_file: None,
            max_ingest_bytes: default_max_ingest_bytes(),
            job_threads: default_job_threads(),
        }
    }

    /// Parses a TOML configuration.
    ///
    /// # Errors
    /// On unknown keys, bad values or failed validation.
    pub fn from_toml_str(text: &str) -> Result<ServerConfig> {
        let config: ServerConfig = toml::from_str(text)
            .map_err(|e| ServerError::InvalidArgument(format!("configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks value ranges.
    ///
    /// # Errors
    /// Names the offending key.
    pub fn validate(&self) -> Result<()> {
        if self.max_ingest_bytes < 1024 {
            return Err(ServerError::InvalidArgument(
                "configuration: max_ingest_bytes must be at least 1024".into(),
            ));
        }
        if !(1..=64).contains(&self.job_threads) {
            return Err(ServerError::InvalidArgument(
                "configuration: job_threads must be between 1 and 64".into(),
            ));
        }
        Ok(())
    }

    /// The policy in force.
    ///
    /// # Errors
    /// If the policy file cannot be read or is invalid.
    pub fn load_policy(&self) -> Result<shuyu_policy::Policy> {
        match &self.policy_file {
            None => Ok(shuyu_policy::Policy::builtin()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ServerError::InvalidArgument(format!("policy file {}: {e}", path.display()))
                })?;
                shuyu_policy::Policy::from_toml_str(&text).map_err(|e| {
                    ServerError::InvalidArgument(format!("policy file {}: {e}", path.display()))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../deploy/shuyu.toml");
        let config = ServerConfig::from_toml_str(text).expect("example config is valid");
        assert_eq!(config.listen.port(), 7443);
        assert!(config.policy_file.is_some());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = ServerConfig::from_toml_str("data_dir = \"x\"\nlisten_port = 1\n").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
        let err = ServerConfig::from_toml_str("data_dir = \"x\"\njob_threads = 0\n").unwrap_err();
        assert!(err.to_string().contains("job_threads"), "{err}");
    }
}
