//! The engine in-process: encryption at rest, ingest validation, masked samples, the SQL
//! sandbox, value-free errors and resource limits. The same sandbox corpus runs over gRPC in
//! `crates/shuyu/tests/e2e/sandbox.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shuyu_engine::{
    ColumnSpec, ColumnType, Engine, EngineError, GROUP_ROWS_COLUMN, IngestFormat, IngestOptions,
    JobError, JobLimits, JobRequest, Storage, TableSpec,
};
use shuyu_policy::{Classification, MaskingRule, Policy};
use shuyu_vault::{Envelope, KekProvider, SecretKey, VaultError};

/// Masking previews as snapshots (`expect![[...]]`, `UPDATE_EXPECT=1` updates them).
#[path = "engine/previews.rs"]
mod previews;

const CANARY_NAME: &str = "CANARYNAME豪";
const CANARY_ID: &str = "330203198807071236";
const CANARY_MOBILE: &str = "13999990001";
const CANARY_DIAGNOSIS: &str = "CANARYDIAG_ZQX";
const CANARY_COST: &str = "98765.43";
const CANARIES: [&str; 5] = [
    CANARY_NAME,
    CANARY_ID,
    CANARY_MOBILE,
    CANARY_DIAGNOSIS,
    CANARY_COST,
];

/// A fixed set of KEKs, as the server's key store would hand out.
#[derive(Debug)]
struct Keks(HashMap<String, SecretKey>);

impl KekProvider for Keks {
    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
        self.0
            .get(kek_id)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKey(kek_id.to_owned()))
    }
}

fn keks() -> Arc<Keks> {
    Arc::new(Keks(
        ["domain", "tenant:a", "tenant:b"]
            .into_iter()
            .map(|id| (id.to_owned(), SecretKey::generate()))
            .collect(),
    ))
}

struct Fixture {
    _temp: tempfile::TempDir,
    root: PathBuf,
    keks: Arc<Keks>,
    envelope: Arc<Envelope>,
    engine: Engine,
}

fn fixture() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("objects");
    let keks = keks();
    let envelope = Arc::new(Envelope::new(keks.clone()));
    let engine = Engine::new(Storage::local(&root).unwrap(), Arc::clone(&envelope));
    Fixture {
        _temp: temp,
        root,
        keks,
        envelope,
        engine,
    }
}

fn column(
    name: &str,
    data_type: ColumnType,
    classification: Classification,
    masking: MaskingRule,
) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        data_type,
        classification,
        masking,
    }
}

fn people_columns() -> Vec<ColumnSpec> {
    use Classification::*;
    vec![
        column(
            "name",
            ColumnType::String,
            DirectIdentifier,
            MaskingRule::PartialName,
        ),
        column(
            "id_number",
            ColumnType::String,
            DirectIdentifier,
            MaskingRule::Pseudonym,
        ),
        column(
            "mobile",
            ColumnType::String,
            DirectIdentifier,
            MaskingRule::PartialMobile,
        ),
        column(
            "birth_date",
            ColumnType::Date,
            QuasiIdentifier,
            "generalize_date:year".parse().unwrap(),
        ),
        column("district", ColumnType::String, Ordinary, MaskingRule::Keep),
        column(
            "diagnosis",
            ColumnType::String,
            Sensitive,
            MaskingRule::Suppress,
        ),
        column(
            "cost",
            ColumnType::Float64,
            Sensitive,
            "generalize_number:100".parse().unwrap(),
        ),
    ]
}

/// 300 rows in three districts, plus one row of canaries alone in district 北仑区.
fn people_csv() -> String {
    let mut csv = String::from("name,id_number,mobile,birth_date,district,diagnosis,cost\n");
    let districts = ["海曙区", "江北区", "鄞州区"];
    for i in 0..300 {
        csv.push_str(&format!(
            "王{i},33020319{:02}0101{i:03}X,1380000{i:04},19{:02}-01-01,{},高血压,{}.50\n",
            50 + i % 40,
            50 + i % 40,
            districts[i % 3],
            100 + i
        ));
    }
    csv.push_str(&format!(
        "{CANARY_NAME},{CANARY_ID},{CANARY_MOBILE},1988-07-07,北仑区,{CANARY_DIAGNOSIS},{CANARY_COST}\n"
    ));
    csv
}

impl Fixture {
    async fn ingest(&self, name: &str, id: &str, kek: &str) -> TableSpec {
        let (table, n_rows) = self
            .ingest_csv(name, id, kek, people_csv(), people_columns())
            .await;
        assert_eq!(n_rows, 301);
        table
    }

    /// `csv` stored as dataset `id` under `kek`, with `columns`; the table and its row count.
    async fn ingest_csv(
        &self,
        name: &str,
        id: &str,
        kek: &str,
        csv: String,
        columns: Vec<ColumnSpec>,
    ) -> (TableSpec, u64) {
        let location = format!("datasets/{id}/");
        let outcome = self
            .engine
            .ingest(
                IngestFormat::Csv,
                Bytes::from(csv),
                &columns,
                &location,
                kek,
                &IngestOptions::default(),
            )
            .await
            .expect("ingest");
        let table = TableSpec {
            name: name.into(),
            dataset_id: id.into(),
            location,
            privacy_unit: TableSpec::privacy_unit_of(&columns),
            columns,
        };
        (table, outcome.n_rows as u64)
    }

    fn job(&self, sql: &str, tables: &[TableSpec], pseudonym_key: &SecretKey) -> JobRequest {
        let policy = Policy::builtin();
        let n = JOBS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        JobRequest {
            scope: shuyu_engine::JobScope::Lab,
            job_id: format!("job_{n}"),
            sql: sql.into(),
            substrait_plan: None,
            tables: tables.to_vec(),
            pseudonym_key: pseudonym_key.clone(),
            result_file: format!("results/job_{n}/result.parquet"),
            result_kek: "tenant:a".into(),
            limits: JobLimits {
                max_sql_bytes: policy.limits.max_sql_bytes,
                memory_limit_bytes: 64 << 20,
                // A hang guard only: a loaded machine must not fail a test on time.
                timeout: Duration::from_secs(600),
                max_result_rows: 1_000_000,
                preview_rows: 20,
            },
            masking_defaults: policy.masking.clone(),
            min_entities: policy.disclosure.min_entities,
            dominance_n: policy.disclosure.dominance_n as usize,
            dp: None,
            spill: None,
        }
    }
}

static JOBS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ------------------------------------------------------------------------ encryption at rest

#[tokio::test(flavor = "multi_thread")]
async fn datasets_are_parquet_modular_encryption_files_with_no_plaintext() {
    let f = fixture();
    f.ingest("residents", "ds_a", "domain").await;
    let stored = files(&f.root);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let bytes = std::fs::read(&stored[0]).unwrap();
    // Encrypted footer: the file ends with the "PARE" magic, not "PAR1".
    assert_eq!(&bytes[bytes.len() - 4..], b"PARE");
    for canary in CANARIES
        .iter()
        .chain(["王1", "高血压", "海曙区", "district", "id_number"].iter())
    {
        assert!(
            !contains(&bytes, canary.as_bytes()),
            "{canary} is readable in the file"
        );
    }
    // Neither the key nor any key material is written in plain: only the KEK id.
    let kek = f.keks.kek("domain").unwrap();
    assert!(!contains(&bytes, kek.expose()));

    // A plain Parquet reader cannot open it.
    let plain = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        Bytes::from(bytes.clone()),
    );
    assert!(plain.is_err(), "read without keys");

    // An engine holding other keys cannot read it.
    let other = Engine::new(
        Storage::local(&f.root).unwrap(),
        Arc::new(Envelope::new(keks())),
    );
    let spec = TableSpec {
        name: "residents".into(),
        dataset_id: "ds_a".into(),
        location: "datasets/ds_a/".into(),
        columns: people_columns(),
        privacy_unit: None,
    };
    let key = SecretKey::generate();
    assert!(other.sample(&spec, 5, &key, 1).await.is_err());
    // The right keys read it.
    assert_eq!(
        f.engine.sample(&spec, 5, &key, 1).await.unwrap().rows.len(),
        5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_has_its_own_data_key_bound_to_its_path() {
    let f = fixture();
    let a = f.ingest("a", "ds_a", "domain").await;
    let b = f.ingest("b", "ds_b", "domain").await;
    let file_a = std::fs::read(f.root.join("datasets/ds_a/part-0.parquet")).unwrap();
    let file_b = std::fs::read(f.root.join("datasets/ds_b/part-0.parquet")).unwrap();
    assert_ne!(file_a, file_b, "same plaintext, different ciphertext");

    // A cold envelope unwraps two different data keys to read the two files.
    let envelope = Arc::new(Envelope::new(f.keks.clone()));
    let engine = Engine::new(Storage::local(&f.root).unwrap(), Arc::clone(&envelope));
    let key = SecretKey::generate();
    engine.sample(&a, 3, &key, 1).await.unwrap();
    engine.sample(&b, 3, &key, 1).await.unwrap();
    let stats = envelope.stats();
    assert_eq!(stats.kek_unwraps, 1, "{stats:?}");
    assert_eq!(stats.dek_unwraps, 2, "{stats:?}");
    // Reading again hits the cache rather than unwrapping again.
    engine.sample(&a, 3, &key, 1).await.unwrap();
    assert_eq!(envelope.stats().dek_unwraps, 2);
    assert!(envelope.stats().dek_cache_hits > stats.dek_cache_hits);

    // A file moved to another dataset's location no longer decrypts (path is the AAD prefix).
    std::fs::write(f.root.join("datasets/ds_b/part-0.parquet"), &file_a).unwrap();
    let fresh = Engine::new(
        Storage::local(&f.root).unwrap(),
        Arc::new(Envelope::new(f.keks.clone())),
    );
    assert!(
        fresh.sample(&b, 3, &key, 1).await.is_err(),
        "a moved file decrypted"
    );

    // An envelope restricted to other KEKs (a job of another tenant) cannot read it.
    let restricted = Engine::new(
        Storage::local(&f.root).unwrap(),
        Arc::new(Envelope::restricted_to(
            f.keks.clone(),
            vec!["tenant:b".into()],
        )),
    );
    assert!(restricted.sample(&a, 3, &key, 1).await.is_err());
    let _ = &f.envelope;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_results_are_encrypted_too() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let request = f.job("SELECT name, diagnosis, cost FROM residents", &[t], &key);
    let output = f.engine.run_job(&request).await.unwrap();
    assert_eq!(output.n_rows, 301);
    let bytes = std::fs::read(f.root.join(&request.result_file)).unwrap();
    assert_eq!(&bytes[bytes.len() - 4..], b"PARE");
    for canary in CANARIES {
        assert!(
            !contains(&bytes, canary.as_bytes()),
            "{canary} is readable in the result file"
        );
    }
    // The domain can read its own result back.
    let batches = f.engine.read_result(&request.result_file).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 301);
}

// ------------------------------------------------------------------------ ingest validation

/// Two columns: `a`, an ordinary string, and `b`, a sensitive integer.
fn a_string_b_number() -> Vec<ColumnSpec> {
    vec![
        column(
            "a",
            ColumnType::String,
            Classification::Ordinary,
            MaskingRule::Keep,
        ),
        column(
            "b",
            ColumnType::Int64,
            Classification::Sensitive,
            MaskingRule::Suppress,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_leaves_nothing_written() {
    let f = fixture();
    let two = a_string_b_number();
    let huge = format!("a,b\n{},1\n", "x".repeat(4096));
    let cases: Vec<(IngestFormat, Vec<u8>, &str)> = vec![
        (IngestFormat::Csv, b"a,b\n\"x,1\n".to_vec(), "line"),
        (IngestFormat::Csv, b"a,b\nx,1,2\n".to_vec(), "fields"),
        (
            IngestFormat::Csv,
            b"a,b\nx,SECRET42\n".to_vec(),
            "not a valid int64",
        ),
        (IngestFormat::Csv, b"a,b\nx\n".to_vec(), "fields"),
        (IngestFormat::Csv, b"b,a\nx,1\n".to_vec(), "header"),
        (IngestFormat::Csv, b"".to_vec(), ""),
        (IngestFormat::Csv, b"a,b\n".to_vec(), "no data rows"),
        (IngestFormat::Csv, huge.into_bytes(), "bytes"),
        (IngestFormat::Csv, b"a,b\nx,1\xff\n".to_vec(), ""),
        (
            IngestFormat::Parquet,
            b"PAR1 garbage PAR1".to_vec(),
            "not a valid Parquet",
        ),
        (IngestFormat::Parquet, Vec::new(), ""),
    ];
    let options = IngestOptions {
        max_row_bytes: 1024,
        ..IngestOptions::default()
    };
    for (format, input, expected) in cases {
        let shown = String::from_utf8_lossy(&input)
            .chars()
            .take(40)
            .collect::<String>();
        let result = f
            .engine
            .ingest(
                format,
                Bytes::from(input),
                &two,
                "datasets/bad/",
                "domain",
                &options,
            )
            .await;
        match result {
            Err(EngineError::InvalidInput(msg)) => {
                assert!(
                    msg.contains(expected),
                    "{shown:?}: {msg:?} lacks {expected:?}"
                );
                assert!(!msg.contains("SECRET42"), "{msg}");
                assert!(!msg.contains("xxxx"), "{msg}");
            }
            other => panic!("{shown:?}: expected InvalidInput, got {other:?}"),
        }
    }
    assert!(files(&f.root).is_empty(), "{:?}", files(&f.root));
}

/// Checks, by a job, that the `a_string_b_number` dataset at `location` holds the rows
/// `("row {i}", i)` for `i` in `0..n`: their count, sum, first name and last number.
async fn stores_rows_up_to(f: &Fixture, columns: &[ColumnSpec], location: &str, n: i64) {
    let table = TableSpec {
        name: "big".into(),
        dataset_id: "ds_big".into(),
        location: location.into(),
        columns: columns.to_vec(),
        privacy_unit: None,
    };
    let request = f.job(
        "SELECT count(*) AS n, sum(b) AS s, min(a) AS first, max(b) AS last FROM big",
        &[table],
        &SecretKey::generate(),
    );
    f.engine.run_job(&request).await.unwrap();
    let batches = f.engine.read_result(&request.result_file).await.unwrap();
    let cell =
        |i: usize| arrow::util::display::array_value_to_string(batches[0].column(i), 0).unwrap();
    assert_eq!(cell(0), n.to_string());
    assert_eq!(cell(1), (n * (n - 1) / 2).to_string());
    assert_eq!(cell(2), "row 0");
    assert_eq!(cell(3), (n - 1).to_string());
}

/// A CSV past the parallel threshold (about 6 MB) is parsed in chunks, one per core, each
/// streamed into its own encrypted part while it is parsed; an error near its end, found
/// after other parts were written, removes them.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_csv_is_stored_in_parts_and_a_late_error_leaves_nothing() {
    let f = fixture();
    let two = a_string_b_number();
    let n: i64 = 400_000;
    let mut csv = String::from("a,b\n");
    for i in 0..n {
        csv.push_str(&format!("row {i},{i}\n"));
    }
    let options = IngestOptions::default();
    let ingest = |csv: String, location: &'static str| {
        f.engine.ingest(
            IngestFormat::Csv,
            Bytes::from(csv),
            &two,
            location,
            "domain",
            &options,
        )
    };
    let outcome = ingest(csv.clone(), "datasets/big/").await.unwrap();
    assert_eq!(outcome.n_rows, n as u64);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get().min(8));
    assert_eq!(files(&f.root.join("datasets/big")).len(), cores);
    stores_rows_up_to(&f, &two, "datasets/big/", n).await;

    csv.push_str("x,CANARY77\n");
    let refused = ingest(csv, "datasets/bad/").await;
    match refused {
        Err(EngineError::InvalidInput(msg)) => {
            assert!(msg.contains(&format!("line {},", n + 2)), "{msg}");
            assert!(!msg.contains("CANARY77"), "{msg}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(files(&f.root.join("datasets/bad")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_parquet_is_ingested_when_it_matches_the_declaration() {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    let f = fixture();
    let columns = a_string_b_number();
    let parquet_of = |batch: RecordBatch| {
        let mut out = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    };
    let good = RecordBatch::try_from_iter([
        ("a", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ("b", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
    ])
    .unwrap();
    let outcome = f
        .engine
        .ingest(
            IngestFormat::Parquet,
            Bytes::from(parquet_of(good)),
            &columns,
            "datasets/p/",
            "domain",
            &IngestOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.n_rows, 2);
    // Columns that do not match the declaration are refused by name.
    let wrong = RecordBatch::try_from_iter([
        ("a", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ("c", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
    ])
    .unwrap();
    let refused = f
        .engine
        .ingest(
            IngestFormat::Parquet,
            Bytes::from(parquet_of(wrong)),
            &columns,
            "datasets/q/",
            "domain",
            &IngestOptions::default(),
        )
        .await;
    assert!(
        matches!(refused, Err(EngineError::InvalidInput(_))),
        "{refused:?}"
    );
    assert!(!f.root.join("datasets/q").exists());
}

/// A large Parquet upload is decoded a range of row groups at a time, each range streamed
/// into its own encrypted part; a damaged page in its last row group, found after the first
/// part was written, removes what was written.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_parquet_upload_is_stored_in_parts_and_a_late_error_leaves_nothing() {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use parquet::file::properties::WriterProperties;
    let f = fixture();
    let two = a_string_b_number();
    // 600,000 rows in eight row groups: two parts of 250,000 rows or more, whatever the cores.
    let n: i64 = 600_000;
    let batch = RecordBatch::try_from_iter([
        (
            "a",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("row {i}")),
            )) as ArrayRef,
        ),
        (
            "b",
            Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut file = Vec::new();
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(75_000))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    let metadata = writer.close().unwrap();
    assert_eq!(metadata.row_groups().len(), 8);
    let options = IngestOptions::default();
    let ingest = |file: Vec<u8>, location: &'static str| {
        f.engine.ingest(
            IngestFormat::Parquet,
            Bytes::from(file),
            &two,
            location,
            "domain",
            &options,
        )
    };
    let outcome = ingest(file.clone(), "datasets/big/").await.unwrap();
    assert_eq!(outcome.n_rows, n as u64);
    assert_eq!(files(&f.root.join("datasets/big")).len(), 2);
    stores_rows_up_to(&f, &two, "datasets/big/", n).await;

    // The last row group's page header of `b` overwritten: the footer still reads, the
    // page does not.
    let last = metadata.row_groups()[7].column(1);
    let offset = usize::try_from(last.data_page_offset()).unwrap();
    file[offset..offset + 16].fill(0xff);
    let refused = ingest(file, "datasets/bad/").await;
    match refused {
        Err(EngineError::InvalidInput(msg)) => {
            assert!(msg.contains("not a valid Parquet"), "{msg}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(files(&f.root.join("datasets/bad")).is_empty());
}

// ------------------------------------------------------------------------ masked samples

#[tokio::test(flavor = "multi_thread")]
async fn samples_are_masked_stable_and_pseudonyms_are_per_tenant() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key_a = SecretKey::generate();
    let key_b = SecretKey::generate();
    // The whole dataset fits in the sample pool, so asking for every row shows every row masked.
    let all_a = f.engine.sample(&t, 301, &key_a, 7).await.unwrap();
    let all_b = f.engine.sample(&t, 301, &key_b, 7).await.unwrap();
    assert_eq!(all_a.rows.len(), 301);
    let text = format!("{all_a:?}{all_b:?}");
    for canary in CANARIES.iter().chain(["王1,", "高血压"].iter()) {
        assert!(!text.contains(canary), "{canary} in a sample");
    }
    let column = |table: &shuyu_engine::MaskedTable, name: &str| -> Vec<Option<String>> {
        let i = table.columns.iter().position(|c| c == name).unwrap();
        table.rows.iter().map(|r| r[i].clone()).collect()
    };
    let ids_a = column(&all_a, "id_number");
    let ids_b = column(&all_b, "id_number");
    assert!(
        ids_a
            .iter()
            .all(|v| v.as_deref().is_some_and(|v| v.starts_with("p_")))
    );
    let distinct: std::collections::HashSet<_> = ids_a.iter().collect();
    assert_eq!(
        distinct.len(),
        301,
        "pseudonyms keep distinct values distinct"
    );
    assert!(
        ids_a.iter().zip(&ids_b).all(|(a, b)| a != b),
        "two tenants get different tokens"
    );
    // Same seed, same rows; the ordinary column is shown as is.
    assert_eq!(
        f.engine.sample(&t, 5, &key_a, 7).await.unwrap(),
        f.engine.sample(&t, 5, &key_a, 7).await.unwrap()
    );
    assert!(
        column(&all_a, "district")
            .iter()
            .any(|v| v.as_deref() == Some("海曙区"))
    );
    assert!(
        column(&all_a, "mobile")
            .iter()
            .all(|v| v.as_deref().is_some_and(|v| v.contains('*')))
    );

    // Joins on pseudonyms work inside a job.
    let request = f.job(
        "SELECT count(*) AS n FROM residents r JOIN residents s ON pseudonym(r.id_number) = pseudonym(s.id_number)",
        std::slice::from_ref(&t),
        &key_a,
    );
    let output = f.engine.run_job(&request).await.unwrap();
    assert_eq!(output.preview.rows[0][0].as_deref(), Some("301"));
    let request = f.job(
        "SELECT pseudonym(id_number) AS p FROM residents",
        std::slice::from_ref(&t),
        &key_a,
    );
    f.engine.run_job(&request).await.unwrap();
    let batches = f.engine.read_result(&request.result_file).await.unwrap();
    let tokens: std::collections::HashSet<Option<String>> = batches
        .iter()
        .flat_map(|b| {
            let column =
                arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            let array = arrow::array::AsArray::as_string::<i32>(&column).clone();
            (0..arrow::array::Array::len(&array)).map(move |i| Some(array.value(i).to_owned()))
        })
        .collect();
    // The tokens engineers are shown are made under a key no job can call: pseudonym() of
    // a guessed value never matches a shown token, so shown tokens cannot be reversed by
    // guessing (and the result's own tokens, under the tenant's key, are never shown).
    assert_eq!(tokens.len(), 301);
    assert!(
        ids_a.iter().all(|id| !tokens.contains(id)),
        "sample tokens must not be pseudonym() tokens"
    );
}

// ------------------------------------------------------------------------ the sandbox

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_corpus_is_refused_with_clear_messages() {
    let f = fixture();
    let t = f.ingest("health_records", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let corpus = include_str!("../../../tests/corpus/sandbox.txt");
    let mut n = 0;
    for sql in corpus
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let request = f.job(sql, std::slice::from_ref(&t), &key);
        match f.engine.run_job(&request).await {
            Err(e @ (JobError::Refused(_) | JobError::Plan(_))) => {
                assert!(!e.is_withheld());
                assert!(
                    e.public_message().len() > 12,
                    "{sql}: {}",
                    e.public_message()
                );
            }
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
        assert!(
            !f.root.join(&request.result_file).exists(),
            "{sql} left a result"
        );
        n += 1;
    }
    assert!(n >= 15);
    assert!(!Path::new("/tmp/shuyu-escape.csv").exists());
    // The statement kinds say what was refused.
    let refused = |sql: &str| {
        let request = f.job(sql, std::slice::from_ref(&t), &key);
        let engine = f.engine.clone();
        async move { engine.run_job(&request).await.unwrap_err().public_message() }
    };
    assert!(refused("EXPLAIN SELECT 1").await.contains("EXPLAIN"));
    assert!(
        refused("INSERT INTO health_records SELECT * FROM health_records")
            .await
            .to_lowercase()
            .contains("dml")
    );
    assert!(
        refused("SET datafusion.execution.batch_size = 1")
            .await
            .to_lowercase()
            .contains("statement")
    );
    // Oversized SQL is refused before it is parsed.
    let huge = format!("SELECT {} AS x", vec!["1"; 40_000].join("+"));
    let message = refused(&huge).await;
    assert!(message.contains("limit"), "{message}");
    // After all that, a normal job runs.
    let ok = f.job("SELECT count(*) AS n FROM health_records", &[t], &key);
    assert_eq!(f.engine.run_job(&ok).await.unwrap().n_rows, 1);
}

/// Every function DataFusion registers is either on the allow-list or refused with a reason:
/// an upgrade that adds a function fails here until someone decides about it.
#[test]
fn every_registered_function_is_allowed_or_refused_on_purpose() {
    use shuyu_engine::functions::{AGGREGATE, REFUSED, SCALAR, WINDOW};
    let ctx = datafusion::prelude::SessionContext::new();
    let state = ctx.state();
    let sorted = |names: Vec<&str>| {
        let mut names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        names.sort();
        names
    };
    let registered = sorted(
        state
            .scalar_functions()
            .keys()
            .map(String::as_str)
            .collect(),
    );
    let decided = sorted(
        SCALAR
            .iter()
            .copied()
            .chain(REFUSED.iter().map(|(name, _)| *name))
            .collect(),
    );
    assert_eq!(registered, decided, "scalar functions");
    assert_eq!(
        sorted(
            state
                .aggregate_functions()
                .keys()
                .map(String::as_str)
                .collect()
        ),
        sorted(AGGREGATE.to_vec()),
        "aggregate functions"
    );
    assert_eq!(
        sorted(
            state
                .window_functions()
                .keys()
                .map(String::as_str)
                .collect()
        ),
        sorted(WINDOW.to_vec()),
        "window functions"
    );
    assert!(REFUSED.iter().all(|(_, why)| why.len() > 10));
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_functions_are_named_and_allowed_ones_run() {
    let f = fixture();
    let t = f.ingest("health_records", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let request = f.job(
        "SELECT input_file_name() AS f FROM health_records",
        std::slice::from_ref(&t),
        &key,
    );
    let message = f
        .engine
        .run_job(&request)
        .await
        .unwrap_err()
        .public_message();
    assert!(message.contains("input_file_name()"), "{message}");
    assert!(!message.contains('/'), "{message}");
    let ok = f.job(
        "SELECT upper(district) AS d, count(*) AS n, stddev(cost) AS s, \
         rank() OVER (ORDER BY count(*)) AS r, pseudonym(district) AS p \
         FROM health_records GROUP BY district",
        &[t],
        &key,
    );
    let out = f.engine.run_job(&ok).await.unwrap();
    assert!(out.n_rows > 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn value_dependent_errors_are_withheld() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    for sql in [
        "SELECT CAST(name AS BIGINT) FROM residents",
        "SELECT CAST(diagnosis AS INT) FROM residents WHERE cost > 90000",
        "SELECT arrow_cast(diagnosis, 'Int64') FROM residents",
        "SELECT to_timestamp(name) FROM residents",
        "SELECT to_date(diagnosis) FROM residents",
        "SELECT CAST(mobile AS DATE) FROM residents",
        "SELECT regexp_like(district, name) FROM residents",
        "SELECT regexp_like(district, name || '(') FROM residents",
        "SELECT regexp_replace(district, diagnosis || '[', 'x') FROM residents",
        "SELECT CASE WHEN cost > 90000 THEN 1 / 0 ELSE 1 END AS x FROM residents",
        "SELECT CASE WHEN name = 'CANARYNAME豪' THEN CAST(mobile AS INT) END AS x FROM residents",
        "SELECT make_date(2000, CAST(cost AS INT), 1) FROM residents",
        "SELECT to_timestamp(diagnosis, '%Y') FROM residents",
    ] {
        let request = f.job(sql, std::slice::from_ref(&t), &key);
        match f.engine.run_job(&request).await {
            Err(e) => {
                let public = e.public_message();
                for canary in CANARIES {
                    assert!(!public.contains(canary), "{sql}: {public}");
                }
                assert!(!public.contains("王"), "{sql}: {public}");
                assert!(!public.contains("高血压"), "{sql}: {public}");
            }
            Ok(output) => {
                // Some of these may succeed (e.g. a regex that compiles); the preview is
                // masked by lineage then.
                let text = format!("{:?}", output.preview);
                for canary in CANARIES {
                    assert!(!text.contains(canary), "{sql}: {text}");
                }
            }
        }
    }
    // The CAST failure is the withheld kind, so the server attaches an error id.
    let request = f.job(
        "SELECT CAST(name AS BIGINT) FROM residents",
        std::slice::from_ref(&t),
        &key,
    );
    let err = f.engine.run_job(&request).await.unwrap_err();
    assert!(err.is_withheld(), "{err:?}");
}

// ------------------------------------------------------------------------ limits

#[tokio::test(flavor = "multi_thread")]
async fn memory_and_time_limits_stop_jobs_cleanly_without_spilling() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let mut hog = f.job(
        "SELECT value, count(*) AS n FROM range(3000000) GROUP BY value ORDER BY value",
        std::slice::from_ref(&t),
        &key,
    );
    hog.limits.memory_limit_bytes = 2 << 20;
    let err = f.engine.run_job(&hog).await.unwrap_err();
    assert!(matches!(err, JobError::ResourcesExhausted), "{err:?}");
    assert!(err.public_message().contains("memory"));
    // With a disk manager this sort and aggregation would spill and succeed; the sandbox
    // disables it, so nothing (plaintext Arrow IPC) is written outside the object store.
    assert!(
        files(&f.root.join("results")).is_empty(),
        "{:?}",
        files(&f.root)
    );

    let mut slow = f.job(
        "SELECT sum(value % 7) AS s FROM range(100000000000)",
        std::slice::from_ref(&t),
        &key,
    );
    slow.limits.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = f.engine.run_job(&slow).await.unwrap_err();
    assert!(matches!(err, JobError::Timeout), "{err:?}");
    // The whole range would take hours; the bound is only a generous hang guard.
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the timeout stopped the job"
    );

    let mut many = f.job("SELECT * FROM residents", std::slice::from_ref(&t), &key);
    many.limits.max_result_rows = 100;
    let err = f.engine.run_job(&many).await.unwrap_err();
    assert!(matches!(err, JobError::Refused(_)), "{err:?}");
    // Failed jobs leave no result files.
    assert!(
        files(&f.root.join("results")).is_empty(),
        "{:?}",
        files(&f.root)
    );
}

// ------------------------------------------------------------------------ results

#[tokio::test(flavor = "multi_thread")]
async fn aggregates_carry_group_sizes_and_previews_hide_small_groups() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let request = f.job(
        "SELECT district, count(*) AS n, max(cost) AS top FROM residents GROUP BY district ORDER BY district",
        std::slice::from_ref(&t),
        &key,
    );
    let output = f.engine.run_job(&request).await.unwrap();
    assert!(output.aggregate);
    assert_eq!(output.n_rows, 4);
    assert_eq!(output.input_datasets, vec!["ds_a".to_owned()]);
    assert_eq!(
        output.columns.len(),
        3,
        "the hidden column is not an output column"
    );
    // The stored result carries the hidden per-group row count.
    let batches = f.engine.read_result(&request.result_file).await.unwrap();
    let sizes = batches[0]
        .column_by_name(GROUP_ROWS_COLUMN)
        .expect("group sizes stored");
    let sizes = arrow::compute::cast(sizes, &arrow::datatypes::DataType::Int64).unwrap();
    let sizes: Vec<i64> =
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&sizes)
            .values()
            .to_vec();
    assert_eq!(sizes.iter().sum::<i64>(), 301);
    assert!(sizes.contains(&1));
    // In the preview, the aggregated cells of the one-person group are suppressed.
    let lone = output
        .preview
        .rows
        .iter()
        .find(|row| row[0].as_deref() == Some("北仑区"))
        .expect("the lone district is listed");
    assert_eq!(lone[1].as_deref(), Some(shuyu_policy::suppressed()));
    assert_eq!(lone[2].as_deref(), Some(shuyu_policy::suppressed()));
    assert!(!format!("{:?}", output.preview).contains(CANARY_COST));

    // A row-level query is not an aggregate; its sensitive columns are masked in the preview.
    let rows = f.job("SELECT district, diagnosis FROM residents", &[t], &key);
    let output = f.engine.run_job(&rows).await.unwrap();
    assert!(!output.aggregate);
    assert!(!format!("{:?}", output.preview).contains("高血压"));
}

// ------------------------------------------------------------------------ progress

#[tokio::test(flavor = "multi_thread")]
async fn progress_is_reported_while_a_long_aggregate_runs() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let mut slow = f.job(
        "SELECT sum(a.cost + b.cost + c.cost) AS s FROM residents a, residents b, residents c",
        std::slice::from_ref(&t),
        &key,
    );
    slow.limits.timeout = Duration::from_secs(600);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let seen = Arc::clone(&seen);
        Arc::new(move |p: shuyu_engine::JobProgress| seen.lock().unwrap().push(p))
    };
    let output = f.engine.run_job_with_progress(&slow, sink).await.unwrap();
    assert_eq!(output.n_rows, 1);
    let seen = seen.lock().unwrap().clone();
    let stages: Vec<_> = seen.iter().map(|p| p.stage).collect();
    assert_eq!(
        stages.first(),
        Some(&shuyu_engine::JobStage::Planning),
        "{seen:?}"
    );
    let running: Vec<_> = seen
        .iter()
        .filter(|p| p.stage == shuyu_engine::JobStage::Running)
        .collect();
    assert!(
        running.len() >= 3,
        "reported while no batch came out: {seen:?}"
    );
    assert_eq!(
        stages.last(),
        Some(&shuyu_engine::JobStage::Finishing),
        "{seen:?}"
    );
    assert!(
        running.last().unwrap().bytes_scanned > 0,
        "bytes scanned are live: {seen:?}"
    );
}

// ------------------------------------------------------------------------ spilling

/// Rows of the spilling sort: enough to need the disk under a 16 MiB pool, few enough to
/// finish in seconds on a loaded machine.
const SPILL_ROWS: u64 = 300_000;

/// `request` with a pool of `memory` bytes, spilling (up to 1 GiB) into `spill` if given.
fn limited(mut request: JobRequest, memory: usize, spill: Option<&Path>) -> JobRequest {
    request.limits.memory_limit_bytes = memory;
    request.spill = spill.map(|dir| shuyu_engine::SpillOptions {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
    });
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn spilling_is_encrypted_and_leaves_nothing_behind() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    // A sort of 300,000 rows carrying a canary string (about 9 MB, and their sorted copy
    // while sorted in memory) does not fit a 16 MiB pool.
    let sql = format!(
        "SELECT value, 'CANARY_SPILL_98765' AS tag FROM range({SPILL_ROWS}) ORDER BY value DESC"
    );
    let mut request = limited(f.job(&sql, std::slice::from_ref(&t), &key), 16 << 20, None);
    request.limits.max_result_rows = SPILL_ROWS;
    let err = f.engine.run_job(&request).await.unwrap_err();
    assert!(
        matches!(err, JobError::ResourcesExhausted),
        "without spilling the sort fails: {err:?}"
    );

    let spill_dir = f.root.join("spill-test");
    std::fs::create_dir_all(&spill_dir).unwrap();
    let mut request = limited(
        f.job(&sql, std::slice::from_ref(&t), &key),
        16 << 20,
        Some(&spill_dir),
    );
    request.limits.max_result_rows = SPILL_ROWS;
    // Watch the spill folder while the job runs: every file seen must be ciphertext.
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = Arc::clone(&watching);
        let dir = spill_dir.clone();
        std::thread::spawn(move || {
            let mut seen = 0usize;
            let mut plaintext = Vec::new();
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                for file in files(&dir) {
                    if let Ok(bytes) = std::fs::read(&file) {
                        seen += 1;
                        if contains(&bytes, b"CANARY_SPILL_98765") || contains(&bytes, b"ARROW1") {
                            plaintext.push(file);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (seen, plaintext)
        })
    };
    let output = f.engine.run_job(&request).await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (seen, plaintext) = watcher.join().unwrap();
    let output = output.expect("with encrypted spilling the sort completes");
    assert_eq!(output.n_rows, SPILL_ROWS);
    assert!(
        seen > 0,
        "the sort spilled (files were seen in the spill folder)"
    );
    assert!(plaintext.is_empty(), "plaintext spill files: {plaintext:?}");
    assert!(
        files(&spill_dir).is_empty(),
        "spill files are removed after use: {:?}",
        files(&spill_dir)
    );
}

/// Rows of each side of the join that outgrows its pool as a hash join.
const JOIN_ROWS: u64 = 2_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_join_out_of_memory_runs_again_with_sort_merge_joins_that_spill() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    // A hash join holds its whole build side (two million keys and their table, well over
    // 48 MiB) in memory; a sort-merge join sorts both sides, spilling what does not fit.
    // The keys are two permutations of the values (7919 and 104729 are primes, coprime to
    // the row count), so neither side comes sorted.
    let sql = format!(
        "SELECT count(*) AS n, sum(a.value) AS s FROM range({JOIN_ROWS}) a \
         JOIN range({JOIN_ROWS}) b \
         ON (a.value * 7919) % {JOIN_ROWS} = (b.value * 104729) % {JOIN_ROWS}"
    );
    let spill_dir = f.root.join("spill-join");
    std::fs::create_dir_all(&spill_dir).unwrap();
    let job = |memory: usize, spill: bool| {
        limited(
            f.job(&sql, std::slice::from_ref(&t), &key),
            memory,
            spill.then_some(spill_dir.as_path()),
        )
    };
    let sums = |file: &str| {
        let f = &f;
        let file = file.to_owned();
        async move {
            let batches = f.engine.read_result(&file).await.unwrap();
            let batch = &batches[0];
            let int = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .value(0)
            };
            (int(0), int(1))
        }
    };
    let expected = (JOIN_ROWS as i64, (JOIN_ROWS * (JOIN_ROWS - 1) / 2) as i64);

    // Enough memory: one run, with hash joins.
    let roomy = job(1 << 30, true);
    let output = f.engine.run_job(&roomy).await.unwrap();
    assert!(!output.sort_merge_rerun);
    assert_eq!(sums(&roomy.result_file).await, expected);

    // 48 MiB: the hash join runs out, the job runs again with a sort-merge join and spills.
    let tight = job(48 << 20, true);
    let output = f
        .engine
        .run_job(&tight)
        .await
        .expect("completes by spilling");
    assert!(output.sort_merge_rerun);
    assert_eq!(sums(&tight.result_file).await, expected);
    assert!(
        files(&spill_dir).is_empty(),
        "spill files are removed after use: {:?}",
        files(&spill_dir)
    );

    // Without a place to spill there is no rerun (its sorts could not spill): the memory
    // error.
    let err = f.engine.run_job(&job(48 << 20, false)).await.unwrap_err();
    assert!(matches!(err, JobError::ResourcesExhausted), "{err:?}");
}

/// A job joining two sides of `n` rows each, about 110 bytes a row, in a 48 MiB pool with a
/// place to spill, given `timeout`. The keys are a permutation of the other side's, so
/// neither side comes sorted.
fn wide_join(
    f: &Fixture,
    table: &TableSpec,
    n: u64,
    spill_dir: &Path,
    timeout: Duration,
) -> JobRequest {
    let sql = format!(
        "SELECT count(*) AS n, sum(length(a.pad) + length(b.pad)) AS s \
         FROM (SELECT value AS k, repeat('x', 100) || value AS pad FROM range({n})) a \
         JOIN (SELECT (value * 7919) % {n} AS k, repeat('y', 100) || value AS pad \
               FROM range({n})) b ON a.k = b.k"
    );
    let mut request = limited(
        f.job(&sql, std::slice::from_ref(table), &SecretKey::generate()),
        48 << 20,
        Some(spill_dir),
    );
    request.limits.timeout = timeout;
    request
}

/// The count and the sum of both sides' `pad` lengths `wide_join` over `n` rows gives.
async fn wide_join_result(f: &Fixture, request: &JobRequest, n: u64) {
    let batches = f.engine.read_result(&request.result_file).await.unwrap();
    let int =
        |i: usize| arrow::util::display::array_value_to_string(batches[0].column(i), 0).unwrap();
    let digits: u64 = (0..n).map(|v| v.to_string().len() as u64).sum();
    assert_eq!(int(0), n.to_string());
    assert_eq!(int(1), (2 * (100 * n + digits)).to_string());
}

/// DataFusion 55's repartition writes a batch it cannot reserve memory for to a spill pool,
/// and can wait forever on the wrong file of it (apache/datafusion#24883): this job did,
/// every time, before a repartition's batches in flight could overdraw the pool.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_repartitions_run_short_of_memory_does_not_hang() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let spill_dir = f.root.join("spill-in-flight");
    std::fs::create_dir_all(&spill_dir).unwrap();
    let n = 300_000;
    let request = wide_join(&f, &t, n, &spill_dir, Duration::from_secs(120));
    f.engine.run_job(&request).await.expect("completes");
    wide_join_result(&f, &request, n).await;
}

/// A sort-merge join whose sorts each spill many files: one sort's merge may not take the
/// whole pool (its memory cannot spill) and leave the other sorts none. Without a bounded
/// merge fan-in this rerun ran out of memory.
#[tokio::test(flavor = "multi_thread")]
async fn a_sort_merge_rerun_whose_sorts_spill_many_files_completes() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let spill_dir = f.root.join("spill-wide");
    std::fs::create_dir_all(&spill_dir).unwrap();
    let n = 500_000;
    let request = wide_join(&f, &t, n, &spill_dir, Duration::from_secs(600));
    let output = f
        .engine
        .run_job(&request)
        .await
        .expect("completes by spilling");
    assert!(output.sort_merge_rerun);
    wide_join_result(&f, &request, n).await;
    assert!(files(&spill_dir).is_empty());
}

// ------------------------------------------------------------------------ dataframe jobs

/// A Substrait plan built the way a client builds one: a DataFrame over tables that have
/// only the catalog's schema, serialized with DataFusion's Substrait producer.
async fn substrait_plan(sql: &str, tables: &[(&str, &TableSpec)]) -> Vec<u8> {
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use prost::Message;

    let ctx = SessionContext::new();
    for (name, spec) in tables {
        let table = MemTable::try_new(spec.arrow_schema(), vec![vec![]]).unwrap();
        ctx.register_table(*name, Arc::new(table)).unwrap();
    }
    let df = ctx.sql(sql).await.unwrap();
    datafusion_substrait::logical_plan::producer::to_substrait_plan(df.logical_plan(), &ctx.state())
        .unwrap()
        .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn substrait_plans_pass_the_same_sandbox() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let sql = "SELECT district, count(*) AS n, avg(cost) AS c FROM residents GROUP BY district";

    let by_sql = f
        .engine
        .run_job(&f.job(sql, std::slice::from_ref(&t), &key))
        .await
        .unwrap();
    let mut request = f.job("", std::slice::from_ref(&t), &key);
    request.substrait_plan = Some(substrait_plan(sql, &[("residents", &t)]).await);
    let by_plan = f.engine.run_job(&request).await.unwrap();
    assert_eq!(by_plan.n_rows, by_sql.n_rows);
    assert!(by_plan.aggregate);
    assert_eq!(
        by_plan
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["district", "n", "c"]
    );
    assert_eq!(by_plan.input_datasets, ["ds_a"]);
    // Reviewers read the plan rendered as SQL and its sources: the columns it reads.
    let rendered = by_plan.plan_text.sql.as_deref().expect("rendered as SQL");
    assert!(rendered.starts_with("SELECT"), "{rendered}");
    for part in ["residents", "district", "count(", "avg(", "GROUP BY"] {
        assert!(rendered.contains(part), "{part}: {rendered}");
    }
    assert_eq!(by_plan.plan_text.unrendered, None);
    let sources = vec![shuyu_engine::PlanSource {
        dataset_id: "ds_a".into(),
        table: "residents".into(),
        columns: vec!["district".into(), "cost".into()],
    }];
    assert_eq!(by_plan.plan_text.sources, sources);
    // A SQL job's text is what ran: it is not rendered again, its sources are listed.
    assert_eq!(by_sql.plan_text.sql, None);
    assert_eq!(by_sql.plan_text.sources, sources);
    // Lineage and masking apply as for SQL: the preview of a row-level plan is masked.
    let mut rows = f.job("", std::slice::from_ref(&t), &key);
    rows.substrait_plan = Some(
        substrait_plan(
            "SELECT name, diagnosis FROM residents",
            &[("residents", &t)],
        )
        .await,
    );
    let output = f.engine.run_job(&rows).await.unwrap();
    let text = format!("{:?}", output.preview);
    for canary in CANARIES {
        assert!(!text.contains(canary), "{text}");
    }

    // A table the tenant's catalog does not hold cannot be resolved.
    let mut foreign = f.job("", std::slice::from_ref(&t), &key);
    foreign.substrait_plan = Some(
        substrait_plan(
            "SELECT count(*) AS n FROM other_tenant_table",
            &[("other_tenant_table", &t)],
        )
        .await,
    );
    let err = f.engine.run_job(&foreign).await.unwrap_err();
    assert!(
        err.public_message().contains("other_tenant_table"),
        "{err:?}"
    );

    // Garbage and oversized plans are refused before anything runs.
    let mut garbage = f.job("", std::slice::from_ref(&t), &key);
    garbage.substrait_plan = Some(b"\xff\xff\xff not a plan".to_vec());
    let err = f.engine.run_job(&garbage).await.unwrap_err();
    assert!(
        err.public_message().contains("not a valid Substrait plan"),
        "{err:?}"
    );
    let mut huge = f.job("", std::slice::from_ref(&t), &key);
    huge.substrait_plan = Some(vec![0; shuyu_engine::MAX_SUBSTRAIT_BYTES + 1]);
    let err = f.engine.run_job(&huge).await.unwrap_err();
    assert!(err.public_message().contains("limit"), "{err:?}");
}

/// Tokens shown to engineers cannot be reversed by guessing: a lab copy's identifier tokens
/// and the preview's tokens of a derived identifier are made under keys no job can call, so
/// `pseudonym('a guess')` — callable in the lab — never matches one, even for the right guess.
#[tokio::test(flavor = "multi_thread")]
async fn shown_tokens_never_match_pseudonym_of_a_guess() {
    let f = fixture();
    let t = f.ingest("residents", "ds_a", "domain").await;
    let key = SecretKey::generate();
    let lab = f
        .engine
        .write_lab_table(&t, 301, &key, 7, "lab/ds_a/", "domain")
        .await
        .unwrap();
    // The right guess: the canary's own ID number (the one resident of 北仑区).
    let sql = format!(
        "SELECT id_number, concat(id_number, '') AS derived, pseudonym('{CANARY_ID}') AS guess \
         FROM residents WHERE district = '北仑区'"
    );
    let request = f.job(&sql, std::slice::from_ref(&lab), &key);
    let output = f.engine.run_job(&request).await.unwrap();
    let column = |name: &str| -> Vec<String> {
        let i = output
            .preview
            .columns
            .iter()
            .position(|c| c == name)
            .unwrap();
        output
            .preview
            .rows
            .iter()
            .filter_map(|r| r[i].clone())
            .collect()
    };
    let (shown, derived, guess) = (column("id_number"), column("derived"), column("guess"));
    // The lab shows the canary's token, made under the display key (so the comparisons
    // below compare tokens of the same value).
    let display = shuyu_engine::mask_value_array(
        &(Arc::new(arrow::array::StringArray::from(vec![CANARY_ID])) as arrow::array::ArrayRef),
        &MaskingRule::Pseudonym,
        &shuyu_engine::display_key(&key),
    )
    .unwrap();
    assert_eq!(shown, [display.value(0)]);
    let guess = &guess[0];
    assert!(guess.starts_with("p_"), "{guess}");
    assert!(
        !shown.contains(guess),
        "a lab token matches pseudonym() of its value"
    );
    assert!(
        !derived.contains(guess),
        "a preview token matches pseudonym() of its value"
    );
    assert!(
        derived.iter().all(|d| !shown.contains(d)),
        "a derived identifier's preview token is the lab token"
    );
    assert!(!format!("{:?}", output.preview).contains(CANARY_ID));
}

/// Bytes this process has read so far (`rchar` of `/proc/self/io`): what a read of local
/// files costs, whichever layer does it. Each test runs in its own process under nextest.
fn bytes_read_by_this_process() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("rchar")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sample_reads_the_first_pages_of_a_large_dataset_not_its_whole_row_group() {
    use Classification::*;
    let f = fixture();
    let columns = vec![
        column(
            "person",
            ColumnType::String,
            DirectIdentifier,
            MaskingRule::Pseudonym,
        ),
        column("district", ColumnType::String, Ordinary, MaskingRule::Keep),
        column("note", ColumnType::String, Sensitive, MaskingRule::Suppress),
        column(
            "cost",
            ColumnType::Float64,
            Sensitive,
            "generalize_number:100".parse().unwrap(),
        ),
    ];
    // 400,000 rows: one row group of many pages per column.
    let mut csv = String::from("person,district,note,cost\n");
    for i in 0..400_000u64 {
        let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        csv.push_str(&format!(
            "p{mixed:x},d{},n{:x},{}.25\n",
            i % 97,
            mixed >> 20,
            mixed % 100_000
        ));
    }
    let (spec, n_rows) = f.ingest_csv("big", "ds_big", "domain", csv, columns).await;
    assert_eq!(n_rows, 400_000);
    let stored: u64 = std::fs::read_dir(f.root.join(&spec.location))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let key = SecretKey::generate();
    let before = bytes_read_by_this_process();
    let sample = f.engine.sample(&spec, 20, &key, 7).await.expect("sample");
    let read = bytes_read_by_this_process() - before;
    assert_eq!(sample.rows.len(), 20);
    // The pool is the first 2,000 rows: the first page of each column and the footer.
    assert!(
        read * 4 < stored,
        "a sample read {read} bytes of a {stored}-byte dataset"
    );
    // Stable for a seed, and masked.
    let again = f.engine.sample(&spec, 20, &key, 7).await.expect("sample");
    assert_eq!(format!("{:?}", sample.rows), format!("{:?}", again.rows));
    assert!(
        sample
            .rows
            .iter()
            .all(|r| !r[2].as_deref().is_some_and(|note| note.starts_with('n'))),
        "notes are suppressed"
    );
}

/// A reviewer's head of a large result reads the pages holding its first rows, of the
/// visible columns only — not the result's first row group, nor the gate's sketches.
#[tokio::test]
async fn a_result_head_reads_the_first_pages_of_its_visible_columns() {
    use Classification::*;
    let f = fixture();
    let columns = vec![
        column(
            "person",
            ColumnType::String,
            DirectIdentifier,
            MaskingRule::Pseudonym,
        ),
        column("k", ColumnType::Int64, Ordinary, MaskingRule::Keep),
        column(
            "cost",
            ColumnType::Float64,
            Sensitive,
            MaskingRule::Suppress,
        ),
    ];
    // 300,000 visits of 30,000 people over 100,000 cells: a result of 100,000 cells, each
    // with its population's sketch.
    let mut csv = String::from("person,k,cost\n");
    for i in 0..300_000u64 {
        csv.push_str(&format!("p{},{},{}.5\n", i % 30_000, i % 100_000, i % 977));
    }
    let (spec, _) = f
        .ingest_csv("cells", "ds_cells", "domain", csv, columns)
        .await;
    let mut request = f.job(
        "SELECT k, count(*) AS n, sum(cost) AS total FROM cells GROUP BY k ORDER BY k",
        std::slice::from_ref(&spec),
        &SecretKey::generate(),
    );
    request.scope = shuyu_engine::JobScope::Production;
    let output = f.engine.run_job(&request).await.expect("job");
    assert_eq!(output.n_rows, 100_000);
    let stored = std::fs::metadata(f.root.join(&request.result_file))
        .unwrap()
        .len();

    let before = bytes_read_by_this_process();
    let head = f
        .engine
        .read_result_head(&request.result_file, 20)
        .await
        .expect("head");
    let read = bytes_read_by_this_process() - before;
    let head = arrow::compute::concat_batches(&head[0].schema(), &head).unwrap();
    assert_eq!(head.num_rows(), 20);
    let names: Vec<&str> = head
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["k", "n", "total"], "visible columns only");
    // (A scan under LIMIT read 28 % of it, the first row group of the visible columns; the
    // pages and the footer take under 5 %.)
    assert!(
        read * 10 < stored,
        "a head of 20 rows read {read} bytes of a {stored}-byte result"
    );
    // The same rows as the whole result's first.
    let all = f.engine.read_result(&request.result_file).await.unwrap();
    let all = arrow::compute::concat_batches(&all[0].schema(), &all).unwrap();
    for name in names {
        let whole = all.column_by_name(name).unwrap().slice(0, 20);
        let shown = head.column_by_name(name).unwrap();
        assert_eq!(
            arrow::compute::cast(shown, whole.data_type())
                .unwrap()
                .as_ref(),
            whole.as_ref(),
            "{name}"
        );
    }
}
