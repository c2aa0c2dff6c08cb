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
    /// Worker processes running at once, domain-wide.
    #[serde(default = "default_max_running_jobs")]
    pub max_running_jobs: usize,
    /// Worker processes one tenant may run at once; further jobs wait in its queue, and
    /// tenants are served in turn (least recently served first).
    #[serde(default = "default_tenant_max_running_jobs")]
    pub tenant_max_running_jobs: usize,
    /// Jobs one tenant may have queued or running; more are refused.
    #[serde(default = "default_tenant_max_queued_jobs")]
    pub tenant_max_queued_jobs: usize,
    /// The job worker processes.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// The data lab (R3, R16, R20).
    #[serde(default)]
    pub lab: LabConfig,
    /// Differential-privacy budgets.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Prices of commercial data products (R24).
    #[serde(default)]
    pub pricing: PricingConfig,
    /// Data-quality tickets and risk stops (R18, R19).
    #[serde(default)]
    pub stewardship: StewardshipConfig,
    /// Monitoring, checkpoints and audit retention (R27, R30, R33).
    #[serde(default)]
    pub oversight: crate::oversight::config::OversightConfig,
    /// Suspension and termination of tenants (R26).
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// Authorizations and their renewal notices (R25).
    #[serde(default)]
    pub governance: GovernanceConfig,
    /// The failed-production-job allowance and its freeze.
    #[serde(default)]
    pub jobs: crate::jobs::oracle::JobsConfig,
    /// What the server holds of staged results and packages, and how many it handles at
    /// once.
    #[serde(default)]
    pub exports: ExportsConfig,
    /// Where the metadata lives (`[metadata] url = "postgresql://…"`); the data dir's own
    /// record (written by `shuyu init --metadata-url`) when absent.
    #[serde(default)]
    pub metadata: crate::domain::MetadataConfig,
}

/// Handling of staged results and packages in the server. The checks, the release ledger's
/// inputs and the recipient's copy are computed in worker processes; what the server itself
/// holds of a result for one request is bounded by `max_request_mib`, and at most
/// `max_concurrent` requests (export requests, approving votes, reviews, downloads, Flight
/// fetches) hold it at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportsConfig {
    /// Rows of a staged result a reviewer is shown (with the total, and a note when there
    /// are more).
    #[serde(default = "default_review_rows")]
    pub review_rows: usize,
    /// Requests that handle a staged result or package at once; others wait their turn.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Seconds a request waits for its turn before it is answered UNAVAILABLE.
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u64,
    /// Most MiB of a result the server holds for one request (a worker's answer, the rows
    /// shown to a reviewer, a package sealed whole by an earlier version); more is answered
    /// RESOURCE_EXHAUSTED.
    #[serde(default = "default_max_request_mib")]
    pub max_request_mib: u64,
    /// Seconds an export's worker may take (checks, ledger inputs, the recipient's copy).
    #[serde(default = "default_task_timeout_secs")]
    pub task_timeout_secs: u64,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        ExportsConfig {
            review_rows: default_review_rows(),
            max_concurrent: default_max_concurrent(),
            wait_secs: default_wait_secs(),
            max_request_mib: default_max_request_mib(),
            task_timeout_secs: default_task_timeout_secs(),
        }
    }
}

impl ExportsConfig {
    /// The per-request cap in bytes.
    pub fn max_request_bytes(&self) -> usize {
        usize::try_from(self.max_request_mib << 20).unwrap_or(usize::MAX)
    }
}

fn default_review_rows() -> usize {
    10_000
}
fn default_max_concurrent() -> usize {
    4
}
fn default_wait_secs() -> u64 {
    30
}
fn default_max_request_mib() -> u64 {
    64
}
fn default_task_timeout_secs() -> u64 {
    600
}

/// Authorizations (R25): the longest term an admin may record, and how often the server
/// looks for authorizations whose renewal window has opened.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Longest authorization term, in years: 3 by default, at most 5.
    #[serde(default = "default_authorization_max_years")]
    pub authorization_max_years: u32,
    /// Seconds between renewal sweeps (one also runs at start-up and after each create or
    /// renewal).
    #[serde(default = "default_renewal_sweep_secs")]
    pub renewal_sweep_secs: u64,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            authorization_max_years: default_authorization_max_years(),
            renewal_sweep_secs: default_renewal_sweep_secs(),
        }
    }
}

fn default_authorization_max_years() -> u32 {
    shuyu_policy::DEFAULT_AUTHORIZATION_YEARS
}
fn default_renewal_sweep_secs() -> u64 {
    3600
}

/// Data-quality tickets (R18): how long a steward has to answer one.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StewardshipConfig {
    /// Days from filing to a ticket's deadline (1 to 365; default 30).
    #[serde(default = "default_quality_fix_days")]
    pub quality_fix_days: u32,
}

impl Default for StewardshipConfig {
    fn default() -> Self {
        StewardshipConfig {
            quality_fix_days: default_quality_fix_days(),
        }
    }
}

fn default_quality_fix_days() -> u32 {
    30
}

/// Suspension and termination of tenants (R26, R27): how long a suspended tenant has to fix
/// its violation, and how long after its authorization ended a tenant is due for termination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Days a suspended tenant has to fix the violation before admins are told it is due
    /// for termination (R26: 30), when the suspension names no deadline. 1 to 365.
    #[serde(default = "default_fix_days")]
    pub fix_days: u32,
    /// Days after a tenant's authorization was revoked or expired unrenewed (its work is
    /// closed at once) until admins are told it is due for termination, its data deleted
    /// (R27: "promptly"; 0 to 183, default 30, the rules' one period for a tenant's exit).
    #[serde(default = "default_termination_notice_days")]
    pub termination_notice_days: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            fix_days: default_fix_days(),
            termination_notice_days: default_termination_notice_days(),
        }
    }
}

fn default_fix_days() -> u32 {
    30
}
fn default_termination_notice_days() -> u32 {
    30
}

/// Differential-privacy budgets: each tenant's total ε over one dataset's content.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The budget a tenant starts with over a dataset (ε, in (0, 100]).
    #[serde(default = "default_epsilon")]
    pub default_epsilon: f64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            default_epsilon: default_epsilon(),
        }
    }
}

/// The price basis of commercial products, filed with each product (R24). Products under
/// public-governance and public-welfare scenarios are free whatever these say. Amounts in
/// fen (分, 1/100 yuan), so that no price is a floating-point number.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Per started 10,000 rows of a product.
    #[serde(default = "default_per_10k_rows_fen")]
    pub per_10k_rows_fen: u64,
    /// Per download of its package or fetch over Arrow Flight.
    #[serde(default = "default_per_download_fen")]
    pub per_download_fen: u64,
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            per_10k_rows_fen: default_per_10k_rows_fen(),
            per_download_fen: default_per_download_fen(),
        }
    }
}

fn default_epsilon() -> f64 {
    3.0
}

impl PricingConfig {
    /// The rates as the policy crate prices with them.
    pub fn rates(&self) -> shuyu_policy::PriceRates {
        shuyu_policy::PriceRates {
            per_10k_rows_fen: self.per_10k_rows_fen,
            per_download_fen: self.per_download_fen,
        }
    }
}

/// Largest configurable rate: 100 million yuan, in fen.
pub const MAX_RATE_FEN: u64 = 10_000_000_000;

fn default_per_10k_rows_fen() -> u64 {
    10_000
}
fn default_per_download_fen() -> u64 {
    1_000
}

/// The data lab: development on masked samples, time-limited per tenant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// Lab access a new tenant gets, days (0: none until an admin opens it). At most 183 (R20:
    /// up to six months).
    #[serde(default = "default_lab_days")]
    pub default_days: u32,
    /// Masked rows per dataset in a lab job (the same server-chosen rows on every run).
    #[serde(default = "default_lab_rows")]
    pub rows: usize,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            default_days: default_lab_days(),
            rows: default_lab_rows(),
        }
    }
}

/// R20: the data lab is open for at most six months at a time.
pub const MAX_LAB_DAYS: u32 = 183;

fn default_lab_days() -> u32 {
    180
}
fn default_lab_rows() -> usize {
    1000
}

/// How job worker processes are started and confined.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The `shuyu` binary to run as `shuyu worker` (default: the running executable).
    #[serde(default)]
    pub program: Option<PathBuf>,
    /// DataFusion threads per worker.
    #[serde(default = "default_worker_threads")]
    pub threads: usize,
    /// Stack of the planning thread, MiB (deep expressions recurse).
    #[serde(default = "default_worker_stack_mib")]
    pub stack_mib: usize,
    /// Address-space ceiling (RLIMIT_AS) of a worker, MiB: the hard memory ceiling behind the
    /// per-job memory pool, which tracks only large operators.
    #[serde(default = "default_worker_address_space_mib")]
    pub address_space_mib: u64,
    /// Confine workers (landlock file-system view, seccomp network denial). Only for
    /// platforms without these; the audit trail records what each worker got.
    #[serde(default = "default_true")]
    pub confine: bool,
    /// Most a job may spill to disk, MiB, encrypted under an ephemeral per-job key into its
    /// result folder; 0 disables spilling (operators that would spill fail instead).
    #[serde(default = "default_spill_mib")]
    pub spill_mib: u64,
    /// Most jobs one worker serves, one after another, for production jobs of one scenario
    /// (its tables and result folders are the worker's whole view; each job's keys are
    /// dropped with it). 1 gives every job a fresh process.
    #[serde(default = "default_reuse_jobs")]
    pub reuse_jobs: u32,
    /// Seconds a worker kept for its scenario's next job may idle before it is stopped.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// Most workers kept idle at once (the oldest is stopped first).
    #[serde(default = "default_max_idle")]
    pub max_idle: usize,
    /// glibc malloc tunables of worker processes (`GLIBC_TUNABLES`): `glibc.malloc.*`
    /// settings only, `:`-separated; empty for glibc's defaults. A worker is a fresh process,
    /// so its working set is first-touch page faults; these decide how much of it malloc
    /// keeps and reuses (benches/RESULTS.md).
    #[serde(default = "default_malloc_tunables")]
    pub malloc_tunables: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            program: None,
            threads: default_worker_threads(),
            stack_mib: default_worker_stack_mib(),
            address_space_mib: default_worker_address_space_mib(),
            confine: true,
            spill_mib: default_spill_mib(),
            reuse_jobs: default_reuse_jobs(),
            idle_secs: default_idle_secs(),
            max_idle: default_max_idle(),
            malloc_tunables: default_malloc_tunables(),
        }
    }
}

/// glibc malloc settings of worker processes by default (`worker.malloc_tunables`): a fixed
/// 32 MiB mmap threshold and a 1 GiB trim threshold, so that the buffers a query frees are
/// reused by the next instead of returned to the kernel and faulted in (zeroed) again. The
/// transparent huge pages tried before (`hugetlb=1`) made every such fault zero 2 MiB: two
/// thirds of TPC-H Q18's worker time went to clearing pages (benches/RESULTS.md).
pub const WORKER_MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824";

fn default_malloc_tunables() -> String {
    WORKER_MALLOC_TUNABLES.to_owned()
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:7443".parse().expect("valid address")
}
fn default_max_ingest_bytes() -> usize {
    256 << 20
}
fn default_max_running_jobs() -> usize {
    2
}
fn default_tenant_max_running_jobs() -> usize {
    1
}
fn default_tenant_max_queued_jobs() -> usize {
    32
}
fn default_worker_threads() -> usize {
    2
}
fn default_worker_stack_mib() -> usize {
    256
}
fn default_worker_address_space_mib() -> u64 {
    8192
}
fn default_spill_mib() -> u64 {
    10240
}
fn default_reuse_jobs() -> u32 {
    64
}
fn default_idle_secs() -> u64 {
    120
}
fn default_max_idle() -> usize {
    4
}
fn default_true() -> bool {
    true
}

impl ServerConfig {
    /// Defaults for a data dir.
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen: default_listen(),
            policy_file: None,
            max_ingest_bytes: default_max_ingest_bytes(),
            max_running_jobs: default_max_running_jobs(),
            tenant_max_running_jobs: default_tenant_max_running_jobs(),
            tenant_max_queued_jobs: default_tenant_max_queued_jobs(),
            worker: WorkerConfig::default(),
            lab: LabConfig::default(),
            privacy: PrivacyConfig::default(),
            pricing: PricingConfig::default(),
            stewardship: StewardshipConfig::default(),
            oversight: crate::oversight::config::OversightConfig::default(),
            lifecycle: LifecycleConfig::default(),
            governance: GovernanceConfig::default(),
            jobs: crate::jobs::oracle::JobsConfig::default(),
            exports: ExportsConfig::default(),
            metadata: crate::domain::MetadataConfig::default(),
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
        let epsilon = self.privacy.default_epsilon;
        if !(epsilon > 0.0 && epsilon <= 100.0) {
            return Err(ServerError::InvalidArgument(format!(
                "configuration: privacy.default_epsilon must be in (0, 100], not {epsilon}"
            )));
        }
        let fix_days = self.stewardship.quality_fix_days;
        if !(1..=365).contains(&fix_days) {
            return Err(ServerError::InvalidArgument(format!(
                "configuration: stewardship.quality_fix_days must be between 1 and 365, not {fix_days}"
            )));
        }
        if self.max_ingest_bytes < 1024 {
            return Err(ServerError::InvalidArgument(
                "configuration: max_ingest_bytes must be at least 1024".into(),
            ));
        }
        let ranges: [(&str, usize, usize, usize); 14] = [
            (
                "exports.review_rows",
                self.exports.review_rows,
                1,
                1_000_000,
            ),
            (
                "exports.max_concurrent",
                self.exports.max_concurrent,
                1,
                256,
            ),
            (
                "exports.max_request_mib",
                self.exports.max_request_mib as usize,
                1,
                65_536,
            ),
            (
                "exports.task_timeout_secs",
                self.exports.task_timeout_secs as usize,
                1,
                86_400,
            ),
            (
                "lifecycle.fix_days",
                self.lifecycle.fix_days as usize,
                1,
                365,
            ),
            (
                "lifecycle.termination_notice_days",
                self.lifecycle.termination_notice_days as usize,
                0,
                183,
            ),
            (
                "lab.default_days",
                self.lab.default_days as usize,
                0,
                MAX_LAB_DAYS as usize,
            ),
            ("lab.rows", self.lab.rows, 1, 100_000),
            ("max_running_jobs", self.max_running_jobs, 1, 256),
            (
                "tenant_max_running_jobs",
                self.tenant_max_running_jobs,
                1,
                256,
            ),
            (
                "tenant_max_queued_jobs",
                self.tenant_max_queued_jobs,
                1,
                10_000,
            ),
            ("worker.threads", self.worker.threads, 1, 64),
            ("worker.stack_mib", self.worker.stack_mib, 8, 4096),
            (
                "worker.address_space_mib",
                self.worker.address_space_mib as usize,
                0,
                1 << 22,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ServerError::InvalidArgument(format!(
                    "configuration: {key} must be between {min} and {max}"
                )));
            }
        }
        for (key, value) in [
            ("pricing.per_10k_rows_fen", self.pricing.per_10k_rows_fen),
            ("pricing.per_download_fen", self.pricing.per_download_fen),
        ] {
            if value > MAX_RATE_FEN {
                return Err(ServerError::InvalidArgument(format!(
                    "configuration: {key} must be at most {MAX_RATE_FEN} (fen)"
                )));
            }
        }
        if self.pricing.per_10k_rows_fen == 0 && self.pricing.per_download_fen == 0 {
            return Err(ServerError::InvalidArgument(
                "configuration: [pricing] must charge commercial products something \
                 (per_10k_rows_fen or per_download_fen above 0); public-governance and \
                 public-welfare products are free regardless"
                    .into(),
            ));
        }
        shuyu_policy::check_max_years(self.governance.authorization_max_years).map_err(|e| {
            ServerError::InvalidArgument(format!(
                "configuration: governance.authorization_max_years: {e}"
            ))
        })?;
        if !(1..=86_400).contains(&self.governance.renewal_sweep_secs) {
            return Err(ServerError::InvalidArgument(
                "configuration: governance.renewal_sweep_secs must be between 1 and 86400".into(),
            ));
        }
        let tunable_ok = |t: &str| {
            t.strip_prefix("glibc.malloc.")
                .and_then(|t| t.split_once('='))
                .is_some_and(|(name, value)| {
                    !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        && !value.is_empty()
                        && value.bytes().all(|b| b.is_ascii_digit())
                })
        };
        let tunables = &self.worker.malloc_tunables;
        if !tunables.is_empty() && !tunables.split(':').all(tunable_ok) {
            return Err(ServerError::InvalidArgument(format!(
                "configuration: worker.malloc_tunables must be `glibc.malloc.<name>=<number>` \
                 settings separated by `:`, not {tunables:?}"
            )));
        }
        if self.worker.address_space_mib != 0 && self.worker.address_space_mib < 512 {
            return Err(ServerError::InvalidArgument(
                "configuration: worker.address_space_mib must be 0 (no ceiling) or at least 512"
                    .into(),
            ));
        }
        self.oversight.validate()?;
        self.jobs.validate()?;
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
        assert_eq!(config.pricing, PricingConfig::default());
        assert_eq!(config.governance, GovernanceConfig::default());
        assert_eq!(config.lifecycle, LifecycleConfig::default());
        assert_eq!(config.lifecycle.termination_notice_days, 30);
        assert_eq!(config.jobs, crate::jobs::oracle::JobsConfig::default());
        assert_eq!(config.exports, ExportsConfig::default());
        assert_eq!(config.worker, WorkerConfig::default());
    }

    #[test]
    fn worker_malloc_tunables_are_glibc_malloc_settings_only() {
        let with = |tunables: &str| {
            ServerConfig::from_toml_str(&format!(
                "data_dir = \"x\"\n[worker]\nmalloc_tunables = {tunables:?}\n"
            ))
        };
        for ok in ["", WORKER_MALLOC_TUNABLES, "glibc.malloc.arena_max=1"] {
            let config = with(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
            assert_eq!(config.worker.malloc_tunables, ok);
        }
        for bad in [
            "glibc.rtld.nns=8",
            "glibc.malloc.arena_max=one",
            "glibc.malloc.arena_max=1:",
            "glibc.malloc.=1",
            "glibc.malloc.check=3 LD_PRELOAD=/tmp/x.so",
        ] {
            let err = with(bad).expect_err(bad);
            assert!(
                err.to_string().contains("worker.malloc_tunables"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = ServerConfig::from_toml_str("data_dir = \"x\"\nlisten_port = 1\n").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
        let err =
            ServerConfig::from_toml_str("data_dir = \"x\"\nmax_running_jobs = 0\n").unwrap_err();
        assert!(err.to_string().contains("max_running_jobs"), "{err}");
        let err =
            ServerConfig::from_toml_str("data_dir = \"x\"\n[worker]\nstack_mib = 1\n").unwrap_err();
        assert!(err.to_string().contains("worker.stack_mib"), "{err}");
        let err =
            ServerConfig::from_toml_str("data_dir = \"x\"\n[worker]\nstacks = 1\n").unwrap_err();
        assert!(err.to_string().contains("stacks"), "{err}");
        let err = ServerConfig::from_toml_str(
            "data_dir = \"x\"\n[pricing]\nper_download_fen = 10000000001\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("pricing.per_download_fen"),
            "{err}"
        );
        let err = ServerConfig::from_toml_str(
            "data_dir = \"x\"\n[pricing]\nper_download_fen = 0\nper_10k_rows_fen = 0\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("[pricing]"), "{err}");
        let err = ServerConfig::from_toml_str(
            "data_dir = \"x\"\n[governance]\nauthorization_max_years = 6\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("governance.authorization_max_years"),
            "{err}"
        );
        let five = ServerConfig::from_toml_str(
            "data_dir = \"x\"\n[governance]\nauthorization_max_years = 5\n",
        )
        .expect("five years is allowed");
        assert_eq!(five.governance.authorization_max_years, 5);
        let err = ServerConfig::from_toml_str(
            "data_dir = \"x\"\n[lifecycle]\ntermination_notice_days = 184\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("lifecycle.termination_notice_days"),
            "{err}"
        );
        let err = ServerConfig::from_toml_str(
            "data_dir = \"x\"\n[jobs]\nfailed_production_window_hours = 0\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("jobs.failed_production_window_hours"),
            "{err}"
        );
        let err =
            ServerConfig::from_toml_str("data_dir = \"x\"\n[pricing]\nyuan = 1\n").unwrap_err();
        assert!(err.to_string().contains("yuan"), "{err}");
    }
}
