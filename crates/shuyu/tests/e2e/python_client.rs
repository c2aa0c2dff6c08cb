//! The Python client (`clients/python`) against the real server: its unit tests and stub
//! drift check, then its end-to-end script as an engineer — catalog, masked sample, a
//! datafusion-python DataFrame submitted as a Substrait plan in the lab, promoted to
//! production under a scenario, progress, masked preview, a plan naming a table outside the
//! catalog, and a canary that must never reach the client; then the production result as a
//! data product for a recipient, approved by two reviewers and fetched by the recipient with
//! pyarrow Flight over mTLS (rows and fingerprint metadata checked).
//!
//! The test builds its own virtual environment (Python 3.11+, packages from PyPI as pinned
//! in `clients/python/pyproject.toml`) under the cargo target dir and reuses it while the
//! pins are unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use shuyu_client::v1 as pb;

use crate::harness::fixtures::*;
use crate::harness::*;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A venv with the client and its pinned dependencies, keyed by the pyproject's hash.
fn venv_python() -> PathBuf {
    use sha2::Digest;
    let root = workspace_root();
    let pyproject = std::fs::read(root.join("clients/python/pyproject.toml")).expect("pyproject");
    let key: String = sha2::Sha256::digest(&pyproject)[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pyclient-venv-{key}"));
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&system).args(["-m", "venv"]).arg(&dir),
            "creating the venv",
        );
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg(format!("{}[dev]", root.join("clients/python").display())),
            "pip install ./clients/python[dev]",
        );
        std::fs::write(&ready, b"").expect("marker");
    }
    python
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_works_end_to_end() {
    let python = venv_python();
    let root = workspace_root();
    let client_dir = root.join("clients/python");
    run(
        Command::new(&python)
            .args(["-m", "unittest", "discover", "clients/python/tests"])
            .current_dir(&root),
        "the Python client's unit tests",
    );
    run(
        Command::new(&python)
            .args(["tools/gen_stubs.py", "--check"])
            .current_dir(&client_dir),
        "the Python stub drift check",
    );

    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "py", ["residents"]).await;
    for (i, canary) in [CANARY_ID, CANARY_NAME, CANARY_DIAGNOSIS]
        .into_iter()
        .enumerate()
    {
        let mut command = Command::new(&python);
        if i == 0 {
            // Once: the product flow, with the recipient's and the reviewers' credentials.
            command
                .env("SHUYU_RECIPIENT_CREDENTIALS", domain.creds("recipient-py"))
                .env(
                    "SHUYU_REVIEWER_CREDENTIALS",
                    format!(
                        "{}:{}",
                        domain.creds("reviewer-py").display(),
                        domain.creds("reviewer2-py").display()
                    ),
                );
        }
        let out = run(
            command
                .arg("tests/e2e_flow.py")
                .current_dir(&client_dir)
                .env("SHUYU_ENDPOINT", &server.addr)
                .env("SHUYU_CREDENTIALS", domain.creds("engineer-py"))
                .env("SHUYU_DATASET", "residents")
                .env("SHUYU_SCENARIO_ID", &sc)
                .env("SHUYU_CANARY", canary)
                .env("SHUYU_E2E_TIMEOUT", "120"),
            "clients/python/tests/e2e_flow.py",
        );
        assert!(
            out.trim_end().ends_with("python-client e2e ok"),
            "unexpected output:\n{out}"
        );
    }
    // The recipient fetched its product once over Flight, and that is on the record.
    let products = p
        .recipient
        .exports
        .list_products(pb::ListProductsRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(products.len(), 1, "{products:?}");
    assert_eq!(products[0].download_count, 1);
    let records = p
        .auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(records.iter().any(|r| r.action == "fetch_product"
        && r.outcome == "ok"
        && r.principal_id == p.recipient_id));
    assert!(
        records
            .iter()
            .any(|r| r.action == "fetch_product" && r.outcome == "not_found")
    );
    // What the script did is on the record: Substrait jobs in the lab and in production.
    let jobs = p
        .engineer
        .jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(
        jobs.iter().any(|j| j.query_kind == "substrait"
            && j.mode == pb::JobMode::Lab as i32
            && j.status == pb::JobStatus::Succeeded as i32),
        "{jobs:?}"
    );
    assert!(
        jobs.iter().any(|j| j.query_kind == "substrait"
            && j.mode == pb::JobMode::Production as i32
            && !j.promoted_from.is_empty()
            && j.status == pb::JobStatus::Succeeded as i32),
        "{jobs:?}"
    );
}
