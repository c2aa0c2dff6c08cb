//! Records of exports with their votes, comments and events, the products delivered, and
//! the release ledger of approved aggregate exports' cells; the migrations of older exports.

use rusqlite::{Connection, OptionalExtension, Row, params};
use shuyu_engine::{AUDITED_UNITS, PopulationId, ReleasedCell, UnitSketch};
use shuyu_policy::{PriceRates, Role, ScenarioCategory};

use crate::error::{Result, ServerError};
use crate::jobs::records::JobRecord;
use crate::store::{Schema, unique_violation};

/// The exports tables, the columns added to them since, and what moves older data forward.
pub(crate) const SCHEMA: Schema = Schema {
    tables: "
CREATE TABLE IF NOT EXISTS releases (
    export_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, job_id TEXT NOT NULL,
    query_sha256 TEXT NOT NULL, population_json TEXT NOT NULL, n_cells INTEGER NOT NULL,
    released_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS released_cells (
    export_id TEXT NOT NULL REFERENCES releases(export_id), tenant_id TEXT NOT NULL,
    row INTEGER NOT NULL, population INTEGER NOT NULL DEFAULT 0, units INTEGER NOT NULL,
    sketch BLOB NOT NULL, PRIMARY KEY (export_id, row, population));
CREATE INDEX IF NOT EXISTS released_cells_by_size ON released_cells (tenant_id, units);
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id), tenant_id TEXT NOT NULL,
    requester_id TEXT NOT NULL, purpose TEXT NOT NULL, format TEXT NOT NULL, status TEXT NOT NULL,
    checks_json TEXT NOT NULL, requested_at_ms INTEGER NOT NULL, decided_at_ms INTEGER NOT NULL,
    package_location TEXT NOT NULL, package_sha256 TEXT NOT NULL, policy_version TEXT NOT NULL,
    quorum INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS export_votes (
    export_id TEXT NOT NULL REFERENCES exports(id), reviewer_id TEXT NOT NULL,
    decision TEXT NOT NULL, shared_comment TEXT NOT NULL, private_comment TEXT NOT NULL,
    result_sha256 TEXT NOT NULL, query_sha256 TEXT NOT NULL, policy_version TEXT NOT NULL,
    at_ms INTEGER NOT NULL, PRIMARY KEY (export_id, reviewer_id));
CREATE TABLE IF NOT EXISTS export_comments (
    export_id TEXT NOT NULL REFERENCES exports(id), seq INTEGER NOT NULL,
    author_id TEXT NOT NULL, author_role TEXT NOT NULL, private INTEGER NOT NULL,
    text TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (export_id, seq));
CREATE TABLE IF NOT EXISTS export_events (
    export_id TEXT NOT NULL REFERENCES exports(id), seq INTEGER NOT NULL, at_ms INTEGER NOT NULL,
    actor_id TEXT NOT NULL, from_status TEXT NOT NULL, to_status TEXT NOT NULL,
    note TEXT NOT NULL, PRIMARY KEY (export_id, seq));
",
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
    ],
    migrate: Some(migrate),
    functions: None,
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
    fn parse(s: &str) -> rusqlite::Result<ExportDecision> {
        match s {
            "approve" => Ok(ExportDecision::Approve),
            "reject" => Ok(ExportDecision::Reject),
            "return" => Ok(ExportDecision::Return),
            other => Err(rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown export decision '{other}'").into(),
            )),
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
pub fn package_locations(conn: &Connection) -> Result<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT package_location, product_json FROM exports WHERE package_location != ''",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut locations = std::collections::HashSet::new();
    for row in rows {
        let (package, product) = row?;
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

/// Records an approved aggregate export's cells in its tenant's release ledger: the query,
/// its population predicate (row-influencing columns) and each cell's population sketch
/// with its digest, and `screened_k`: the threshold of the blocking differencing check the
/// release passed (`None` when the policy let reviewers judge close pairs).
pub fn record_release(
    conn: &Connection,
    export: &ExportRecord,
    job: &JobRecord,
    sketches: &[(PopulationId, UnitSketch)],
    screened_k: Option<u64>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO releases (export_id, tenant_id, job_id, query_sha256, population_json,
                               n_cells, released_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            export.id,
            export.tenant_id,
            job.id,
            job.query_sha256,
            serde_json::to_string(&job.gate.row_influencing).unwrap_or_default(),
            sketches.len() as u64,
            crate::now_ms()
        ],
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO released_cells (export_id, tenant_id, row, population, units, sketch,
                                     digest, screened_k)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (at, sketch) in sketches {
        insert.execute(params![
            export.id,
            export.tenant_id,
            at.row as u64,
            at.population as u64,
            sketch.units(),
            sketch.to_bytes(),
            sketch.digest().to_vec(),
            screened_k
        ])?;
    }
    Ok(())
}

/// The position of a tenant's release ledger: the last released cell recorded for it (0
/// when none). Cells are only ever added, so an unchanged mark means an unchanged ledger: a
/// check run against the cells up to a mark still holds while the mark stays.
pub fn ledger_mark(conn: &Connection, tenant_id: &str) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(rowid), 0) FROM released_cells WHERE tenant_id = ?1",
        [tenant_id],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// One page of a tenant's released cells whose populations number between `lo` and `hi`
/// units (for the differencing check), and every one small enough to be audited for
/// reconstruction: at most `limit` cells after position `after` and up to `mark`
/// ([`ledger_mark`]), in order, each with its position (read page by page, the ledger is
/// never held whole).
pub fn released_cells_page(
    conn: &Connection,
    tenant_id: &str,
    (lo, hi): (u64, u64),
    (after, mark): (u64, u64),
    limit: usize,
) -> Result<Vec<(u64, ReleasedCell)>> {
    let mut stmt = conn.prepare(
        "SELECT rowid, export_id, row, population, sketch, digest, screened_k
         FROM released_cells
         WHERE tenant_id = ?1 AND (units BETWEEN ?2 AND ?3 OR units <= ?4)
           AND rowid > ?5 AND rowid <= ?6
         ORDER BY rowid LIMIT ?7",
    )?;
    let audited = AUDITED_UNITS as u64;
    let rows = stmt.query_map(
        params![tenant_id, lo, hi, audited, after, mark, limit as u64],
        |r| {
            Ok((
                r.get::<_, i64>("rowid")? as u64,
                r.get::<_, String>("export_id")?,
                r.get::<_, u64>("row")?,
                r.get::<_, u32>("population")?,
                r.get::<_, Vec<u8>>("sketch")?,
                r.get::<_, Option<Vec<u8>>>("digest")?,
                r.get::<_, Option<u64>>("screened_k")?,
            ))
        },
    )?;
    let mut cells = Vec::new();
    for row in rows {
        let (at, export_id, row, population, sketch, digest, screened_k) = row?;
        let unreadable =
            || crate::error::ServerError::internal("a released cell's sketch is unreadable");
        let sketch = UnitSketch::from_vec(sketch).ok_or_else(unreadable)?;
        // Older ledgers have no digest: computed then.
        let digest = match digest {
            Some(stored) => stored.try_into().map_err(|_| unreadable())?,
            None => sketch.digest(),
        };
        cells.push((
            at,
            ReleasedCell {
                export_id,
                row,
                population,
                sketch,
                digest,
                screened_k,
            },
        ));
    }
    Ok(cells)
}

const EXPORT_COLUMNS: &str = "id, job_id, tenant_id, requester_id, purpose, format, status,
    checks_json, requested_at_ms, decided_at_ms, package_location, package_sha256, policy_version,
    quorum, recipient_id, permitted_use, expires_in_days, product_json, fingerprint, rows_digest,
    download_count, last_download_at_ms";

fn export_row(r: &Row<'_>) -> rusqlite::Result<ExportRecord> {
    let status: String = r.get("status")?;
    let checks: String = r.get("checks_json")?;
    Ok(ExportRecord {
        id: r.get("id")?,
        job_id: r.get("job_id")?,
        tenant_id: r.get("tenant_id")?,
        requester_id: r.get("requester_id")?,
        purpose: r.get("purpose")?,
        format: r.get("format")?,
        status: ExportStatus::parse(&status),
        // A check list that does not parse must not read as "no checks".
        checks: serde_json::from_str(&checks).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
        })?,
        requested_at_ms: r.get("requested_at_ms")?,
        decided_at_ms: r.get("decided_at_ms")?,
        package_location: r.get("package_location")?,
        package_sha256: r.get("package_sha256")?,
        policy_version: r.get("policy_version")?,
        quorum: r.get("quorum")?,
        recipient_id: r.get("recipient_id")?,
        permitted_use: r.get("permitted_use")?,
        expires_in_days: r.get("expires_in_days")?,
        product: {
            let json: String = r.get("product_json")?;
            if json.is_empty() {
                None
            } else {
                Some(serde_json::from_str(&json).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        17,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?)
            }
        },
        download_count: r.get("download_count")?,
        last_download_at_ms: r.get("last_download_at_ms")?,
    })
}

pub fn upsert_export(conn: &Connection, e: &ExportRecord) -> Result<()> {
    let checks = serde_json::to_string(&e.checks)
        .map_err(|err| ServerError::internal(format!("serialising checks: {err}")))?;
    let product = match &e.product {
        Some(p) => serde_json::to_string(p)
            .map_err(|err| ServerError::internal(format!("serialising a product: {err}")))?,
        None => String::new(),
    };
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO exports ({EXPORT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19, ?20, ?21, ?22)"
        ),
        params![
            e.id,
            e.job_id,
            e.tenant_id,
            e.requester_id,
            e.purpose,
            e.format,
            e.status.as_str(),
            checks,
            e.requested_at_ms,
            e.decided_at_ms,
            e.package_location,
            e.package_sha256,
            e.policy_version,
            e.quorum,
            e.recipient_id,
            e.permitted_use,
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
            e.download_count,
            e.last_download_at_ms
        ],
    )?;
    Ok(())
}

/// Counts one download (package or Flight fetch) of a product.
pub fn record_download(conn: &Connection, export_id: &str, at_ms: i64) -> Result<u64> {
    Ok(conn.query_row(
        "UPDATE exports SET download_count = download_count + 1, last_download_at_ms = ?2
         WHERE id = ?1 RETURNING download_count",
        params![export_id, at_ms],
        |r| r.get(0),
    )?)
}

/// Products (exports that were approved: approved, revoked or expired) naming `recipient_id`,
/// newest first.
pub fn products_of_recipient(conn: &Connection, recipient_id: &str) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE product_json != ''
         AND (recipient_id = ?1 OR (recipient_id = '' AND requester_id = ?1))
         ORDER BY requested_at_ms DESC LIMIT 500"
    ))?;
    let rows = stmt.query_map([recipient_id], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Products of one tenant, or of every tenant but `except_tenant`, newest first.
pub fn products(
    conn: &Connection,
    tenant_id: Option<&str>,
    except_tenant: Option<&str>,
) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE product_json != ''
         AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR tenant_id != ?2)
         ORDER BY requested_at_ms DESC LIMIT 500"
    ))?;
    let rows = stmt.query_map(params![tenant_id, except_tenant], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The product whose copy carries `fingerprint`.
pub fn product_by_fingerprint(
    conn: &Connection,
    fingerprint: &str,
) -> Result<Option<ExportRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {EXPORT_COLUMNS} FROM exports WHERE fingerprint = ?1 AND fingerprint != ''"
            ),
            [fingerprint],
            export_row,
        )
        .optional()?)
}

/// Products whose rows are exactly `rows_digest` (in any order).
pub fn products_with_rows(conn: &Connection, rows_digest: &str) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE rows_digest = ?1 AND rows_digest != ''
         ORDER BY requested_at_ms LIMIT 10000"
    ))?;
    let rows = stmt.query_map([rows_digest], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn export(conn: &Connection, id: &str) -> Result<Option<ExportRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE id = ?1"),
            [id],
            export_row,
        )
        .optional()?)
}

pub fn exports_of_tenant(conn: &Connection, tenant_id: &str) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE tenant_id = ?1 ORDER BY requested_at_ms DESC LIMIT 200"
    ))?;
    let rows = stmt.query_map([tenant_id], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Exports in review, oldest first, except those of `except_tenant` (a reviewer's own).
pub fn exports_in_review(
    conn: &Connection,
    except_tenant: Option<&str>,
) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE status = 'in_review'
         AND (?1 IS NULL OR tenant_id != ?1) ORDER BY requested_at_ms, id LIMIT 500"
    ))?;
    let rows = stmt.query_map([except_tenant], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn insert_export_vote(conn: &Connection, export_id: &str, v: &ExportVote) -> Result<()> {
    conn.execute(
        "INSERT INTO export_votes (export_id, reviewer_id, decision, shared_comment,
             private_comment, result_sha256, query_sha256, policy_version, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            export_id,
            v.reviewer_id,
            v.decision.as_str(),
            v.shared_comment,
            v.private_comment,
            v.result_sha256,
            v.query_sha256,
            v.policy_version,
            v.at_ms
        ],
    )
    .map_err(|e| unique_violation(e, "a vote of this reviewer on this export"))?;
    Ok(())
}

/// An export's votes in the order they were cast.
pub fn export_votes(conn: &Connection, export_id: &str) -> Result<Vec<ExportVote>> {
    let mut stmt = conn.prepare(
        "SELECT reviewer_id, decision, shared_comment, private_comment, result_sha256,
                query_sha256, policy_version, at_ms
         FROM export_votes WHERE export_id = ?1 ORDER BY at_ms, reviewer_id",
    )?;
    let rows = stmt.query_map([export_id], |r| {
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
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Appends a comment; returns it with its sequence number.
pub fn insert_export_comment(
    conn: &Connection,
    export_id: &str,
    author_id: &str,
    author_role: Role,
    private: bool,
    text: &str,
    at_ms: i64,
) -> Result<ExportComment> {
    let seq: u64 = conn.query_row(
        "SELECT coalesce(max(seq), 0) + 1 FROM export_comments WHERE export_id = ?1",
        [export_id],
        |r| r.get(0),
    )?;
    conn.execute(
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
        seq,
        author_id: author_id.to_owned(),
        author_role,
        private,
        text: text.to_owned(),
        at_ms,
    })
}

/// An export's comments in the order they were written.
pub fn export_comments(conn: &Connection, export_id: &str) -> Result<Vec<ExportComment>> {
    let mut stmt = conn.prepare(
        "SELECT seq, author_id, author_role, private, text, at_ms
         FROM export_comments WHERE export_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([export_id], |r| {
        let role: String = r.get(2)?;
        Ok(ExportComment {
            seq: r.get(0)?,
            author_id: r.get(1)?,
            author_role: role.parse().map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown role '{role}'").into(),
                )
            })?,
            private: r.get(3)?,
            text: r.get(4)?,
            at_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An export's votes, comments and events.
pub fn export_history(conn: &Connection, export_id: &str) -> Result<ExportHistory> {
    Ok(ExportHistory {
        votes: export_votes(conn, export_id)?,
        comments: export_comments(conn, export_id)?,
        events: export_events(conn, export_id)?,
    })
}

/// Appends a status change to an export's history; returns its sequence number.
pub fn append_export_event(
    conn: &Connection,
    export_id: &str,
    at_ms: i64,
    actor_id: &str,
    from_status: &str,
    to_status: &str,
    note: &str,
) -> Result<u64> {
    let seq: u64 = conn.query_row(
        "SELECT coalesce(max(seq), 0) + 1 FROM export_events WHERE export_id = ?1",
        [export_id],
        |r| r.get(0),
    )?;
    conn.execute(
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
    Ok(seq)
}

/// An export's history, oldest first.
pub fn export_events(conn: &Connection, export_id: &str) -> Result<Vec<ExportEvent>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at_ms, actor_id, from_status, to_status, note
         FROM export_events WHERE export_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([export_id], |r| {
        Ok(ExportEvent {
            seq: r.get("seq")?,
            at_ms: r.get("at_ms")?,
            actor_id: r.get("actor_id")?,
            from_status: r.get("from_status")?,
            to_status: r.get("to_status")?,
            note: r.get("note")?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Gives the release ledger one row per population of a released cell (its people and its
/// branch populations), keyed by (export, row, population): ledgers written before hold
/// population 0 only.
fn migrate_released_populations(conn: &Connection) -> Result<()> {
    let present: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('released_cells') WHERE name = 'population'",
        [],
        |r| r.get(0),
    )?;
    if present {
        return Ok(());
    }
    conn.execute_batch(
        "CREATE TABLE released_cells_v2 (
             export_id TEXT NOT NULL REFERENCES releases(export_id), tenant_id TEXT NOT NULL,
             row INTEGER NOT NULL, population INTEGER NOT NULL DEFAULT 0,
             units INTEGER NOT NULL, sketch BLOB NOT NULL, digest BLOB, screened_k INTEGER,
             PRIMARY KEY (export_id, row, population));
         INSERT INTO released_cells_v2
             (export_id, tenant_id, row, population, units, sketch, digest, screened_k)
             SELECT export_id, tenant_id, row, 0, units, sketch, digest, screened_k
             FROM released_cells;
         DROP TABLE released_cells;
         ALTER TABLE released_cells_v2 RENAME TO released_cells;
         CREATE INDEX IF NOT EXISTS released_cells_by_size ON released_cells (tenant_id, units);",
    )?;
    Ok(())
}

/// Moves exports of the single-reviewer gate (one `reviewer_id` and `comment` on the export,
/// status `pending_review`, checks with `passed: bool`) to the quorum review: the decision
/// becomes a vote bound to the job's hashes and the export's policy version, the history is
/// rebuilt as events, statuses and check outcomes get their new text, and the two columns go.
/// Runs once, in one transaction, on a store that still has `exports.reviewer_id`.
fn migrate_single_reviewer_exports(conn: &Connection) -> Result<()> {
    let legacy: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('exports') WHERE name = 'reviewer_id'",
        [],
        |r| r.get(0),
    )?;
    if !legacy {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
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
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT id, checks_json FROM exports")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, checks_json) in rows {
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
    tx.commit()?;
    Ok(())
}

/// Moves older exports forward: one ledger row per population, then the quorum review.
fn migrate(conn: &Connection) -> Result<()> {
    migrate_released_populations(conn)?;
    migrate_single_reviewer_exports(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::trail::{AuditLog, system_entry};
    use crate::jobs::records::tests::sample_job;
    use crate::store::Store;

    fn store_with_job(job_id: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = crate::domain::open_store(&dir.path().join("meta.db"), audit).unwrap();
        store
            .commit(&system_entry("test", "job", serde_json::json!({})), |tx| {
                crate::jobs::records::upsert_job(tx, &sample_job(job_id))
            })
            .unwrap();
        (dir, store)
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
    fn check_round_trip(record: ExportRecord) {
        let (_dir, store) = store_with_job(&record.job_id);
        store
            .commit(
                &system_entry("test", "export", serde_json::json!({})),
                |tx| upsert_export(tx, &record),
            )
            .unwrap();
        assert_eq!(
            store.read(|c| export(c, &record.id)).unwrap(),
            Some(record.clone())
        );
        assert_eq!(
            store
                .read(|c| exports_of_tenant(c, &record.tenant_id))
                .unwrap(),
            vec![record.clone()]
        );
    }

    #[test]
    fn an_export_in_review_reads_back_as_written() {
        check_round_trip(export_of("j_1"));
    }

    #[test]
    fn an_approved_export_reads_back_as_written() {
        check_round_trip(ExportRecord {
            status: ExportStatus::Approved,
            decided_at_ms: 12,
            package_location: "exports/ex_1.tar.sealed".into(),
            package_sha256: "abc".into(),
            ..export_of("j_1")
        });
    }

    #[test]
    fn votes_and_events_read_back_in_order() {
        let (_dir, store) = store_with_job("j_1");
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
        store
            .commit(
                &system_entry("test", "export", serde_json::json!({})),
                |tx| {
                    upsert_export(tx, &export_of("j_1"))?;
                    insert_export_vote(tx, "ex_1", &vote)?;
                    append_export_event(tx, "ex_1", 14, "p_eng", "submitted", "in_review", "")?;
                    append_export_event(tx, "ex_1", 15, "p_rev", "in_review", "approved", "q")
                },
            )
            .unwrap();
        assert_eq!(store.read(|c| export_votes(c, "ex_1")).unwrap(), vec![vote]);
        let events = store.read(|c| export_events(c, "ex_1")).unwrap();
        let moves: Vec<_> = events
            .iter()
            .map(|e| (e.from_status.as_str(), e.to_status.as_str()))
            .collect();
        assert_eq!(
            moves,
            [("submitted", "in_review"), ("in_review", "approved")]
        );
    }
}
