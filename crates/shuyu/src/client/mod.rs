//! The client commands: each reaches the server only through `shuyu-client`, acting as the
//! principal whose credentials directory `--as` names ([`Conn`], given once for every
//! command). `audit verify-checkpoint` and the manifest printing verify offline with
//! `shuyu-verify`.

pub mod cli;
pub mod governance;
pub mod lifecycle;
pub mod oversight;
pub mod render;
pub mod stewardship;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use shuyu_client::{Client, Credentials};

/// Whom to act as and where the server is: global flags, accepted after any command.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Credentials directory (ca.pem, cert.pem, key.pem) of the acting principal (client
    /// commands).
    #[arg(long = "as", env = "SHUYU_AS", global = true)]
    pub creds: Option<PathBuf>,
    /// Server address (client commands).
    #[arg(
        long,
        env = "SHUYU_SERVER",
        default_value = "https://localhost:7443",
        global = true
    )]
    pub server: String,
}

impl Conn {
    /// Connects as the principal `--as` names.
    ///
    /// # Errors
    /// Without `--as`, or when the credentials cannot be read or the server not reached.
    pub(crate) async fn connect(&self) -> Result<Client> {
        let creds = self.creds.as_deref().context(
            "the following required argument was not provided: --as <CREDS> (or SHUYU_AS)",
        )?;
        let credentials = Credentials::from_dir(creds)?;
        Client::connect(&self.server, &credentials)
            .await
            .with_context(|| format!("connecting to {}", self.server))
    }
}
