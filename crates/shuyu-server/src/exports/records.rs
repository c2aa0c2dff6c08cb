//! Records of exports with their votes, comments and events, the products delivered, and
//! the release ledger of approved aggregate exports' cells; the migrations of older exports.

use shuyu_engine::{AUDITED_UNITS, PopulationId, ReleasedCell, UnitSketch};
use shuyu_meta::{Row, params};
use shuyu_policy::{PriceRates, Role, ScenarioCategory};

use crate::audit::trail::AuditLog;
use crate::error::{Result, ServerError};
use crate::jobs::records::JobRecord;
use crate::store::{Legacy, Tx, unique_violation};

/// The exports tables. Released cells carry `seq`, their position in their tenant's ledger:
/// increasing in the order they were recorded (see [`ledger_mark`]); it replaces SQLite's
/// `rowid`, which older ledgers' cells keep as their position.
pub(crate) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS releases (
    export_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, job_id TEXT NOT NULL,
    query_sha256 TEXT NOT NULL, population_json TEXT NOT NULL, n_cells BIGINT NOT NULL,
    released_at_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS released_cells (
    export_id TEXT NOT NULL REFERENCES releases(export_id), tenant_id TEXT NOT NULL,
    row BIGINT NOT NULL, population BIGINT NOT NULL DEFAULT 0, units BIGINT NOT NULL,
    sketch BLOB NOT NULL, digest BLOB, screened_k BIGINT, seq BIGINT NOT NULL,
    PRIMARY KEY (export_id, row, population));
CREATE INDEX IF NOT EXISTS released_cells_by_size ON released_cells (tenant_id, units);
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id), tenant_id TEXT NOT NULL,
    requester_id TEXT NOT NULL, purpose TEXT NOT NULL, format TEXT NOT NULL, status TEXT NOT NULL,
    checks_json TEXT NOT NULL, requested_at_ms BIGINT NOT NULL, decided_at_ms BIGINT NOT NULL,
    package_location TEXT NOT NULL, package_sha256 TEXT NOT NULL, policy_version TEXT NOT NULL,
    quorum BIGINT NOT NULL DEFAULT 1, recipient_id TEXT NOT NULL DEFAULT '',
    permitted_use TEXT NOT NULL DEFAULT '', expires_in_days BIGINT NOT NULL DEFAULT 0,
    product_json TEXT NOT NULL DEFAULT '', fingerprint TEXT NOT NULL DEFAULT '',
    rows_digest TEXT NOT NULL DEFAULT '', download_count BIGINT NOT NULL DEFAULT 0,
    last_download_at_ms BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS export_votes (
    export_id TEXT NOT NULL REFERENCES exports(id), reviewer_id TEXT NOT NULL,
    decision TEXT NOT NULL, shared_comment TEXT NOT NULL, private_comment TEXT NOT NULL,
    result_sha256 TEXT NOT NULL, query_sha256 TEXT NOT NULL, policy_version TEXT NOT NULL,
    at_ms BIGINT NOT NULL, PRIMARY KEY (export_id, reviewer_id));
CREATE TABLE IF NOT EXISTS export_comments (
    export_id TEXT NOT NULL REFERENCES exports(id), seq BIGINT NOT NULL,
    author_id TEXT NOT NULL, author_role TEXT NOT NULL, private BOOLEAN NOT NULL,
    text TEXT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (export_id, seq));
CREATE TABLE IF NOT EXISTS export_events (
    export_id TEXT NOT NULL REFERENCES exports(id), seq BIGINT NOT NULL, at_ms BIGINT NOT NULL,
    actor_id TEXT NOT NULL, from_status TEXT NOT NULL, to_status TEXT NOT NULL,
    note TEXT NOT NULL, PRIMARY KEY (export_id, seq));
";

/// The columns the exports tables gained before versioned migrations, and what moves an
/// older SQLite data dir's exports forward.
pub(crate) const LEGACY: Legacy = Legacy {
    added_columns: &[
        ("exports", "quorum", "INTEGER NOT NULL DEFAULT 1"),
        ("exports", "recipient_id", "TEXT NOT NULL DEFAULT ''"),
        ("exports", "permitted_use", "TEXT NOT NULL DEFAULT ''"),
        ("exports", "expires_in_days", "INTEGER NOT NULL DEFAULT 0"),
        ("exports", "product_json", "TEXT NOT NULL DEFAULT ''"),
        ("exports", "fingerprint", "TEXT NOT NULL DEFAULT ''"),
        ("exports", "rows_digest", "TEXT NOT NULL DEFAULT ''"),
        ("exports", "download_count", "INTEGER NOT NULL DEFAULT 0"),
        (
            "exports",
            "last_download_at_ms",
            "INTEGER NOT NULL DEFAULT 0",
        ),
        ("released_cells", "digest", "BLOB"),
        ("released_cells", "screened_k", "INTEGER"),
        ("released_cells", "seq", "INTEGER NOT NULL DEFAULT 0"),
    ],
    migrate: Some(migrate),
};

/// Export request states (R22). Every change is recorded in `export_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    /// An automated check failed (terminal).
    Refused,
    /// Waiting for reviewers' votes.
    InReview,
    /// The quorum of approvals was reached; the package is built.
    Approved,
    /// A reviewer rejected it (terminal).
    Rejected,
    /// A reviewer returned it for changes (terminal: a revised job gets a new export).
    Returned,
    /// Approved, then withdrawn (terminal): no longer downloadable.
    Revoked,
    /// Approved, past its product's expiry: never stored, derived when read
    /// ([`ExportRecord::status_at`]).
    Expired,
}

impl ExportStatus {
    /// The stored text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExportStatus::Refused => "refused",
            ExportStatus::InReview => "in_review",
            ExportStatus::Approved => "approved",
            ExportStatus::Rejected => "rejected",
            ExportStatus::Returned => "returned",
            ExportStatus::Revoked => "revoked",
            ExportStatus::Expired => "expired",
        }
    }
    /// Unknown text reads as `Refused`: nothing unknown can be approved or downloaded.
    fn parse(s: &str) -> ExportStatus {
        match s {
            "in_review" => ExportStatus::InReview,
            "approved" => ExportStatus::Approved,
            "rejected" => ExportStatus::Rejected,
            "returned" => ExportStatus::Returned,
            "revoked" => ExportStatus::Revoked,
            "expired" => ExportStatus::Expired,
            _ => ExportStatus::Refused,
        }
    }
}

/// The first event of every export (`""` → `submitted`), followed by the check's outcome
/// (`submitted` → `in_review` or `refused`).
pub const EXPORT_SUBMITTED: &str = "submitted";

/// A stored check outcome: `pass`, `review` (reviewers must look at the flagged cells) or
/// `fail` (the export is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckVerdict {
    Pass,
    Review,
    Fail,
}

impl CheckVerdict {
    /// The stored text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Review => "review",
            CheckVerdict::Fail => "fail",
        }
    }
}

/// A stored check result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredCheck {
    pub name: String,
    pub outcome: CheckVerdict,
    /// Evidence for reviewers.
    pub detail: String,
    /// What the requesting tenant may learn.
    pub summary: String,
}

/// An export request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub id: String,
    pub job_id: String,
    pub tenant_id: String,
    pub requester_id: String,
    pub purpose: String,
    /// "parquet" or "csv".
    pub format: String,
    pub status: ExportStatus,
    pub checks: Vec<StoredCheck>,
    pub requested_at_ms: i64,
    /// When the review ended (approved, rejected, returned); 0 before.
    pub decided_at_ms: i64,
    pub package_location: String,
    pub package_sha256: String,
    /// The policy version the checks ran under.
    pub policy_version: String,
    /// Approvals needed, fixed from the policy when the export was requested.
    pub quorum: u64,
    /// The recipient principal the product is for; empty for exports requested before
    /// products (their requester was their recipient).
    pub recipient_id: String,
    /// What the recipient may use the product for (R23).
    pub permitted_use: String,
    /// Days the product is usable after approval.
    pub expires_in_days: u32,
    /// The registered product, once approved.
    pub product: Option<ProductRecord>,
    /// Downloads of the package and Flight fetches, and the last one's time.
    pub download_count: u64,
    pub last_download_at_ms: i64,
}

impl ExportRecord {
    /// The status at `now_ms`: an approved product past its expiry is expired.
    pub fn status_at(&self, now_ms: i64) -> ExportStatus {
        match (&self.status, &self.product) {
            (ExportStatus::Approved, Some(p))
                if p.expires_at_ms > 0 && now_ms >= p.expires_at_ms =>
            {
                ExportStatus::Expired
            }
            (status, _) => *status,
        }
    }

    /// Who receives the product: its recipient, or for exports from before products, the
    /// requester.
    pub fn recipient(&self) -> &str {
        if self.recipient_id.is_empty() {
            &self.requester_id
        } else {
            &self.recipient_id
        }
    }
}

/// An approved export as a registered data product (R21, R24): what its manifest states.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProductRecord {
    pub scenario_id: String,
    #[serde(with = "category_text")]
    pub scenario_category: ScenarioCategory,
    pub recipient_organisation: String,
    pub approved_at_ms: i64,
    pub expires_at_ms: i64,
    /// The rates it is charged at (zero when free).
    pub per_10k_rows_fen: u64,
    pub per_download_fen: u64,
    pub n_rows: u64,
    /// Hex HMAC-SHA256 over (export id, recipient id) under the domain's fingerprint key.
    pub fingerprint: String,
    /// Base count cells were rounded to (0: none).
    pub round_counts_to: u64,
    /// Columns whose pseudonyms were re-keyed for the recipient.
    pub rekeyed_columns: Vec<String>,
    /// Order-free digest of the product's rows (see `ResultData::rows_digest`).
    pub rows_digest: String,
    /// The Parquet copy served over Arrow Flight when the package's data file is not
    /// Parquet (a Parquet package's own data file is served); absent for products from
    /// before copies were stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flight_copy: Option<StoredCopy>,
}

/// A sealed object that belongs to a product, with the hash and length of its plaintext.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredCopy {
    /// Object path (chunk-sealed under a data key wrapped by the tenant's KEK).
    pub location: String,
    /// Hex SHA-256 of its plaintext.
    pub sha256: String,
    /// Bytes of its plaintext.
    pub bytes: u64,
}

impl ProductRecord {
    /// The price basis filed with it.
    pub fn price_basis(&self) -> shuyu_policy::PriceBasis {
        shuyu_policy::PriceBasis::new(
            self.scenario_category,
            PriceRates {
                per_10k_rows_fen: self.per_10k_rows_fen,
                per_download_fen: self.per_download_fen,
            },
            self.n_rows,
        )
    }
}

mod category_text {
    use shuyu_policy::ScenarioCategory;

    pub fn serialize<S: serde::Serializer>(c: &ScenarioCategory, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<ScenarioCategory, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A reviewer's decision on an export in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDecision {
    Approve,
    Reject,
    /// Returned for changes.
    Return,
}

impl ExportDecision {
    /// The stored text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExportDecision::Approve => "approve",
            ExportDecision::Reject => "reject",
            ExportDecision::Return => "return",
        }
    }
    fn parse(s: &str) -> Result<ExportDecision> {
        match s {
            "approve" => Ok(ExportDecision::Approve),
            "reject" => Ok(ExportDecision::Reject),
            "return" => Ok(ExportDecision::Return),
            other => Err(ServerError::internal(format!(
                "unknown export decision '{other}'"
            ))),
        }
    }
}

/// One reviewer's vote on an export and what it was cast on.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportVote {
    pub reviewer_id: String,
    pub decision: ExportDecision,
    pub shared_comment: String,
    pub private_comment: String,
    /// The job's result hash when the vote was cast.
    pub result_sha256: String,
    /// The job's query hash when the vote was cast.
    pub query_sha256: String,
    /// The server's policy version when the vote was cast.
    pub policy_version: String,
    pub at_ms: i64,
}

/// A comment on an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportComment {
    pub seq: u64,
    pub author_id: String,
    pub author_role: Role,
    /// Written and read by reviewers only.
    pub private: bool,
    pub text: String,
    pub at_ms: i64,
}

/// Everything recorded about an export besides the export itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportHistory {
    pub votes: Vec<ExportVote>,
    pub comments: Vec<ExportComment>,
    pub events: Vec<ExportEvent>,
}

/// One status change of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportEvent {
    pub seq: u64,
    pub at_ms: i64,
    pub actor_id: String,
    /// An [`ExportStatus`] text, [`EXPORT_SUBMITTED`], or empty for the first event.
    pub from_status: String,
    pub to_status: String,
    pub note: String,
}

/// The package of every export that has one: what start-up keeps under `exports/`.
///
/// # Errors
/// On store failure.
/// Every object an export names: its package and its product's Flight copy.
pub fn package_locations(tx: &Tx<'_>) -> Result<std::collections::HashSet<String>> {
    let rows = tx.query(
        "SELECT package_location, product_json FROM exports WHERE package_location != ''",
        &[],
    )?;
    let mut locations = std::collections::HashSet::new();
    for row in &rows {
        let package: String = row.get("package_location")?;
        let product: String = row.get("product_json")?;
        locations.insert(package);
        if let Ok(ProductRecord {
            flight_copy: Some(copy),
            ..
        }) = serde_json::from_str::<ProductRecord>(&product)
        {
            locations.insert(copy.location);
        }
    }
    Ok(locations)
}

/// A count, number or position as a column holds it (`BIGINT`).
fn int(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| ServerError::internal(format!("{what} {value} is past a BIGINT column")))
}

/// A bound of a range query over a `BIGINT` column: past it means no bound.
fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Records an approved aggregate export's cells in its tenant's release ledger: the query,
/// its population predicate (row-influencing columns) and each cell's population sketch
/// with its digest, and `screened_k`: the threshold of the blocking differencing check the
/// release passed (`None` when the policy let reviewers judge close pairs). The cells take
/// the next positions of the tenant's ledger ([`ledger_mark`]).
pub fn record_release(
    tx: &Tx<'_>,
    export: &ExportRecord,
    job: &JobRecord,
    sketches: &[(PopulationId, UnitSketch)],
    screened_k: Option<u64>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO releases (export_id, tenant_id, job_id, query_sha256, population_json,
                               n_cells, released_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            export.id.as_str(),
            export.tenant_id.as_str(),
            job.id.as_str(),
            job.query_sha256.as_str(),
            crate::store::to_json(&job.gate.row_influencing, "a release's population")?,
            int(sketches.len() as u64, "a release's cell count")?,
            crate::now_ms()
        ],
    )?;
    let mut seq = i64::try_from(ledger_mark(tx, &export.tenant_id)?)
        .map_err(|_| ServerError::internal("the release ledger's mark is past a BIGINT"))?;
    let screened_k = screened_k
        .map(|k| int(k, "a screened threshold"))
        .transpose()?;
    for (at, sketch) in sketches {
        seq += 1;
        tx.execute(
            "INSERT INTO released_cells (export_id, tenant_id, row, population, units, sketch,
                                         digest, screened_k, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                export.id.as_str(),
                export.tenant_id.as_str(),
                int(at.row as u64, "a released cell's row")?,
                int(at.population as u64, "a released cell's population")?,
                int(sketch.units(), "a released cell's units")?,
                sketch.to_bytes(),
                sketch.digest().to_vec(),
                screened_k,
                seq
            ],
        )?;
    }
    Ok(())
}

/// The position of a tenant's release ledger: the last released cell recorded for it (0
/// when none). Cells are only ever added, so an unchanged mark means an unchanged ledger: a
/// check run against the cells up to a mark still holds while the mark stays.
pub fn ledger_mark(tx: &Tx<'_>, tenant_id: &str) -> Result<u64> {
    Ok(tx
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) AS mark FROM released_cells WHERE tenant_id = ?1",
            params![tenant_id],
        )?
        .get("mark")?)
}

/// The index the ledger is paged by (position within a tenant): a later step of the
/// versioned migrations.
pub(crate) const LEDGER_INDEX: &str = "
CREATE INDEX IF NOT EXISTS released_cells_by_seq ON released_cells (tenant_id, seq);
";

/// One page of a tenant's released cells whose populations number between `lo` and `hi`
/// units (for the differencing check), and every one small enough to be audited for
/// reconstruction: at most `limit` cells after position `after` and up to `mark`
/// ([`ledger_mark`]), in order, each with its position (read page by page, the ledger is
/// never held whole).
pub fn released_cells_page(
    tx: &Tx<'_>,
    tenant_id: &str,
    (lo, hi): (u64, u64),
    (after, mark): (u64, u64),
    limit: usize,
) -> Result<Vec<(u64, ReleasedCell)>> {
    let rows = tx.query(
        "SELECT seq, export_id, row, population, sketch, digest, screened_k
         FROM released_cells
         WHERE tenant_id = ?1 AND (units BETWEEN ?2 AND ?3 OR units <= ?4)
           AND seq > ?5 AND seq <= ?6
         ORDER BY seq LIMIT ?7",
        params![
            tenant_id,
            bound(lo),
            bound(hi),
            bound(AUDITED_UNITS as u64),
            bound(after),
            bound(mark),
            bound(limit as u64)
        ],
    )?;
    let mut cells = Vec::with_capacity(rows.len());
    for r in &rows {
        let unreadable =
            || crate::error::ServerError::internal("a released cell's sketch is unreadable");
        let sketch = UnitSketch::from_vec(r.get("sketch")?).ok_or_else(unreadable)?;
        // Older ledgers have no digest: computed then.
        let digest = match r.get::<Option<Vec<u8>>>("digest")? {
            Some(stored) => stored.try_into().map_err(|_| unreadable())?,
            None => sketch.digest(),
        };
        cells.push((
            r.get("seq")?,
            ReleasedCell {
                export_id: r.get("export_id")?,
                row: r.get("row")?,
                population: r.get("population")?,
                sketch,
                digest,
                screened_k: r.get("screened_k")?,
            },
        ));
    }
    Ok(cells)
}

const EXPORT_COLUMNS: &str = "id, job_id, tenant_id, requester_id, purpose, format, status,
    checks_json, requested_at_ms, decided_at_ms, package_location, package_sha256, policy_version,
    quorum, recipient_id, permitted_use, expires_in_days, product_json, fingerprint, rows_digest,
    download_count, last_download_at_ms";

fn export_row(r: &Row) -> Result<ExportRecord> {
    let id: String = r.get("id")?;
    let status: String = r.get("status")?;
    let checks: String = r.get("checks_json")?;
    let product: String = r.get("product_json")?;
    Ok(ExportRecord {
        job_id: r.get("job_id")?,
        tenant_id: r.get("tenant_id")?,
        requester_id: r.get("requester_id")?,
        purpose: r.get("purpose")?,
        format: r.get("format")?,
        status: ExportStatus::parse(&status),
        // A check list that does not parse must not read as "no checks".
        checks: serde_json::from_str(&checks)
            .map_err(|e| ServerError::internal(format!("export {id}: stored checks: {e}")))?,
        requested_at_ms: r.get("requested_at_ms")?,
        decided_at_ms: r.get("decided_at_ms")?,
        package_location: r.get("package_location")?,
        package_sha256: r.get("package_sha256")?,
        policy_version: r.get("policy_version")?,
        quorum: r.get("quorum")?,
        recipient_id: r.get("recipient_id")?,
        permitted_use: r.get("permitted_use")?,
        expires_in_days: r.get("expires_in_days")?,
        product: if product.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&product).map_err(|e| {
                    ServerError::internal(format!("export {id}: stored product: {e}"))
                })?,
            )
        },
        download_count: r.get("download_count")?,
        last_download_at_ms: r.get("last_download_at_ms")?,
        id,
    })
}

fn export_rows(rows: &[Row]) -> Result<Vec<ExportRecord>> {
    rows.iter().map(export_row).collect()
}

/// Writes an export, replacing the stored one with its id.
pub fn upsert_export(tx: &Tx<'_>, e: &ExportRecord) -> Result<()> {
    let checks = serde_json::to_string(&e.checks)
        .map_err(|err| ServerError::internal(format!("serialising checks: {err}")))?;
    let product = match &e.product {
        Some(p) => serde_json::to_string(p)
            .map_err(|err| ServerError::internal(format!("serialising a product: {err}")))?,
        None => String::new(),
    };
    tx.execute(
        &format!(
            "INSERT INTO exports ({EXPORT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19, ?20, ?21, ?22)
             ON CONFLICT (id) DO UPDATE SET job_id = excluded.job_id,
                 tenant_id = excluded.tenant_id, requester_id = excluded.requester_id,
                 purpose = excluded.purpose, format = excluded.format,
                 status = excluded.status, checks_json = excluded.checks_json,
                 requested_at_ms = excluded.requested_at_ms,
                 decided_at_ms = excluded.decided_at_ms,
                 package_location = excluded.package_location,
                 package_sha256 = excluded.package_sha256,
                 policy_version = excluded.policy_version, quorum = excluded.quorum,
                 recipient_id = excluded.recipient_id, permitted_use = excluded.permitted_use,
                 expires_in_days = excluded.expires_in_days,
                 product_json = excluded.product_json, fingerprint = excluded.fingerprint,
                 rows_digest = excluded.rows_digest, download_count = excluded.download_count,
                 last_download_at_ms = excluded.last_download_at_ms"
        ),
        params![
            e.id.as_str(),
            e.job_id.as_str(),
            e.tenant_id.as_str(),
            e.requester_id.as_str(),
            e.purpose.as_str(),
            e.format.as_str(),
            e.status.as_str(),
            checks,
            e.requested_at_ms,
            e.decided_at_ms,
            e.package_location.as_str(),
            e.package_sha256.as_str(),
            e.policy_version.as_str(),
            int(e.quorum, "an export's quorum")?,
            e.recipient_id.as_str(),
            e.permitted_use.as_str(),
            e.expires_in_days,
            product,
            e.product
                .as_ref()
                .map(|p| p.fingerprint.as_str())
                .unwrap_or(""),
            e.product
                .as_ref()
                .map(|p| p.rows_digest.as_str())
                .unwrap_or(""),
            int(e.download_count, "an export's download count")?,
            e.last_download_at_ms
        ],
    )?;
    Ok(())
}

/// Counts one download (package or Flight fetch) of a product.
pub fn record_download(tx: &Tx<'_>, export_id: &str, at_ms: i64) -> Result<u64> {
    Ok(tx
        .query_one(
            "UPDATE exports SET download_count = download_count + 1, last_download_at_ms = ?2
             WHERE id = ?1 RETURNING download_count",
            params![export_id, at_ms],
        )?
        .get("download_count")?)
}

/// Products (exports that were approved: approved, revoked or expired) naming `recipient_id`,
/// newest first.
pub fn products_of_recipient(tx: &Tx<'_>, recipient_id: &str) -> Result<Vec<ExportRecord>> {
    export_rows(&tx.query(
        &format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE product_json != ''
             AND (recipient_id = ?1 OR (recipient_id = '' AND requester_id = ?1))
             ORDER BY requested_at_ms DESC LIMIT 500"
        ),
        params![recipient_id],
    )?)
}

/// Products of one tenant, or of every tenant but `except_tenant`, newest first.
pub fn products(
    tx: &Tx<'_>,
    tenant_id: Option<&str>,
    except_tenant: Option<&str>,
) -> Result<Vec<ExportRecord>> {
    export_rows(&tx.query(
        &format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE product_json != ''
             AND (CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1)
             AND (CAST(?2 AS TEXT) IS NULL OR tenant_id != ?2)
             ORDER BY requested_at_ms DESC LIMIT 500"
        ),
        params![tenant_id, except_tenant],
    )?)
}

/// The product whose copy carries `fingerprint`.
pub fn product_by_fingerprint(tx: &Tx<'_>, fingerprint: &str) -> Result<Option<ExportRecord>> {
    tx.query_opt(
        &format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE fingerprint = ?1 AND fingerprint != ''"
        ),
        params![fingerprint],
    )?
    .as_ref()
    .map(export_row)
    .transpose()
}

/// Products whose rows are exactly `rows_digest` (in any order).
pub fn products_with_rows(tx: &Tx<'_>, rows_digest: &str) -> Result<Vec<ExportRecord>> {
    export_rows(&tx.query(
        &format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE rows_digest = ?1 AND rows_digest != ''
             ORDER BY requested_at_ms LIMIT 10000"
        ),
        params![rows_digest],
    )?)
}

pub fn export(tx: &Tx<'_>, id: &str) -> Result<Option<ExportRecord>> {
    tx.query_opt(
        &format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE id = ?1"),
        params![id],
    )?
    .as_ref()
    .map(export_row)
    .transpose()
}

pub fn exports_of_tenant(tx: &Tx<'_>, tenant_id: &str) -> Result<Vec<ExportRecord>> {
    export_rows(&tx.query(
        &format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE tenant_id = ?1 ORDER BY requested_at_ms DESC LIMIT 200"
        ),
        params![tenant_id],
    )?)
}

/// Exports in review, oldest first, except those of `except_tenant` (a reviewer's own).
pub fn exports_in_review(tx: &Tx<'_>, except_tenant: Option<&str>) -> Result<Vec<ExportRecord>> {
    export_rows(&tx.query(
        &format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE status = 'in_review'
             AND (CAST(?1 AS TEXT) IS NULL OR tenant_id != ?1)
             ORDER BY requested_at_ms, id LIMIT 500"
        ),
        params![except_tenant],
    )?)
}

pub fn insert_export_vote(tx: &Tx<'_>, export_id: &str, v: &ExportVote) -> Result<()> {
    tx.execute(
        "INSERT INTO export_votes (export_id, reviewer_id, decision, shared_comment,
             private_comment, result_sha256, query_sha256, policy_version, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            export_id,
            v.reviewer_id.as_str(),
            v.decision.as_str(),
            v.shared_comment.as_str(),
            v.private_comment.as_str(),
            v.result_sha256.as_str(),
            v.query_sha256.as_str(),
            v.policy_version.as_str(),
            v.at_ms
        ],
    )
    .map_err(|e| unique_violation(e, "a vote of this reviewer on this export"))?;
    Ok(())
}

/// An export's votes in the order they were cast.
pub fn export_votes(tx: &Tx<'_>, export_id: &str) -> Result<Vec<ExportVote>> {
    tx.query(
        "SELECT reviewer_id, decision, shared_comment, private_comment, result_sha256,
                query_sha256, policy_version, at_ms
         FROM export_votes WHERE export_id = ?1 ORDER BY at_ms, reviewer_id",
        params![export_id],
    )?
    .iter()
    .map(|r| {
        let decision: String = r.get("decision")?;
        Ok(ExportVote {
            reviewer_id: r.get("reviewer_id")?,
            decision: ExportDecision::parse(&decision)?,
            shared_comment: r.get("shared_comment")?,
            private_comment: r.get("private_comment")?,
            result_sha256: r.get("result_sha256")?,
            query_sha256: r.get("query_sha256")?,
            policy_version: r.get("policy_version")?,
            at_ms: r.get("at_ms")?,
        })
    })
    .collect()
}

/// Appends a comment; returns it with its sequence number.
pub fn insert_export_comment(
    tx: &Tx<'_>,
    export_id: &str,
    author_id: &str,
    author_role: Role,
    private: bool,
    text: &str,
    at_ms: i64,
) -> Result<ExportComment> {
    let seq: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM export_comments WHERE export_id = ?1",
            params![export_id],
        )?
        .get("next")?;
    tx.execute(
        "INSERT INTO export_comments (export_id, seq, author_id, author_role, private, text, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            export_id,
            seq,
            author_id,
            author_role.as_str(),
            private,
            text,
            at_ms
        ],
    )?;
    Ok(ExportComment {
        seq: seq.unsigned_abs(),
        author_id: author_id.to_owned(),
        author_role,
        private,
        text: text.to_owned(),
        at_ms,
    })
}

/// An export's comments in the order they were written.
pub fn export_comments(tx: &Tx<'_>, export_id: &str) -> Result<Vec<ExportComment>> {
    tx.query(
        "SELECT seq, author_id, author_role, private, text, at_ms
         FROM export_comments WHERE export_id = ?1 ORDER BY seq",
        params![export_id],
    )?
    .iter()
    .map(|r| {
        let role: String = r.get("author_role")?;
        Ok(ExportComment {
            seq: r.get("seq")?,
            author_id: r.get("author_id")?,
            author_role: role
                .parse()
                .map_err(|_| ServerError::internal(format!("unknown role '{role}'")))?,
            private: r.get("private")?,
            text: r.get("text")?,
            at_ms: r.get("at_ms")?,
        })
    })
    .collect()
}

/// An export's votes, comments and events.
pub fn export_history(tx: &Tx<'_>, export_id: &str) -> Result<ExportHistory> {
    Ok(ExportHistory {
        votes: export_votes(tx, export_id)?,
        comments: export_comments(tx, export_id)?,
        events: export_events(tx, export_id)?,
    })
}

/// Appends a status change to an export's history; returns its sequence number.
pub fn append_export_event(
    tx: &Tx<'_>,
    export_id: &str,
    at_ms: i64,
    actor_id: &str,
    from_status: &str,
    to_status: &str,
    note: &str,
) -> Result<u64> {
    let seq: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM export_events WHERE export_id = ?1",
            params![export_id],
        )?
        .get("next")?;
    tx.execute(
        "INSERT INTO export_events (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            export_id,
            seq,
            at_ms,
            actor_id,
            from_status,
            to_status,
            note
        ],
    )?;
    Ok(seq.unsigned_abs())
}

/// An export's history, oldest first.
pub fn export_events(tx: &Tx<'_>, export_id: &str) -> Result<Vec<ExportEvent>> {
    tx.query(
        "SELECT seq, at_ms, actor_id, from_status, to_status, note
         FROM export_events WHERE export_id = ?1 ORDER BY seq",
        params![export_id],
    )?
    .iter()
    .map(|r| {
        Ok(ExportEvent {
            seq: r.get("seq")?,
            at_ms: r.get("at_ms")?,
            actor_id: r.get("actor_id")?,
            from_status: r.get("from_status")?,
            to_status: r.get("to_status")?,
            note: r.get("note")?,
        })
    })
    .collect()
}

/// Gives each released cell of an older SQLite ledger its position (`seq`, added empty):
/// its `rowid`, the position ledgers had before, so a mark taken before keeps its meaning
/// and the cells recorded after come later.
fn number_released_cells(tx: &Tx<'_>) -> Result<()> {
    tx.execute_batch("UPDATE released_cells SET seq = rowid WHERE seq = 0")?;
    Ok(())
}

/// Gives the release ledger one row per population of a released cell (its people and its
/// branch populations), keyed by (export, row, population): ledgers written before hold
/// population 0 only.
fn migrate_released_populations(tx: &Tx<'_>) -> Result<()> {
    let present: bool = tx
        .query_one(
            "SELECT count(*) > 0 AS present FROM pragma_table_info('released_cells')
             WHERE name = 'population'",
            &[],
        )?
        .get("present")?;
    if present {
        return Ok(());
    }
    tx.execute_batch(
        "CREATE TABLE released_cells_v2 (
             export_id TEXT NOT NULL REFERENCES releases(export_id), tenant_id TEXT NOT NULL,
             row INTEGER NOT NULL, population INTEGER NOT NULL DEFAULT 0,
             units INTEGER NOT NULL, sketch BLOB NOT NULL, digest BLOB, screened_k INTEGER,
             seq INTEGER NOT NULL, PRIMARY KEY (export_id, row, population));
         INSERT INTO released_cells_v2
             (export_id, tenant_id, row, population, units, sketch, digest, screened_k, seq)
             SELECT export_id, tenant_id, row, 0, units, sketch, digest, screened_k, seq
             FROM released_cells;
         DROP TABLE released_cells;
         ALTER TABLE released_cells_v2 RENAME TO released_cells;
         CREATE INDEX IF NOT EXISTS released_cells_by_size ON released_cells (tenant_id, units);
         CREATE INDEX IF NOT EXISTS released_cells_by_seq ON released_cells (tenant_id, seq);",
    )?;
    Ok(())
}

/// Moves exports of the single-reviewer gate (one `reviewer_id` and `comment` on the export,
/// status `pending_review`, checks with `passed: bool`) to the quorum review: the decision
/// becomes a vote bound to the job's hashes and the export's policy version, the history is
/// rebuilt as events, statuses and check outcomes get their new text, and the two columns go.
/// Runs once, in the caller's transaction, on a store that still has `exports.reviewer_id`.
fn migrate_single_reviewer_exports(tx: &Tx<'_>) -> Result<()> {
    let legacy: bool = tx
        .query_one(
            "SELECT count(*) > 0 AS legacy FROM pragma_table_info('exports')
             WHERE name = 'reviewer_id'",
            &[],
        )?
        .get("legacy")?;
    if !legacy {
        return Ok(());
    }
    tx.execute_batch(
        "UPDATE exports SET status = 'in_review' WHERE status = 'pending_review';
         INSERT OR IGNORE INTO export_votes (export_id, reviewer_id, decision, shared_comment,
             private_comment, result_sha256, query_sha256, policy_version, at_ms)
         SELECT e.id, e.reviewer_id,
                CASE e.status WHEN 'approved' THEN 'approve' ELSE 'reject' END,
                e.comment, '', j.result_sha256, j.sql_sha256, e.policy_version, e.decided_at_ms
         FROM exports e JOIN jobs j ON j.id = e.job_id
         WHERE e.reviewer_id != '' AND e.status IN ('approved', 'rejected');
         INSERT OR IGNORE INTO export_events
             (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         SELECT id, 1, requested_at_ms, requester_id, '', 'submitted', 'migrated'
         FROM exports;
         INSERT OR IGNORE INTO export_events
             (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         SELECT id, 2, requested_at_ms, requester_id, 'submitted',
                CASE status WHEN 'refused' THEN 'refused' ELSE 'in_review' END, 'migrated'
         FROM exports;
         INSERT OR IGNORE INTO export_events
             (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         SELECT id, 3, decided_at_ms, reviewer_id, 'in_review', status, 'migrated'
         FROM exports WHERE reviewer_id != '' AND status IN ('approved', 'rejected');
         ALTER TABLE exports DROP COLUMN reviewer_id;
         ALTER TABLE exports DROP COLUMN comment;",
    )?;
    let rows = tx.query("SELECT id, checks_json FROM exports", &[])?;
    for row in &rows {
        let id: String = row.get("id")?;
        let checks_json: String = row.get("checks_json")?;
        let mut checks: Vec<serde_json::Value> = serde_json::from_str(&checks_json)
            .map_err(|e| ServerError::internal(format!("export {id}: stored checks: {e}")))?;
        for check in &mut checks {
            if let Some(object) = check.as_object_mut()
                && let Some(passed) = object.remove("passed")
            {
                let outcome = if passed.as_bool() == Some(true) {
                    CheckVerdict::Pass
                } else {
                    CheckVerdict::Fail
                };
                object.insert("outcome".into(), outcome.as_str().into());
            }
        }
        tx.execute(
            "UPDATE exports SET checks_json = ?2 WHERE id = ?1",
            params![id, serde_json::Value::from(checks).to_string()],
        )?;
    }
    Ok(())
}

/// Moves an older SQLite data dir's exports forward, in the caller's transaction: positions
/// for its released cells, one ledger row per population, then the quorum review. Nothing of
/// it is sealed, so the audit log's keys go unused.
fn migrate(tx: &Tx<'_>, _audit: &AuditLog) -> Result<()> {
    number_released_cells(tx)?;
    migrate_released_populations(tx)?;
    migrate_single_reviewer_exports(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::records::tests::sample_job;
    use crate::store::Store;
    use crate::store::testing::{self, each_backend};

    fn add_job(store: &Store, job_id: &str) {
        testing::write(store, |tx| {
            crate::jobs::records::upsert_job(tx, store.audit_log(), &sample_job(job_id))
        });
    }

    fn export_of(job_id: &str) -> ExportRecord {
        ExportRecord {
            id: "ex_1".into(),
            job_id: job_id.into(),
            tenant_id: "t_1".into(),
            requester_id: "p_eng".into(),
            purpose: "a study".into(),
            format: "parquet".into(),
            status: ExportStatus::InReview,
            checks: Vec::new(),
            requested_at_ms: 10,
            decided_at_ms: 0,
            package_location: String::new(),
            package_sha256: String::new(),
            policy_version: "v1".into(),
            quorum: 2,
            recipient_id: "p_rec".into(),
            permitted_use: "research".into(),
            expires_in_days: 30,
            product: None,
            download_count: 3,
            last_download_at_ms: 11,
        }
    }

    #[track_caller]
    fn check_round_trip(record: &ExportRecord) {
        each_backend(|store| {
            add_job(store, &record.job_id);
            testing::write(store, |tx| upsert_export(tx, record));
            assert_eq!(
                store.read(|tx| export(tx, &record.id)).unwrap().as_ref(),
                Some(record)
            );
            assert_eq!(
                store
                    .read(|tx| exports_of_tenant(tx, &record.tenant_id))
                    .unwrap(),
                vec![record.clone()]
            );
        });
    }

    #[test]
    fn an_export_in_review_reads_back_as_written() {
        check_round_trip(&export_of("j_1"));
    }

    #[test]
    fn an_approved_export_reads_back_as_written() {
        check_round_trip(&ExportRecord {
            status: ExportStatus::Approved,
            decided_at_ms: 12,
            package_location: "exports/ex_1.tar.sealed".into(),
            package_sha256: "abc".into(),
            checks: vec![StoredCheck {
                name: "min_group_rows".into(),
                outcome: CheckVerdict::Review,
                detail: "d".into(),
                summary: "s".into(),
            }],
            product: Some(ProductRecord {
                scenario_id: "sc_1".into(),
                scenario_category: ScenarioCategory::Commercial,
                recipient_organisation: "an institute".into(),
                approved_at_ms: 12,
                expires_at_ms: 13,
                per_10k_rows_fen: 100,
                per_download_fen: 5,
                n_rows: 7,
                fingerprint: "fp".into(),
                round_counts_to: 5,
                rekeyed_columns: vec!["person".into()],
                rows_digest: "rd".into(),
                flight_copy: Some(StoredCopy {
                    location: "exports/ex_1.parquet.sealed".into(),
                    sha256: "def".into(),
                    bytes: 9,
                }),
            }),
            ..export_of("j_1")
        });
    }

    #[test]
    fn votes_comments_and_events_read_back_in_order() {
        each_backend(|store| {
            add_job(store, "j_1");
            let vote = ExportVote {
                reviewer_id: "p_rev".into(),
                decision: ExportDecision::Approve,
                shared_comment: "fine".into(),
                private_comment: "checked the groups".into(),
                result_sha256: "result-j_1".into(),
                query_sha256: "query-j_1".into(),
                policy_version: "v1".into(),
                at_ms: 13,
            };
            let (first, second) = testing::write(store, |tx| {
                upsert_export(tx, &export_of("j_1"))?;
                insert_export_vote(tx, "ex_1", &vote)?;
                let first =
                    append_export_event(tx, "ex_1", 14, "p_eng", "submitted", "in_review", "")?;
                let second =
                    append_export_event(tx, "ex_1", 15, "p_rev", "in_review", "approved", "q")?;
                Ok((first, second))
            });
            assert_eq!((first, second), (1, 2));
            assert_eq!(
                store.read(|tx| export_votes(tx, "ex_1")).unwrap(),
                vec![vote.clone()]
            );
            let events = store.read(|tx| export_events(tx, "ex_1")).unwrap();
            let moves: Vec<_> = events
                .iter()
                .map(|e| (e.seq, e.from_status.as_str(), e.to_status.as_str()))
                .collect();
            assert_eq!(
                moves,
                [(1, "submitted", "in_review"), (2, "in_review", "approved")]
            );
            let comments = testing::write(store, |tx| {
                Ok(vec![
                    insert_export_comment(tx, "ex_1", "p_rev", Role::Reviewer, true, "a", 16)?,
                    insert_export_comment(tx, "ex_1", "p_eng", Role::Engineer, false, "b", 17)?,
                ])
            });
            assert_eq!(
                comments
                    .iter()
                    .map(|c| (c.seq, c.private))
                    .collect::<Vec<_>>(),
                [(1, true), (2, false)]
            );
            assert_eq!(
                store.read(|tx| export_comments(tx, "ex_1")).unwrap(),
                comments
            );
            // A reviewer votes once.
            let again = store.commit(
                &crate::audit::trail::system_entry("test", "test", serde_json::json!({})),
                |tx| insert_export_vote(tx, "ex_1", &vote),
            );
            assert!(
                matches!(again, Err(ServerError::AlreadyExists(_))),
                "{again:?}"
            );
        });
    }

    #[test]
    fn products_and_reviews_filter_by_tenant() {
        each_backend(|store| {
            add_job(store, "j_1");
            let product = |id: &str, tenant: &str, at: i64| ExportRecord {
                id: id.into(),
                tenant_id: tenant.into(),
                requested_at_ms: at,
                product: Some(ProductRecord {
                    scenario_id: "sc_1".into(),
                    scenario_category: ScenarioCategory::Commercial,
                    recipient_organisation: String::new(),
                    approved_at_ms: at,
                    expires_at_ms: 0,
                    per_10k_rows_fen: 0,
                    per_download_fen: 0,
                    n_rows: 1,
                    fingerprint: format!("fp-{id}"),
                    round_counts_to: 0,
                    rekeyed_columns: Vec::new(),
                    rows_digest: "same rows".into(),
                    flight_copy: None,
                }),
                ..export_of("j_1")
            };
            testing::write(store, |tx| {
                upsert_export(tx, &product("ex_a", "t_1", 1))?;
                upsert_export(tx, &product("ex_b", "t_2", 2))?;
                upsert_export(
                    tx,
                    &ExportRecord {
                        id: "ex_c".into(),
                        tenant_id: "t_2".into(),
                        ..export_of("j_1")
                    },
                )
            });
            let ids = |records: Vec<ExportRecord>| -> Vec<String> {
                records.into_iter().map(|e| e.id).collect()
            };
            assert_eq!(
                ids(store.read(|tx| products(tx, None, None)).unwrap()),
                ["ex_b", "ex_a"]
            );
            assert_eq!(
                ids(store.read(|tx| products(tx, Some("t_1"), None)).unwrap()),
                ["ex_a"]
            );
            assert_eq!(
                ids(store.read(|tx| products(tx, None, Some("t_1"))).unwrap()),
                ["ex_b"]
            );
            assert_eq!(
                ids(store.read(|tx| products_of_recipient(tx, "p_rec")).unwrap()),
                ["ex_b", "ex_a"]
            );
            assert_eq!(
                ids(store
                    .read(|tx| products_with_rows(tx, "same rows"))
                    .unwrap()),
                ["ex_a", "ex_b"]
            );
            assert_eq!(
                store
                    .read(|tx| product_by_fingerprint(tx, "fp-ex_b"))
                    .unwrap()
                    .map(|e| e.id),
                Some("ex_b".into())
            );
            assert_eq!(
                ids(store.read(|tx| exports_in_review(tx, None)).unwrap()),
                ["ex_a", "ex_b", "ex_c"]
            );
            assert_eq!(
                ids(store.read(|tx| exports_in_review(tx, Some("t_2"))).unwrap()),
                ["ex_a"]
            );
            let counted = testing::write(store, |tx| record_download(tx, "ex_a", 99));
            assert_eq!(counted, 4);
            let counted = store.read(|tx| export(tx, "ex_a")).unwrap().unwrap();
            assert_eq!(
                (counted.download_count, counted.last_download_at_ms),
                (4, 99)
            );
        });
    }

    #[test]
    fn the_release_ledger_is_read_in_order_up_to_its_mark() {
        each_backend(|store| {
            add_job(store, "j_1");
            let sketch =
                |from: u64, n: u64| UnitSketch::from_hashes(&(from..from + n).collect::<Vec<_>>());
            let at = |row, population| PopulationId { row, population };
            let job = sample_job("j_1");
            let release = |id: &str, tenant: &str, cells: Vec<(PopulationId, UnitSketch)>| {
                let export = ExportRecord {
                    id: id.into(),
                    tenant_id: tenant.into(),
                    ..export_of("j_1")
                };
                testing::write(store, |tx| {
                    upsert_export(tx, &export)?;
                    record_release(tx, &export, &job, &cells, Some(5))
                });
            };
            assert_eq!(store.read(|tx| ledger_mark(tx, "t_1")).unwrap(), 0);
            release(
                "ex_a",
                "t_1",
                vec![(at(0, 0), sketch(0, 3)), (at(0, 1), sketch(10, 2000))],
            );
            release("ex_b", "t_2", vec![(at(0, 0), sketch(0, 4))]);
            let mark = store.read(|tx| ledger_mark(tx, "t_1")).unwrap();
            assert_eq!(mark, 2);
            release("ex_c", "t_1", vec![(at(3, 0), sketch(50, 5000))]);
            assert_eq!(store.read(|tx| ledger_mark(tx, "t_1")).unwrap(), 3);

            let page = |range, positions, limit| {
                store
                    .read(|tx| released_cells_page(tx, "t_1", range, positions, limit))
                    .unwrap()
            };
            // Everything up to the mark, a page at a time; later cells are not seen.
            let first = page((0, u64::MAX), (0, mark), 1);
            assert_eq!(first.len(), 1);
            let (position, cell) = &first[0];
            assert_eq!(
                (cell.export_id.as_str(), cell.row, cell.population),
                ("ex_a", 0, 0)
            );
            assert_eq!(cell.sketch, sketch(0, 3));
            assert_eq!(cell.digest, sketch(0, 3).digest());
            assert_eq!(cell.screened_k, Some(5));
            let rest = page((0, u64::MAX), (*position, mark), 10);
            assert_eq!(
                rest.iter()
                    .map(|(p, c)| (*p, c.population))
                    .collect::<Vec<_>>(),
                [(2, 1)]
            );
            assert!(page((0, u64::MAX), (mark, mark), 10).is_empty());
            // Out of the range, only cells small enough to audit.
            let small = page((4000, 6000), (0, u64::MAX), 10);
            assert_eq!(
                small
                    .iter()
                    .map(|(_, c)| c.export_id.as_str())
                    .collect::<Vec<_>>(),
                ["ex_a", "ex_c"]
            );
        });
    }
}
