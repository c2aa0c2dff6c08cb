//! Plain-text rendering of API answers for the terminal.

use anyhow::Result;
use shuyu_client::v1 as pb;

/// Display width: wide (CJK) characters take two columns.
fn width(text: &str) -> usize {
    text.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

fn pad(text: &str, to: usize) -> String {
    format!("{text}{}", " ".repeat(to.saturating_sub(width(text))))
}

/// Prints a table with a header row.
pub fn print_table(header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(cell)).min(40);
            }
        }
    }
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = if width(c) > *w {
                    c.chars().take(*w / 2).collect::<String>() + "…"
                } else {
                    c.clone()
                };
                pad(&c, *w)
            })
            .collect();
        println!("  │ {} │", cells.join(" │ "));
    };
    line(header);
    println!(
        "  ├─{}─┤",
        widths
            .iter()
            .map(|w| "─".repeat(*w))
            .collect::<Vec<_>>()
            .join("─┼─")
    );
    for row in rows {
        line(row);
    }
}

pub fn print_masked(table: &pb::MaskedTable) {
    let rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|r| {
            r.values
                .iter()
                .zip(&r.is_null)
                .map(|(v, null)| if *null { "NULL".to_owned() } else { v.clone() })
                .collect()
        })
        .collect();
    print_table(&table.columns, &rows);
}

pub fn print_principals(principals: &[pb::Principal]) {
    let rows: Vec<Vec<String>> = principals
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.real_name.clone(),
                p.organisation.clone(),
                role(p.role).to_owned(),
                p.tenant_id.clone(),
            ]
        })
        .collect();
    print_table(
        &["id", "name", "organisation", "role", "tenant"].map(String::from),
        &rows,
    );
}

pub fn role(value: i32) -> &'static str {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Steward) => "steward",
        Ok(pb::Role::Engineer) => "engineer",
        Ok(pb::Role::Reviewer) => "reviewer",
        Ok(pb::Role::Auditor) => "auditor",
        Ok(pb::Role::Recipient) => "recipient",
        _ => "?",
    }
}

pub fn print_datasets(datasets: &[pb::Dataset]) {
    let rows: Vec<Vec<String>> = datasets
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.name.clone(),
                d.n_rows.to_string(),
                d.description.clone(),
            ]
        })
        .collect();
    print_table(
        &["id", "name", "rows", "description"].map(String::from),
        &rows,
    );
}

pub fn print_dataset(d: &pb::Dataset) {
    println!(
        "  {} ({}) — {} rows, source sha256 {}…",
        d.name,
        d.id,
        d.n_rows,
        &d.source_sha256.get(..16).unwrap_or("")
    );
    println!("  {}", d.description);
    let rows: Vec<Vec<String>> = d
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.data_type.clone(),
                c.classification.clone(),
                c.masking.clone(),
            ]
        })
        .collect();
    print_table(
        &["column", "type", "classification", "masking"].map(String::from),
        &rows,
    );
}

/// A time in ms since the epoch, UTC to the minute.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

pub fn job_mode(value: i32) -> &'static str {
    match pb::JobMode::try_from(value) {
        Ok(pb::JobMode::Lab) => "lab",
        _ => "production",
    }
}

pub fn scenario_status(value: i32) -> &'static str {
    match pb::ScenarioStatus::try_from(value) {
        Ok(pb::ScenarioStatus::Pending) => "pending",
        Ok(pb::ScenarioStatus::Approved) => "approved",
        Ok(pb::ScenarioStatus::Rejected) => "rejected",
        Ok(pb::ScenarioStatus::Expired) => "expired",
        _ => "?",
    }
}

pub fn category(value: i32) -> &'static str {
    match pb::ScenarioCategory::try_from(value) {
        Ok(pb::ScenarioCategory::PublicGovernance) => "public_governance",
        Ok(pb::ScenarioCategory::PublicWelfare) => "public_welfare",
        Ok(pb::ScenarioCategory::Commercial | pb::ScenarioCategory::Unspecified) | Err(_) => {
            "commercial"
        }
    }
}

fn yuan(fen: u64) -> String {
    format!("¥{}.{:02}", fen / 100, fen % 100)
}

pub fn print_product(p: &pb::Product) {
    println!(
        "  product {} — {} — for {} ({}) until {}",
        p.export_id,
        export_status(p.status),
        p.recipient_id,
        p.recipient_organisation,
        time(p.expires_at_ms)
    );
    println!("    permitted use: {}", p.permitted_use);
    println!(
        "    scenario {} ({}), tenant {}, job {}, {} rows",
        p.scenario_id,
        category(p.scenario_category),
        p.tenant_id,
        p.job_id,
        p.n_rows
    );
    let price = p.price.clone().unwrap_or_default();
    if price.free {
        println!("    price: free (public governance / public welfare)");
    } else {
        println!(
            "    price: {} per 10,000 rows + {} per download; rows {} + downloads so far = {}",
            yuan(price.per_10k_rows_fen),
            yuan(price.per_download_fen),
            yuan(price.rows_charge_fen),
            yuan(price.charge_fen)
        );
    }
    println!(
        "    downloads: {}{}",
        p.download_count,
        if p.last_download_at_ms > 0 {
            format!(", last at {}", time(p.last_download_at_ms))
        } else {
            String::new()
        }
    );
    println!(
        "    fingerprint {}{}",
        p.fingerprint,
        if p.round_counts_to > 1 {
            format!(", counts rounded to multiples of {}", p.round_counts_to)
        } else {
            String::new()
        }
    );
}

pub fn print_trace(t: &pb::TraceExportResponse) {
    println!(
        "traced to export {} of tenant {}: recipient {} ({})",
        t.export_id, t.tenant_id, t.recipient_id, t.recipient_organisation
    );
    let how = match t.matched_by.as_str() {
        "metadata" if t.row_order_consistent => {
            "by the fingerprint in its metadata; its row order agrees".to_owned()
        }
        "metadata" => {
            "by the fingerprint in its metadata; its rows were reordered or changed".to_owned()
        }
        _ => format!(
            "by the keyed order of its rows, among {} products with the same rows",
            t.n_candidates
        ),
    };
    println!("  matched {how}; fingerprint {}", t.fingerprint);
}

pub fn print_scenario(s: &pb::Scenario) {
    println!(
        "  scenario {} \"{}\" — {} (tenant {})",
        s.id,
        s.name,
        scenario_status(s.status),
        s.tenant_id
    );
    println!("  purpose: {}", s.purpose);
    println!("  category: {}", category(s.category));
    println!(
        "  valid {} to {}",
        time(s.valid_from_ms),
        time(s.valid_until_ms)
    );
    for item in &s.data_list {
        println!("  data: {} — {}", item.dataset_id, item.columns.join(", "));
    }
    for a in &s.approvals {
        let who = match a.capacity.as_str() {
            "admin" => "an admin".to_owned(),
            "extra" => format!("extra approver {} of {}", a.approver_id, a.dataset_id),
            _ => format!("steward {} of {}", a.approver_id, a.dataset_id),
        };
        let state = if !a.decided {
            "waiting".to_owned()
        } else {
            format!(
                "{} by {}{}",
                if a.approved { "approved" } else { "rejected" },
                a.decided_by,
                if a.comment.is_empty() {
                    String::new()
                } else {
                    format!(": {}", a.comment)
                }
            )
        };
        println!("    {who}: {state}");
    }
}

pub fn job_status(value: i32) -> &'static str {
    match pb::JobStatus::try_from(value) {
        Ok(pb::JobStatus::Queued) => "queued",
        Ok(pb::JobStatus::Running) => "running",
        Ok(pb::JobStatus::Succeeded) => "succeeded",
        Ok(pb::JobStatus::Failed) => "failed",
        Ok(pb::JobStatus::Cancelled) => "cancelled",
        _ => "?",
    }
}

/// A spinner on stderr while a job is queued or running (hidden when stderr is not a
/// terminal): stage, queue position, rows written, bytes scanned.
pub struct JobProgressBar {
    bar: indicatif::ProgressBar,
}

impl JobProgressBar {
    pub fn new(job_id: &str) -> JobProgressBar {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("  {spinner} {prefix} {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("job {job_id}"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        JobProgressBar { bar }
    }

    pub fn update(&self, job: &pb::Job) {
        let message = match &job.progress {
            Some(p) if p.stage == "queued" => format!("queued (position {})", p.queue_position),
            Some(p) => format!(
                "{}: {} rows written, {} scanned",
                p.stage,
                p.rows,
                bytes(p.bytes_scanned)
            ),
            None => job_status(job.status).to_owned(),
        };
        self.bar.set_message(message);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Bytes in binary units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn print_usage(usage: &pb::GetUsageResponse) {
    let day = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    println!(
        "  usage from {} to {} (UTC)",
        day(usage.from_ms),
        day(usage.to_ms)
    );
    let header: Vec<String> = [
        "tenant",
        "jobs (ok/failed/cancelled)",
        "cpu s",
        "scanned",
        "rows out",
        "peak memory",
        "wall s",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut rows = Vec::new();
    for t in &usage.tenants {
        let total = t.total.unwrap_or_default();
        rows.push(vec![
            format!("{} ({})", t.tenant_name, t.tenant_id),
            format!(
                "{} ({}/{}/{})",
                t.jobs, t.jobs_succeeded, t.jobs_failed, t.jobs_cancelled
            ),
            format!("{:.1}", total.cpu_ms as f64 / 1000.0),
            bytes(total.bytes_scanned),
            total.rows_produced.to_string(),
            bytes(total.peak_memory_bytes),
            format!("{:.1}", total.wall_ms as f64 / 1000.0),
        ]);
    }
    print_table(&header, &rows);
}

pub fn print_job(job: &pb::Job) {
    let mode = if job.mode == pb::JobMode::Lab as i32 {
        "lab".to_owned()
    } else {
        format!("production, scenario {}", job.scenario_id)
    };
    println!("  job {} — {} ({mode})", job.id, job_status(job.status));
    if !job.query_sha256.is_empty() {
        println!(
            "  {} query sha256 {}…{}",
            job.query_kind,
            &job.query_sha256[..16.min(job.query_sha256.len())],
            if job.promoted_from.is_empty() {
                String::new()
            } else {
                format!(", promoted from lab job {}", job.promoted_from)
            }
        );
    }
    if let Some(dp) = &job.dp {
        println!(
            "  differential privacy: ε = {:.4}, δ = {:.2e}; ≤ {} groups and {} rows per person; \
             groups under {} noisy people dropped; noise scales {}",
            dp.epsilon,
            dp.delta,
            dp.max_groups_per_unit,
            dp.max_rows_per_unit,
            dp.threshold,
            dp.measures.join(", ")
        );
    }
    if let Some(u) = &job.usage {
        println!(
            "  used {:.2} s CPU, {} scanned, peak memory {}, {:.2} s wall ({:.2} s queued)",
            u.cpu_ms as f64 / 1000.0,
            bytes(u.bytes_scanned),
            bytes(u.peak_memory_bytes),
            u.wall_ms as f64 / 1000.0,
            u.queued_ms as f64 / 1000.0
        );
    }
    if !job.error.is_empty() {
        println!("  error: {}", job.error);
    }
    if job.status == pb::JobStatus::Succeeded as i32 && job.mode == pb::JobMode::Lab as i32 {
        println!(
            "  {} rows computed on masked lab data (never exportable):",
            job.n_rows
        );
        if let Some(preview) = &job.preview {
            print_masked(preview);
        }
    } else if job.status == pb::JobStatus::Succeeded as i32 {
        let kind = if job.aggregate {
            "aggregate"
        } else {
            "row-level"
        };
        let rows_withheld = job.preview.as_ref().is_some_and(|p| p.rows_withheld);
        if rows_withheld {
            println!(
                "  {kind} result, encrypted in the domain; its rows and row count are withheld"
            );
        } else {
            println!(
                "  {} rows, {kind} result; result encrypted in the domain, preview of its ordinary columns:",
                job.n_rows
            );
        }
        if let Some(preview) = &job.preview {
            if !preview.columns.is_empty() {
                print_masked(preview);
            }
            if !preview.withheld_columns.is_empty() {
                println!("  withheld: {}", preview.withheld_columns.join(", "));
            }
            if !preview.note.is_empty() {
                println!("  ({})", preview.note);
            }
        }
    }
}

pub fn export_status(value: i32) -> &'static str {
    match pb::ExportStatus::try_from(value) {
        Ok(pb::ExportStatus::Refused) => "refused",
        Ok(pb::ExportStatus::InReview) => "in review",
        Ok(pb::ExportStatus::Approved) => "approved",
        Ok(pb::ExportStatus::Rejected) => "rejected",
        Ok(pb::ExportStatus::Returned) => "returned",
        Ok(pb::ExportStatus::Revoked) => "revoked",
        Ok(pb::ExportStatus::Expired) => "expired",
        Ok(pb::ExportStatus::Unspecified) | Err(_) => "?",
    }
}

pub fn export_decision(value: i32) -> &'static str {
    match pb::ExportDecision::try_from(value) {
        Ok(pb::ExportDecision::Approve) => "approve",
        Ok(pb::ExportDecision::Reject) => "reject",
        Ok(pb::ExportDecision::Return) => "return",
        Ok(pb::ExportDecision::Unspecified) | Err(_) => "?",
    }
}

fn check_mark(value: i32) -> &'static str {
    match pb::CheckOutcome::try_from(value) {
        Ok(pb::CheckOutcome::Pass) => "PASS",
        Ok(pb::CheckOutcome::Review) => "REVIEW",
        Ok(pb::CheckOutcome::Fail) => "FAIL",
        Ok(pb::CheckOutcome::Unspecified) | Err(_) => "?",
    }
}

/// A hex hash shortened for the terminal.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An event's status text for people ("" is the time before the request).
fn event_status(status: &str) -> String {
    match status {
        "" => "—".to_owned(),
        other => other.replace('_', " "),
    }
}

/// Someone named by id, or the role alone when the caller may not learn who it was.
fn who(id: &str, role: &str) -> String {
    if id.is_empty() {
        format!("a {role}")
    } else {
        format!("{role} {id}")
    }
}

pub fn print_export(e: &pb::Export) {
    let mut votes = format!("{}/{} approvals", e.approvals, e.quorum);
    if e.n_votes > 0 {
        let plural = if e.n_votes == 1 { "" } else { "s" };
        votes.push_str(&format!(", {} vote{plural} cast", e.n_votes));
    }
    if e.voted {
        votes.push_str(", you have voted");
    }
    println!(
        "  export {} of job {} — {} ({votes})",
        e.id,
        e.job_id,
        export_status(e.status)
    );
    println!("  purpose: {}", e.purpose);
    if !e.recipient_id.is_empty() {
        println!(
            "  for recipient {}: {} ({} days)",
            e.recipient_id, e.permitted_use, e.expires_in_days
        );
    }
    if let Some(p) = &e.product {
        print_product(p);
    }
    println!(
        "  requested by {} at {}, checked under policy {}",
        e.requester_id,
        time(e.requested_at_ms),
        e.policy_version
    );
    for check in &e.checks {
        println!(
            "    [{}] {}: {}",
            check_mark(check.outcome),
            check.name,
            check.detail
        );
    }
    if !e.events.is_empty() {
        println!("  history:");
        for ev in &e.events {
            println!(
                "    #{} {}  {} → {}{}{}",
                ev.seq,
                time(ev.at_ms),
                event_status(&ev.from_status),
                event_status(&ev.to_status),
                if ev.actor_id.is_empty() {
                    String::new()
                } else {
                    format!("  by {}", ev.actor_id)
                },
                if ev.note.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", ev.note)
                }
            );
        }
    }
    if !e.votes.is_empty() {
        println!("  votes:");
        for v in &e.votes {
            println!(
                "    {} {} at {} — bound to result {}…, query {}…, policy {}",
                export_decision(v.decision),
                v.reviewer_id,
                time(v.voted_at_ms),
                short(&v.result_sha256),
                short(&v.query_sha256),
                v.policy_version
            );
            if !v.shared_comment.is_empty() {
                println!("      shared: {}", v.shared_comment);
            }
            if !v.private_comment.is_empty() {
                println!("      private: {}", v.private_comment);
            }
        }
    } else if e.n_votes > 0 && e.status == pb::ExportStatus::InReview as i32 {
        println!("  votes: hidden until you have voted");
    }
    if !e.comments.is_empty() {
        println!("  comments:");
        for c in &e.comments {
            let kind = match (c.private, c.from_vote) {
                (true, _) => " [private]",
                (false, true) => " [with a vote]",
                (false, false) => "",
            };
            println!(
                "    {} {}{kind}: {}",
                time(c.at_ms),
                who(&c.author_id, role(c.author_role)),
                c.text
            );
        }
    }
    if !e.package_sha256.is_empty() {
        println!("  package sha256 {}", e.package_sha256);
    }
}

pub fn print_review(review: &pb::ReviewExportResponse) -> Result<()> {
    if let Some(export) = &review.export {
        print_export(export);
    }
    if review.query_kind == "substrait" {
        println!(
            "  query: a Substrait plan (dataframe job), sha256 {}",
            review.query_sha256
        );
        if review.rendered_sql.is_empty() {
            println!(
                "  not rendered as SQL: {} — read the sources below",
                review.unrendered_reason
            );
        } else {
            println!(
                "  the plan as SQL (DataFusion's unparser; the plan is what ran): {}",
                review.rendered_sql
            );
        }
    } else {
        println!("  SQL: {}", review.sql);
        println!("  query sha256 {}", review.query_sha256);
    }
    println!("  scenario: {}", review.scenario_id);
    println!("  inputs: {}", review.input_dataset_ids.join(", "));
    println!("  sources (every dataset and column the plan reads):");
    for source in &review.sources {
        println!(
            "    {} ({}): {}",
            source.table,
            if source.dataset_id.is_empty() {
                "not a dataset of the job"
            } else {
                &source.dataset_id
            },
            if source.columns.is_empty() {
                "no column, rows only".to_owned()
            } else {
                source.columns.join(", ")
            }
        );
    }
    println!(
        "  a vote binds to result sha256 {}, this query, and policy {}",
        review.result_sha256, review.policy_version
    );
    let rows: Vec<Vec<String>> = review
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.data_type.clone(),
                c.classification.clone(),
                c.masking.clone(),
            ]
        })
        .collect();
    print_table(
        &["output column", "type", "from classification", "treatment"].map(String::from),
        &rows,
    );
    let lineage: Vec<Vec<String>> = review
        .lineage
        .iter()
        .map(|c| vec![c.name.clone(), c.sources.join(", "), c.functions.join(", ")])
        .collect();
    print_table(
        &["output column", "sources", "through"].map(String::from),
        &lineage,
    );
    let influence: Vec<String> = review
        .row_influencing
        .iter()
        .map(|r| format!("{} ({}, {})", r.source, r.role, r.classification))
        .collect();
    println!(
        "  rows chosen by: {}",
        if influence.is_empty() {
            "—".to_owned()
        } else {
            influence.join("; ")
        }
    );
    println!("  privacy units: {}", review.units);
    if !review.unanalysable.is_empty() {
        println!("  NOT ANALYSABLE: {}", review.unanalysable.join(", "));
    }
    let batches = if review.result_arrow_ipc.is_empty() {
        Vec::new()
    } else {
        let reader =
            arrow::ipc::reader::StreamReader::try_new(review.result_arrow_ipc.as_slice(), None)?;
        reader.collect::<Result<Vec<_>, _>>()?
    };
    let shown: usize = batches.iter().map(|b| b.num_rows()).sum();
    if review.truncated {
        println!(
            "  result ({} rows; the first {shown} shown — the server sends at most its \
             [exports] review_rows):",
            review.n_rows
        );
    } else {
        println!("  full result ({} rows):", review.n_rows);
    }
    if !batches.is_empty() {
        println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    Ok(())
}

pub fn print_audit_record(r: &pb::AuditRecord) {
    let at = chrono::DateTime::from_timestamp_millis(r.at_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    println!(
        "  #{:<4} {at}  {:<8} {:<26} {:<9} {:<10} {} {}",
        r.seq, r.role, r.principal_id, r.outcome, r.action, r.target, r.detail_json
    );
}

pub fn print_manifest(m: &shuyu_verify::package::Manifest) {
    println!(
        "  export {} of job {} (tenant {})",
        m.export_id, m.job_id, m.tenant_id
    );
    println!("  purpose: {}", m.purpose);
    println!(
        "  requested by {}; {} of {} required approvals:",
        m.requester_id,
        m.approvals.len(),
        m.quorum
    );
    for a in &m.approvals {
        println!(
            "    {} at {} (result {}…, policy {}){}",
            a.reviewer_id,
            time(a.approved_at_ms),
            short(&a.result_sha256),
            a.policy_version,
            if a.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", a.comment)
            }
        );
    }
    for c in &m.checks {
        println!("  check {}: {}", c.name, c.outcome);
    }
    if let Some(p) = &m.product {
        println!(
            "  product for {} ({}) until {}: {}",
            p.recipient_id,
            p.recipient_organisation,
            time(p.expires_at_ms),
            p.permitted_use
        );
        let price = &p.price_basis;
        println!(
            "  scenario category {}; price {}",
            p.scenario_category,
            if price.free {
                "free".to_owned()
            } else {
                format!(
                    "{} per 10,000 rows + {} per download ({} rows: {})",
                    yuan(price.per_10k_rows_fen),
                    yuan(price.per_download_fen),
                    price.rows,
                    yuan(price.rows_charge_fen)
                )
            }
        );
        println!(
            "  fingerprint {} (rows {}{}{})",
            p.fingerprint,
            p.row_order,
            if p.round_counts_to > 1 {
                format!(", counts rounded to multiples of {}", p.round_counts_to)
            } else {
                String::new()
            },
            if p.rekeyed_columns.is_empty() {
                String::new()
            } else {
                format!(", pseudonyms re-keyed in {}", p.rekeyed_columns.join(", "))
            }
        );
    }
    println!(
        "  policy {}, scenario {}, {} query sha256 {}…",
        m.policy_version,
        m.scenario_id,
        m.query_kind,
        &m.query_sha256[..16.min(m.query_sha256.len())]
    );
    for d in &m.input_datasets {
        println!(
            "  input {} ({}) source sha256 {}…",
            d.name,
            d.id,
            &d.source_sha256[..16.min(d.source_sha256.len())]
        );
    }
    println!(
        "  result {}: {} rows, {} bytes, sha256 {}…",
        m.result.name,
        m.result.rows,
        m.result.bytes,
        &m.result.sha256[..16]
    );
    println!("  signed by domain key {}", m.domain_public_key);
}

/// Differential-privacy budgets as a table.
pub fn print_budgets(budgets: &[pb::PrivacyBudget]) {
    if budgets.is_empty() {
        println!("no budgets: no dataset is granted to the tenant");
        return;
    }
    println!(
        "{:<26} {:<24} {:>10} {:>10} {:>10}",
        "dataset", "name", "epsilon", "spent", "left"
    );
    for b in budgets {
        println!(
            "{:<26} {:<24} {:>10.4} {:>10.4} {:>10.4}",
            b.dataset_id,
            b.dataset_name,
            b.epsilon_total,
            b.epsilon_spent,
            (b.epsilon_total - b.epsilon_spent).max(0.0)
        );
    }
}
