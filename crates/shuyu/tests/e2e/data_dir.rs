//! The data dir on disk and at its edges (issue 17): one server per data dir, private files,
//! an audit verification that writes nothing and catches edited decisions, objects no row
//! names removed at start, refusals at the transport counted and audited, and a read-only or
//! full disk answered plainly with the server reporting not ready.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use shuyu_client::{Credentials, production_sql, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A raw mTLS channel with `creds` (for calls the typed client does not make).
async fn channel(addr: &str, creds: &Path) -> tonic::transport::Channel {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let c = Credentials::from_dir(creds).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&c.ca_pem))
        .identity(Identity::from_pem(&c.cert_pem, &c.key_pem))
        .domain_name("localhost");
    Endpoint::from_shared(addr.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The server's readiness through the standard gRPC health service.
async fn serving(addr: &str, creds: &Path) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let status = HealthClient::new(channel(addr, creds).await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    status == ServingStatus::Serving as i32
}

/// Every file and folder under `dir` with its mode (symbolic links excluded).
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    walk_all(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            (p, m.permissions().mode() & 0o7777, m.is_dir())
        })
        .collect()
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk_all(&path));
        } else if entry.file_type().unwrap().is_file() {
            out.push(path);
        }
    }
    out
}

/// The audit records of a domain, read beside the server.
fn records(domain: &Domain) -> Vec<(String, String, String)> {
    domain
        .query_texts(
            "SELECT action, target, detail FROM audit ORDER BY seq",
            &["action", "target", "detail"],
        )
        .into_iter()
        .map(|r| {
            let text = |i: usize| r[i].clone().unwrap_or_default();
            (text(0), text(1), text(2))
        })
        .collect()
}

/// Stops the server the way Ctrl-C does (its shutdown path runs).
fn interrupt(mut server: Server) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", server.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_a_live_data_dir_is_refused_and_touches_nothing() {
    let domain = Domain::new_sqlite();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "lk", ["residents"]).await;
    // A job running on the live server.
    let slow = p
        .engineer
        .jobs
        .submit_job(production_sql(
            "SELECT sum(value % 7) AS s FROM range(100000000000)",
            &sc,
        ))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    eventually("the slow job to run", WAIT, async || {
        let job = p
            .engineer
            .jobs
            .get_job(pb::GetJobRequest {
                job_id: slow.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .job
            .unwrap();
        (job.status == pb::JobStatus::Running as i32).then_some(())
    })
    .await;
    let before = records(&domain).len();

    let second = run_bin(&[
        "serve",
        "--data-dir",
        domain.data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!second.status.success());
    let said = text(&second);
    assert!(said.contains("already served"), "{said}");
    assert!(said.contains(&server.child.id().to_string()), "{said}");
    assert!(!said.contains("serving on"), "{said}");

    // Nothing of the live server was touched: its job still runs, its trail did not move.
    let job = p
        .engineer
        .jobs
        .get_job(pb::GetJobRequest {
            job_id: slow.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Running as i32, "{}", job.error);
    let since: Vec<String> = records(&domain)[before..]
        .iter()
        .map(|(action, _, _)| action.clone())
        .collect();
    assert!(
        !since
            .iter()
            .any(|a| a == "server_start" || a == "job_interrupted" || a.contains("bind")),
        "{since:?}"
    );
    p.engineer
        .jobs
        .cancel_job(pb::CancelJobRequest { job_id: slow.id })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_dir_is_private_and_loosened_modes_are_tightened_at_start() {
    let domain = Domain::new_sqlite();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "pm", ["residents"]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let check = |when: &str| {
        let all = modes(&domain.data);
        assert!(
            all.iter().any(|(p, _, _)| p.ends_with("meta.db-wal")),
            "{when}"
        );
        assert!(
            all.iter().any(|(p, _, _)| p.ends_with("result.parquet")),
            "{when}"
        );
        for (path, mode, is_dir) in all {
            let want = if is_dir { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{when}: {} is {mode:o}", path.display());
        }
    };
    check("while serving");
    drop(p);
    server.kill();
    // Loosened by hand (a restore, a careless copy): tightened when a server opens it.
    for (path, mode) in [
        ("meta.db", 0o644),
        ("objects", 0o755),
        ("tls/ca.pem", 0o666),
    ] {
        std::fs::set_permissions(
            domain.data.join(path),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }
    std::fs::set_permissions(&domain.data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = domain.start();
    check("after a restart");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_writes_nothing_and_catches_edited_decisions_and_an_emptied_trail() {
    let domain = Domain::new_sqlite();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "av", ["residents"]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    let export = request_export(&mut p, &job.id).await;
    vote(
        &mut p.reviewer,
        &export.id,
        pb::ExportDecision::Reject,
        "not needed",
        "",
    )
    .await
    .unwrap();
    drop(p);
    server.kill();

    // Verification of a killed server's data dir (its log still beside it) changes no file.
    let snapshot = || {
        walk_all(&domain.data)
            .into_iter()
            .filter(|p| p.is_file() && !p.to_string_lossy().ends_with("-shm"))
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect::<Vec<_>>()
    };
    let before = snapshot();
    let ok = audit_verify(&domain.data);
    assert!(ok.status.success(), "{}", text(&ok));
    assert_eq!(snapshot(), before, "audit verify changed the data dir");

    let tampered = |what: &str, sql: &str| {
        let copy = domain.data.with_extension(format!("edit-{}", uuid_like()));
        copy_dir(&domain.data, &copy);
        let conn = rusqlite::Connection::open(copy.join("meta.db")).unwrap();
        conn.execute_batch(sql).unwrap();
        assert!(conn.total_changes() > 0, "{what}: changed nothing");
        drop(conn);
        let out = audit_verify(&copy);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what} went undetected: {}",
            text(&out)
        );
        text(&out)
    };
    let said = tampered(
        "a rejected export turned approved",
        "UPDATE exports SET status = 'approved'",
    );
    assert!(said.contains("exports row"), "{said}");
    let said = tampered(
        "a vote turned into an approval",
        "UPDATE export_votes SET decision = 'approve'",
    );
    assert!(said.contains("export_votes row"), "{said}");
    tampered(
        "an authorization extended",
        "UPDATE authorizations SET valid_until_ms = valid_until_ms + 31536000000",
    );
    tampered(
        "a revoked certificate's flag",
        "UPDATE certificates SET revoked = 1 WHERE rowid = 1",
    );
    let said = tampered(
        "every record and the head deleted",
        "DELETE FROM audit; DELETE FROM audit_head;",
    );
    assert!(said.contains("genesis"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreferenced_objects_are_removed_at_start_and_audited() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "or", ["residents"]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    let tenant = p.tenant_id.clone();
    drop(p);
    server.kill();
    let objects = domain.data.join("objects");
    let kept: Vec<PathBuf> = walk_all(&objects)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(kept.iter().any(|p| p.ends_with("result.parquet")));
    // What a crash leaves: a package whose vote never committed, a result of a job never
    // recorded, a half-written temporary file.
    let strays = [
        format!("exports/{tenant}/exp_never/pkg_x.pkg"),
        format!("results/{tenant}/job_never/result.parquet"),
        format!("exports/{tenant}/exp_never/.pkg_y.pkg.1-1.tmp"),
    ];
    for stray in &strays {
        let path = objects.join(stray);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"sealed bytes").unwrap();
    }
    let server = domain.start();
    for stray in &strays {
        assert!(!objects.join(stray).exists(), "{stray} is still there");
    }
    for path in &kept {
        assert!(path.exists(), "{} was removed", path.display());
    }
    let mut engineer = server.client(&domain.creds("engineer-or")).await;
    let still = engineer
        .jobs
        .get_job(pb::GetJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(still.status, pb::JobStatus::Succeeded as i32);
    drop(engineer);
    server.kill();
    let audited = records(&domain);
    let (_, _, detail) = audited
        .iter()
        .find(|(action, _, _)| action == "remove_unreferenced_objects")
        .expect("the removal is audited");
    for stray in &strays {
        assert!(detail.contains(stray.as_str()), "{detail}");
    }
    assert!(audit_verify(&domain.data).status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_certificates_and_garbled_requests_are_counted_and_audited() {
    let domain = Domain::new();
    let server = domain.start();
    let admin = domain.creds("admin");
    // Two calls with another domain's certificate: refused in plain words.
    let other = tempfile::tempdir().unwrap();
    let init = run_bin(&[
        "init",
        "--data-dir",
        other.path().join("d").to_str().unwrap(),
        "--creds-out",
        other.path().join("c").to_str().unwrap(),
        "--admin-id-number",
        &staff_id_number(),
    ]);
    assert!(init.status.success());
    // Its certificate and key, with this domain's CA to trust the server by.
    let foreign = other.path().join("mixed");
    std::fs::create_dir_all(&foreign).unwrap();
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(other.path().join("c").join(file), foreign.join(file)).unwrap();
    }
    std::fs::copy(admin.join("ca.pem"), foreign.join("ca.pem")).unwrap();
    for _ in 0..2 {
        let out = run_bin(&[
            "whoami",
            "--as",
            foreign.to_str().unwrap(),
            "--server",
            &server.addr,
        ]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("not issued by this domain's CA"),
            "{}",
            text(&out)
        );
    }
    // A request for a method that does not exist, and one whose message does not decode:
    // refused before any handler ran.
    let mut grpc = tonic::client::Grpc::new(channel(&server.addr, &admin).await);
    grpc.ready().await.unwrap();
    let nope = grpc
        .unary(
            tonic::Request::new(pb::WhoAmIRequest {}),
            tonic::codegen::http::uri::PathAndQuery::from_static("/shuyu.v1.SessionService/Nope"),
            tonic_prost::ProstCodec::<pb::WhoAmIRequest, pb::WhoAmIResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(nope.code(), Code::Unimplemented);
    grpc.ready().await.unwrap();
    // An int64 where GetJob expects a string: the message does not decode.
    let garbled = grpc
        .unary(
            tonic::Request::new(pb::AckAlertRequest { alert_id: 5 }),
            tonic::codegen::http::uri::PathAndQuery::from_static("/shuyu.v1.JobService/GetJob"),
            tonic_prost::ProstCodec::<pb::AckAlertRequest, pb::GetJobResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_ne!(garbled.code(), Code::Ok);
    interrupt(server);
    let refused: Vec<String> = records(&domain)
        .into_iter()
        .filter(|(action, _, _)| action == "transport_refused")
        .map(|(_, target, detail)| format!("{target} {detail}"))
        .collect();
    let find = |needle: &str| {
        refused
            .iter()
            .find(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no refusal with {needle:?}: {refused:?}"))
            .clone()
    };
    assert!(find("not issued by this domain's CA").contains("\"count\":2"));
    assert!(find("Unimplemented").contains("peer:127.0.0.1"));
    let garbled = find("GetJob");
    assert!(garbled.contains("before any handler ran"), "{garbled}");
    assert!(audit_verify(&domain.data).status.success());
}

/// Runs `script` (sh) as root of a new user and mount namespace, where it may mount.
fn in_mount_namespace(script: &str, args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args);
    command
}

#[test]
fn a_read_only_data_dir_is_refused_at_start_with_a_plain_message() {
    let domain = Domain::new();
    let out = in_mount_namespace(
        r#"mount --bind -o ro "$1" "$1" && exec "$2" serve --data-dir "$1" --listen 127.0.0.1:0"#,
        &[domain.data.to_str().unwrap(), BIN],
    )
    .output()
    .expect("unshare");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("read-only"), "{said}");
    assert!(!said.contains("serving on"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_gives_a_plain_status_and_the_server_reports_not_ready() {
    let domain = Domain::new_sqlite();
    let flags = tempfile::tempdir().unwrap();
    let mount = tempfile::tempdir().unwrap();
    let log = flags.path().join("server.log");
    // The domain copied onto a small tmpfs of its own, served there; the disk is filled and
    // freed when the test says so.
    let script = r#"
        set -e
        mount -t tmpfs -o size=64m tmpfs "$2"
        cp -a "$1/." "$2/"
        # The server dies with this shell (killed when the test ends, or fails).
        setpriv --pdeathsig KILL "$4" serve --data-dir "$2" --listen 127.0.0.1:0 \
            2>"$3/server.log" &
        while [ ! -e "$3/fill" ]; do sleep 0.05; done
        dd if=/dev/zero of="$2/filler" bs=1M 2>/dev/null || true
        touch "$3/filled"
        while [ ! -e "$3/free" ]; do sleep 0.05; done
        rm -f "$2/filler"
        touch "$3/freed"
        wait
    "#;
    let child = in_mount_namespace(
        script,
        &[
            domain.data.to_str().unwrap(),
            mount.path().to_str().unwrap(),
            flags.path().to_str().unwrap(),
            BIN,
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("unshare");
    let mut server = Server {
        child,
        addr: String::new(),
        log,
    };
    let mut line = String::new();
    BufReader::new(server.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split("https://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line:?}: {}", server.log_text()));
    server.addr = format!("https://localhost:{port}");
    let admin_creds = domain.creds("admin");
    let mut admin = server.client(&admin_creds).await;
    assert!(serving(&server.addr, &admin_creds).await);

    let wait_for = async |name: &str| {
        let path = flags.path().join(name);
        let what = format!("the mount helper's flag file {name}");
        eventually(&what, WAIT, async || path.exists().then_some(())).await;
    };
    std::fs::write(flags.path().join("fill"), b"").unwrap();
    wait_for("filled").await;
    // Writes now fail: plainly, not as INTERNAL; the server says it is not ready.
    let mut refused = None;
    for i in 0..5000 {
        match admin
            .admin
            .create_tenant(pb::CreateTenantRequest {
                name: format!("full-{i}"),
            })
            .await
        {
            Ok(_) => continue,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("no write was refused on a full disk");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("disk is full"), "{status:?}");
    assert!(!serving(&server.addr, &admin_creds).await);
    assert!(
        server.log_text().contains("disk is full"),
        "{}",
        server.log_text()
    );
    // Space again: ready again, and writes go through.
    std::fs::write(flags.path().join("free"), b"").unwrap();
    wait_for("freed").await;
    eventually("the server to report ready again", WAIT, async || {
        serving(&server.addr, &admin_creds).await.then_some(())
    })
    .await;
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: "after".into(),
        })
        .await
        .expect("a write once space is back");
}
