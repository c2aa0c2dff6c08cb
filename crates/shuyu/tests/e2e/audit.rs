//! The audit trail: tampering with the stored records is detected offline.

use crate::harness::fixtures::*;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn audit_tampering_is_detected() {
    let domain = Domain::new_sqlite();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "t", ["residents"]).await;
    p.engineer
        .run_sql("SELECT count(*) FROM residents", &sc, WAIT)
        .await
        .unwrap();
    drop(p);
    server.kill();
    let ok = audit_verify(&domain.data);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let tampers: [(&str, &str); 6] = [
        (
            "change a field",
            "UPDATE audit SET outcome = 'denied' WHERE seq = 5",
        ),
        (
            "flip one character of the detail",
            "UPDATE audit SET detail = replace(detail, '\"', '''') WHERE seq = 8",
        ),
        ("remove a record", "DELETE FROM audit WHERE seq = 6"),
        (
            "reorder two records",
            "UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; \
             UPDATE audit SET seq = 4 WHERE seq = -3;",
        ),
        (
            "remove the last record",
            "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
        ),
        (
            "insert a record",
            "INSERT INTO audit SELECT seq + 1000, at_ms, principal_id, role, tenant_id, action, target, outcome, detail, sealed_detail, hash, hash, mac FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
        ),
    ];
    for (what, sql) in tampers {
        let copy = domain
            .data
            .with_extension(format!("tamper-{}", uuid_like()));
        copy_dir(&domain.data, &copy);
        let conn = rusqlite::Connection::open(copy.join("meta.db")).unwrap();
        conn.execute_batch(sql).unwrap();
        assert!(
            conn.total_changes() > 0,
            "{what}: the tamper changed nothing"
        );
        drop(conn);
        let out = audit_verify(&copy);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what} went undetected: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Flipping a raw byte inside the stored record text is detected too.
    let copy = domain.data.with_extension("tamper-bytes");
    copy_dir(&domain.data, &copy);
    {
        let conn = rusqlite::Connection::open(copy.join("meta.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let db = copy.join("meta.db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Every occurrence, so the live record is among them (free pages may hold stale copies).
    let hits: Vec<usize> = bytes
        .windows(13)
        .enumerate()
        .filter(|(_, w)| *w == b"create_tenant")
        .map(|(at, _)| at)
        .collect();
    assert!(!hits.is_empty(), "an audit action in the file");
    for at in hits {
        bytes[at] ^= 0x20;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = audit_verify(&copy);
    assert_eq!(out.status.code(), Some(2));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("was changed"), "{text}");
}
