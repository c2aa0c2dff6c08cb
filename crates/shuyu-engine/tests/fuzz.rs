//! Fuzz targets on stable Rust for the inputs that come from the wire: the worker's SQL
//! front door, Substrait plans, and ingest validation. Inputs are built from random bytes
//! with `arbitrary` (`Unstructured`) and run by proptest's runner, which catches panics and
//! shrinks a failing input; a stack overflow or an abort fails the whole run.
//!
//! Short runs in CI (a fixed seed, seconds); long runs on demand — see `tests/README.md`:
//!
//! ```sh
//! SHUYU_FUZZ_CASES=10000000 SHUYU_FUZZ_THREADS=2 \
//!     cargo test --release -p shuyu-engine --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! `SHUYU_FUZZ_<TARGET>_CASES` sets one target's count (targets: `ingest`, `sql_plan`,
//! `sql_run`, `substrait`), `SHUYU_FUZZ_SEED` the seed (a number, or `random`).
//!
//! Plan-only runs (`sql_plan`, most of `substrait`) give the job a zero time limit: the
//! engine parses, checks the depth, plans, verifies, checks nodes and functions, walks the
//! lineage and rewrites the plan for the gate synchronously, and the job is stopped at its
//! first wait for data. That is the whole front door at a fraction of a job's cost;
//! `sql_run` executes the jobs as well.

mod support;

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use shuyu_engine::{
    ColumnSpec, ColumnType, IngestFormat, IngestOptions, JobError, JobLimits, JobRequest,
    referenced_tables, validate_input,
};
use shuyu_policy::{Classification, MaskingRule, Policy};
use support::{CANARIES, Gate};

// ------------------------------------------------------------------------------ runner

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// How many inputs a target runs, on how many threads, from which seed.
#[derive(Debug, Clone, Copy)]
struct Campaign {
    cases: u64,
    threads: u64,
    seed: u64,
}

fn campaign(target: &str, ci_cases: u64) -> Campaign {
    let cases = env_u64(&format!("SHUYU_FUZZ_{}_CASES", target.to_uppercase()))
        .or_else(|| env_u64("SHUYU_FUZZ_CASES"))
        .unwrap_or(ci_cases);
    let threads = env_u64("SHUYU_FUZZ_THREADS").unwrap_or(1).clamp(1, 256);
    let seed = match std::env::var("SHUYU_FUZZ_SEED").as_deref() {
        Ok("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        Ok(text) => text.trim().parse().unwrap_or(17),
        Err(_) => 17,
    };
    Campaign {
        cases,
        threads,
        seed,
    }
}

/// Runs `body` on `campaign.cases` inputs of type `T`, each built from up to `max_len`
/// random bytes, on `campaign.threads` threads (each with `setup`'s state and a 256 MiB
/// stack, as the worker's planning thread has). Panics with the failing input.
fn fuzz<T, S>(
    target: &str,
    campaign: Campaign,
    max_len: usize,
    setup: impl Fn() -> S + Sync,
    body: impl Fn(&S, T) + Sync,
) where
    T: for<'a> Arbitrary<'a> + Debug,
{
    let ran = AtomicU64::new(0);
    let started = Instant::now();
    let report_every = (campaign.cases / 10).max(100_000);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..campaign.threads)
            .map(|thread| {
                let share = campaign.cases / campaign.threads
                    + u64::from(thread < campaign.cases % campaign.threads);
                let (setup, body, ran) = (&setup, &body, &ran);
                std::thread::Builder::new()
                    .name(format!("fuzz-{target}-{thread}"))
                    .stack_size(256 << 20)
                    .spawn_scoped(scope, move || {
                        let state = setup();
                        // Each target and thread draws its own inputs from the seed.
                        let mut seed = [0u8; 32];
                        seed[..8].copy_from_slice(&campaign.seed.to_le_bytes());
                        seed[8..16].copy_from_slice(&thread.to_le_bytes());
                        for (i, b) in target.bytes().enumerate() {
                            seed[16 + i % 16] ^= b;
                        }
                        let config = Config {
                            cases: u32::try_from(share).unwrap_or(u32::MAX),
                            failure_persistence: None,
                            max_shrink_iters: 2_000,
                            ..Config::default()
                        };
                        let mut runner = TestRunner::new_with_rng(
                            config,
                            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
                        );
                        let outcome = runner.run(
                            &proptest::collection::vec(any::<u8>(), 0..max_len),
                            |data| {
                                let n = ran.fetch_add(1, Ordering::Relaxed) + 1;
                                if n % report_every == 0 {
                                    eprintln!(
                                        "fuzz {target}: {n} inputs, {:.0} s",
                                        started.elapsed().as_secs_f64()
                                    );
                                }
                                if let Ok(input) = T::arbitrary(&mut Unstructured::new(&data)) {
                                    body(&state, input);
                                }
                                Ok(())
                            },
                        );
                        match outcome {
                            Ok(()) => {}
                            Err(TestError::Fail(reason, data)) => {
                                let input = T::arbitrary(&mut Unstructured::new(&data));
                                panic!(
                                    "fuzz {target} (seed {}, thread {thread}): {reason}\n\
                                     input: {input:#?}\nbytes: {}",
                                    campaign.seed,
                                    hex::encode(&data)
                                );
                            }
                            Err(TestError::Abort(reason)) => panic!("fuzz {target}: {reason}"),
                        }
                    })
                    .expect("a fuzz thread")
            })
            .collect();
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    eprintln!(
        "fuzz {target}: {} inputs, 0 panics, {:.1} s, seed {}, {} thread(s)",
        ran.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        campaign.seed,
        campaign.threads
    );
}

/// Picks one of `items`.
fn pick<'a, T: ?Sized>(u: &mut Unstructured<'_>, items: &'a [&'a T]) -> ArbResult<&'a T> {
    Ok(items[u.choose_index(items.len())?])
}

// ------------------------------------------------------------------------- SQL grammar

/// Tables and columns of the fixture (`support::gate`).
const TABLES: &[(&str, &[&str])] = &[
    (
        "visits",
        &[
            "person_id",
            "district",
            "birth_year",
            "diagnosis",
            "cost",
            "year",
        ],
    ),
    ("persons", &["person_id", "insured"]),
    ("notes", &["person_id", "note"]),
];

/// Functions whose numeric arguments size their output: only small literals go there, so
/// that a generated query does not ask for gigabytes (the worker's address-space ceiling
/// handles that; a fuzz run has none).
const SIZING: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "array_repeat",
    "list_repeat",
    "array_resize",
    "list_resize",
    "generate_series",
    "range",
    "overlay",
    "substr",
    "substring",
    "left",
    "right",
    "to_char",
    "factorial",
];

/// Literals chosen for their edges.
const ODD_LITERALS: &[&str] = &[
    "0",
    "-1",
    "1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "0.0",
    "-0.0",
    "1e308",
    "-1e308",
    "1e-320",
    "'NaN'::double",
    "'inf'::double",
    "'-inf'::double",
    "NULL",
    "TRUE",
    "FALSE",
    "''",
    "' '",
    "'a''b'",
    "'%'",
    "'_'",
    "'\\'",
    "'数域'",
    "'😀'",
    "'\u{0}'",
    "'2024-02-29'",
    "'9999-12-31'",
    "'0001-01-01'",
    "DATE '2020-01-01'",
    "TIMESTAMP '2020-01-01 00:00:00'",
    "INTERVAL '1' DAY",
    "INTERVAL '-1000000' YEAR",
    "X'FF00'",
    "make_array(1, 2, 3)",
    "[1, NULL, 3]",
    "{'a': 1}",
    "12345678901234567890.123456789",
    "CAST(1 AS DECIMAL(38, 10))",
    "CAST(NULL AS VARCHAR)",
];

const CASTS: &[&str] = &[
    "BIGINT",
    "INT",
    "SMALLINT",
    "TINYINT",
    "DOUBLE",
    "FLOAT",
    "VARCHAR",
    "DATE",
    "TIMESTAMP",
    "BOOLEAN",
    "DECIMAL(10, 2)",
    "DECIMAL(38, 0)",
    "BYTEA",
];

const BINARY_OPS: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "AND",
    "OR",
    "||",
    "LIKE",
    "ILIKE",
    "NOT LIKE",
    "IS DISTINCT FROM",
    "IS NOT DISTINCT FROM",
    "&",
    "|",
    "#",
    "<<",
    ">>",
    "~",
    "!~",
    "~*",
    "@>",
    "<@",
];

const STATEMENTS: &[&str] = &[
    "COPY visits TO '/tmp/x.csv'",
    "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO visits VALUES (1)",
    "DELETE FROM visits",
    "SET datafusion.runtime.memory_limit = '1G'",
    "SHOW ALL",
    "EXPLAIN SELECT * FROM visits",
    "EXPLAIN ANALYZE SELECT count(*) FROM visits",
    "DROP TABLE visits",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "DESCRIBE visits",
    "PREPARE p AS SELECT 1",
];

/// Builds one query of the fixture's tables; `execute` keeps it cheap enough to run.
struct SqlGen<'u, 'd> {
    u: &'u mut Unstructured<'d>,
    execute: bool,
    /// Columns in scope: (qualifier, column).
    scope: Vec<(String, &'static str)>,
    budget: u32,
}

impl SqlGen<'_, '_> {
    fn chance(&mut self, percent: u8) -> ArbResult<bool> {
        Ok(self.u.int_in_range(0..=99u8)? < percent)
    }

    fn column(&mut self) -> ArbResult<String> {
        if self.scope.is_empty() || self.chance(3)? {
            return Ok(pick(self.u, &["nope", "x", "__shuyu_units", "ctid", "*"])?.to_owned());
        }
        let (qualifier, column) = self.scope[self.u.choose_index(self.scope.len())?].clone();
        Ok(if self.chance(40)? {
            format!("{qualifier}.{column}")
        } else {
            column.to_owned()
        })
    }

    fn literal(&mut self) -> ArbResult<String> {
        Ok(match self.u.int_in_range(0..=5u8)? {
            0 => pick(self.u, ODD_LITERALS)?.to_owned(),
            1 => self.u.arbitrary::<i64>()?.to_string(),
            2 => format!("{:?}", self.u.arbitrary::<f64>()?).replace("inf", "1e308"),
            3 => {
                let text: String = self.u.arbitrary()?;
                format!(
                    "'{}'",
                    text.chars()
                        .take(40)
                        .collect::<String>()
                        .replace('\'', "''")
                )
            }
            _ => self.u.int_in_range(-3i64..=3000)?.to_string(),
        })
    }

    fn small_int(&mut self) -> ArbResult<String> {
        Ok(self.u.int_in_range(-2i64..=64)?.to_string())
    }

    fn function(&mut self, depth: u32) -> ArbResult<String> {
        let lists: [&[&str]; 3] = [
            shuyu_engine::functions::SCALAR,
            &[
                "pseudonym",
                "mask_id",
                "mask_mobile",
                "mask_name",
                "generalize_date",
                "generalize_number",
                "input_file_name",
                "version",
                "no_such_function",
            ],
            SIZING,
        ];
        let list = lists[self.u.choose_index(lists.len())?];
        let name = list[self.u.choose_index(list.len())?];
        let arity = self.u.int_in_range(0..=3u8)?;
        let sizing = SIZING.contains(&name);
        let mut args = Vec::new();
        for i in 0..arity {
            args.push(if sizing && i > 0 {
                self.small_int()?
            } else {
                self.expr(depth + 1)?
            });
        }
        Ok(format!("{name}({})", args.join(", ")))
    }

    fn aggregate(&mut self, depth: u32) -> ArbResult<String> {
        let name = pick(self.u, shuyu_engine::functions::AGGREGATE)?;
        let distinct = if self.chance(15)? { "DISTINCT " } else { "" };
        let arg = if self.chance(20)? {
            "*".to_owned()
        } else {
            self.expr(depth + 1)?
        };
        let extra = if self.chance(20)? {
            format!(", {}", self.literal()?)
        } else {
            String::new()
        };
        let filter = if self.chance(10)? {
            format!(" FILTER (WHERE {})", self.expr(depth + 1)?)
        } else {
            String::new()
        };
        Ok(format!("{name}({distinct}{arg}{extra}){filter}"))
    }

    fn window(&mut self, depth: u32) -> ArbResult<String> {
        let name = pick(self.u, shuyu_engine::functions::WINDOW)?;
        let arg = if self.chance(50)? {
            self.expr(depth + 1)?
        } else {
            String::new()
        };
        let partition = if self.chance(60)? {
            format!("PARTITION BY {} ", self.column()?)
        } else {
            String::new()
        };
        let order = if self.chance(60)? {
            format!("ORDER BY {} ", self.column()?)
        } else {
            String::new()
        };
        let frame = if self.chance(20)? {
            pick(
                self.u,
                &[
                    "ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING",
                    "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
                    "ROWS 9223372036854775807 PRECEDING",
                    "GROUPS BETWEEN 2 PRECEDING AND CURRENT ROW",
                ],
            )?
        } else {
            ""
        };
        Ok(format!("{name}({arg}) OVER ({partition}{order}{frame})"))
    }

    fn expr(&mut self, depth: u32) -> ArbResult<String> {
        self.budget = self.budget.saturating_sub(1);
        if depth > 12 || self.budget == 0 || self.u.is_empty() {
            return if self.chance(60)? {
                self.column()
            } else {
                self.literal()
            };
        }
        Ok(match self.u.int_in_range(0..=19u8)? {
            0..=3 => self.column()?,
            4..=5 => self.literal()?,
            6..=7 => format!(
                "{} {} {}",
                self.expr(depth + 1)?,
                pick(self.u, BINARY_OPS)?,
                self.expr(depth + 1)?
            ),
            8 => format!(
                "{}({})",
                pick(self.u, &["-", "NOT ", "+", "~"])?,
                self.expr(depth + 1)?
            ),
            9..=10 => self.function(depth)?,
            11 => self.aggregate(depth)?,
            12 => self.window(depth)?,
            13 => format!(
                "{}({} AS {})",
                pick(self.u, &["CAST", "TRY_CAST"])?,
                self.expr(depth + 1)?,
                pick(self.u, CASTS)?
            ),
            14 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.expr(depth + 1)?,
                self.expr(depth + 1)?,
                self.expr(depth + 1)?
            ),
            15 => format!(
                "{} {}IN ({})",
                self.expr(depth + 1)?,
                if self.chance(30)? { "NOT " } else { "" },
                if self.chance(40)? {
                    self.query(depth + 1)?
                } else {
                    format!("{}, {}", self.literal()?, self.literal()?)
                }
            ),
            16 => format!("EXISTS ({})", self.query(depth + 1)?),
            17 => format!("({})", self.query(depth + 1)?),
            18 => format!(
                "{} IS {}NULL",
                self.expr(depth + 1)?,
                if self.chance(50)? { "NOT " } else { "" }
            ),
            _ => {
                // Deep nesting: a flat chain (past the depth cap sometimes) or parentheses
                // (past the parser's recursion limit sometimes).
                let n = usize::from(self.u.int_in_range(2..=1_200u16)?);
                if self.chance(50)? {
                    vec!["1"; n].join(pick(self.u, &["+", " AND ", " || ", "*"])?)
                } else {
                    let n = n % 70;
                    format!("{}{}{}", "(".repeat(n), self.column()?, ")".repeat(n))
                }
            }
        })
    }

    fn from(&mut self, depth: u32) -> ArbResult<String> {
        let (table, columns) = TABLES[self.u.choose_index(TABLES.len())?];
        let alias = format!("t{depth}");
        self.scope
            .extend(columns.iter().map(|c| (alias.clone(), *c)));
        let mut from = format!("{table} {alias}");
        // At most two tables, so that an executed cross join stays small.
        if self.chance(30)? {
            let (other, other_columns) = TABLES[self.u.choose_index(TABLES.len())?];
            let other_alias = format!("u{depth}");
            self.scope
                .extend(other_columns.iter().map(|c| (other_alias.clone(), *c)));
            let kind = pick(
                self.u,
                &[
                    "JOIN",
                    "LEFT JOIN",
                    "RIGHT JOIN",
                    "FULL JOIN",
                    "CROSS JOIN",
                    "LEFT SEMI JOIN",
                    "LEFT ANTI JOIN",
                ],
            )?;
            let on = if kind == "CROSS JOIN" {
                String::new()
            } else {
                format!(" ON {}", self.expr(depth + 1)?)
            };
            from = format!("{from} {kind} {other} {other_alias}{on}");
        }
        Ok(from)
    }

    fn query(&mut self, depth: u32) -> ArbResult<String> {
        if depth > 3 {
            return Ok("SELECT 1".to_owned());
        }
        let outer = std::mem::take(&mut self.scope);
        let from = self.from(depth)?;
        // Correlated references: the outer scope stays visible.
        self.scope.extend(outer.iter().cloned());
        let distinct = if self.chance(10)? { "DISTINCT " } else { "" };
        let n = self.u.int_in_range(1..=4u8)?;
        let mut items = Vec::new();
        for i in 0..n {
            let e = self.expr(depth + 1)?;
            items.push(if self.chance(70)? {
                format!("{e} AS c{i}")
            } else {
                e
            });
        }
        let mut sql = format!("SELECT {distinct}{} FROM {from}", items.join(", "));
        if self.chance(40)? {
            sql += &format!(" WHERE {}", self.expr(depth + 1)?);
        }
        if self.chance(40)? {
            sql += &format!(" GROUP BY {}", self.column()?);
            if self.chance(30)? {
                sql += &format!(" HAVING {}", self.expr(depth + 1)?);
            }
        }
        if self.chance(25)? {
            sql += &format!(
                " ORDER BY {} {}",
                self.expr(depth + 1)?,
                pick(self.u, &["", "DESC", "NULLS FIRST"])?
            );
        }
        if self.chance(20)? {
            sql += &format!(" LIMIT {}", self.u.int_in_range(0u32..=100)?);
        }
        if self.chance(8)? {
            let op = pick(
                self.u,
                &["UNION", "UNION ALL", "INTERSECT", "EXCEPT", "UNION BY NAME"],
            )?;
            sql = format!("{sql} {op} {}", self.query(depth + 1)?);
        }
        self.scope = outer;
        Ok(sql)
    }

    fn statement(&mut self) -> ArbResult<String> {
        Ok(match self.u.int_in_range(0..=29u8)? {
            0 => pick(self.u, STATEMENTS)?.to_owned(),
            1 => format!("WITH w AS ({}) SELECT * FROM w", self.query(1)?),
            2 if !self.execute => format!(
                "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT {} FROM r",
                self.literal()?
            ),
            3 => format!("SELECT * FROM ({}) sub", self.query(1)?),
            4 => format!("VALUES ({}), ({})", self.literal()?, self.literal()?),
            5 => format!("{}; {}", self.query(0)?, self.query(0)?),
            _ => self.query(0)?,
        })
    }
}

/// A table's columns by type: (table, numeric, text, boolean).
type TypedTable = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

/// The fixture's columns by type.
const TYPED: &[TypedTable] = &[
    (
        "visits",
        &["birth_year", "cost", "year"],
        &["person_id", "district", "diagnosis"],
        &[],
    ),
    ("persons", &[], &["person_id"], &["insured"]),
    ("notes", &[], &["person_id", "note"], &[]),
];

#[derive(Clone, Copy)]
enum Ty {
    Num,
    Text,
    Bool,
}

/// Well-typed queries of the shapes engineers write (aggregates by group, row-level
/// selections, windows), so that most of them plan and run and the fuzzing reaches the
/// lineage walk, the gate's rewrite and execution.
struct TypedGen<'u, 'd> {
    u: &'u mut Unstructured<'d>,
    table: usize,
    budget: u32,
}

impl TypedGen<'_, '_> {
    fn column(&mut self, ty: Ty) -> ArbResult<Option<String>> {
        let (_, num, text, boolean) = TYPED[self.table];
        let list = match ty {
            Ty::Num => num,
            Ty::Text => text,
            Ty::Bool => boolean,
        };
        Ok(if list.is_empty() {
            None
        } else {
            Some(list[self.u.choose_index(list.len())?].to_owned())
        })
    }

    fn expr(&mut self, ty: Ty, depth: u32) -> ArbResult<String> {
        self.budget = self.budget.saturating_sub(1);
        let leaf = depth > 4 || self.budget == 0 || self.u.int_in_range(0..=2u8)? == 0;
        if leaf {
            if let Some(column) = self.column(ty)?
                && self.u.int_in_range(0..=3u8)? > 0
            {
                return Ok(column);
            }
            return Ok(match ty {
                Ty::Num => pick(
                    self.u,
                    &[
                        "0",
                        "1",
                        "-1",
                        "100",
                        "2.5",
                        "1e308",
                        "9223372036854775807",
                        "NULL",
                    ],
                )?
                .to_owned(),
                Ty::Text => {
                    pick(self.u, &["'A'", "'B'", "''", "'数域'", "'E1'", "NULL"])?.to_owned()
                }
                Ty::Bool => pick(self.u, &["TRUE", "FALSE", "NULL"])?.to_owned(),
            });
        }
        let d = depth + 1;
        Ok(match ty {
            Ty::Num => match self.u.int_in_range(0..=9u8)? {
                0 => format!(
                    "{} {} {}",
                    self.expr(Ty::Num, d)?,
                    pick(self.u, &["+", "-", "*", "/", "%"])?,
                    self.expr(Ty::Num, d)?
                ),
                1 => format!(
                    "{}({})",
                    pick(
                        self.u,
                        &[
                            "abs", "round", "ceil", "floor", "ln", "sqrt", "exp", "signum"
                        ]
                    )?,
                    self.expr(Ty::Num, d)?
                ),
                2 => format!(
                    "{}({})",
                    pick(self.u, &["length", "char_length", "ascii", "bit_length"])?,
                    self.expr(Ty::Text, d)?
                ),
                3 => format!(
                    "{}({}, {})",
                    pick(
                        self.u,
                        &["power", "coalesce", "greatest", "least", "nullif", "log"]
                    )?,
                    self.expr(Ty::Num, d)?,
                    self.expr(Ty::Num, d)?
                ),
                4 => format!(
                    "{}({} AS {})",
                    pick(self.u, &["CAST", "TRY_CAST"])?,
                    self.expr(Ty::Text, d)?,
                    pick(self.u, &["BIGINT", "DOUBLE", "INT"])?
                ),
                5 => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.expr(Ty::Bool, d)?,
                    self.expr(Ty::Num, d)?,
                    self.expr(Ty::Num, d)?
                ),
                6 => format!("generalize_number({}, 10)", self.expr(Ty::Num, d)?),
                7 => format!(
                    "date_part('year', CAST({} AS DATE))",
                    pick(self.u, &["'2020-01-01'", "'2020-13-01'", "NULL"])?
                ),
                _ => format!("-({})", self.expr(Ty::Num, d)?),
            },
            Ty::Text => match self.u.int_in_range(0..=7u8)? {
                0 => format!(
                    "{}({})",
                    pick(
                        self.u,
                        &[
                            "upper",
                            "lower",
                            "trim",
                            "md5",
                            "reverse",
                            "initcap",
                            "pseudonym",
                            "mask_name",
                            "mask_id",
                            "mask_mobile",
                            "sha256"
                        ]
                    )?,
                    self.expr(Ty::Text, d)?
                ),
                1 => format!(
                    "{}({}, {})",
                    pick(self.u, &["concat", "coalesce", "nullif"])?,
                    self.expr(Ty::Text, d)?,
                    self.expr(Ty::Text, d)?
                ),
                2 => format!(
                    "{}({}, {})",
                    pick(self.u, &["left", "right", "repeat", "lpad"])?,
                    self.expr(Ty::Text, d)?,
                    self.u.int_in_range(-2i64..=12)?
                ),
                3 => format!(
                    "substr({}, {}, {})",
                    self.expr(Ty::Text, d)?,
                    self.u.int_in_range(-2i64..=5)?,
                    self.u.int_in_range(-1i64..=5)?
                ),
                4 => format!("CAST({} AS VARCHAR)", self.expr(Ty::Num, d)?),
                5 => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.expr(Ty::Bool, d)?,
                    self.expr(Ty::Text, d)?,
                    self.expr(Ty::Text, d)?
                ),
                6 => format!("{} || {}", self.expr(Ty::Text, d)?, self.expr(Ty::Text, d)?),
                _ => format!("regexp_replace({}, 'E.', 'x')", self.expr(Ty::Text, d)?),
            },
            Ty::Bool => match self.u.int_in_range(0..=7u8)? {
                0 | 1 => format!(
                    "{} {} {}",
                    self.expr(Ty::Num, d)?,
                    pick(self.u, &["=", "<>", "<", "<=", ">", ">="])?,
                    self.expr(Ty::Num, d)?
                ),
                2 => format!(
                    "{} {} {}",
                    self.expr(Ty::Text, d)?,
                    pick(self.u, &["=", "<>", "LIKE", "<"])?,
                    self.expr(Ty::Text, d)?
                ),
                3 => format!(
                    "{} {} {}",
                    self.expr(Ty::Bool, d)?,
                    pick(self.u, &["AND", "OR"])?,
                    self.expr(Ty::Bool, d)?
                ),
                4 => format!("NOT ({})", self.expr(Ty::Bool, d)?),
                5 => format!(
                    "{} IN (SELECT person_id FROM {})",
                    self.expr(Ty::Text, d)?,
                    pick(self.u, &["persons", "notes", "visits"])?
                ),
                6 => format!("{} IS NULL", self.expr(Ty::Num, d)?),
                _ => format!(
                    "{} BETWEEN {} AND {}",
                    self.expr(Ty::Num, d)?,
                    self.expr(Ty::Num, d)?,
                    self.expr(Ty::Num, d)?
                ),
            },
        })
    }

    fn aggregate(&mut self) -> ArbResult<String> {
        let num = self.expr(Ty::Num, 2)?;
        let text = self.expr(Ty::Text, 2)?;
        Ok(match self.u.int_in_range(0..=9u8)? {
            0 => "count(*)".to_owned(),
            1 => format!("count(DISTINCT {text})"),
            2 => format!(
                "{}({num})",
                pick(
                    self.u,
                    &[
                        "sum",
                        "avg",
                        "min",
                        "max",
                        "stddev",
                        "var_pop",
                        "median",
                        "bit_and",
                        "bool_and",
                        "approx_distinct"
                    ]
                )?
            ),
            3 => format!("string_agg({text}, ',')"),
            4 => format!("array_agg({text})"),
            5 => format!("first_value({num})"),
            6 => format!("approx_percentile_cont({num}, 0.5)"),
            7 => format!("corr({num}, {})", self.expr(Ty::Num, 2)?),
            8 => format!("sum(CASE WHEN {} THEN {num} END)", self.expr(Ty::Bool, 2)?),
            _ => format!("count({num})"),
        })
    }

    fn query(&mut self) -> ArbResult<String> {
        self.table = self.u.choose_index(TYPED.len())?;
        let table = TYPED[self.table].0;
        let mut from = table.to_owned();
        if self.u.int_in_range(0..=5u8)? == 0 {
            let other = pick(self.u, &["persons", "notes"])?;
            from = format!(
                "{table} {} {other} USING (person_id)",
                pick(self.u, &["JOIN", "LEFT JOIN", "FULL JOIN"])?
            );
        }
        let filter = if self.u.arbitrary()? {
            format!(" WHERE {}", self.expr(Ty::Bool, 0)?)
        } else {
            String::new()
        };
        let limit = if self.u.int_in_range(0..=3u8)? == 0 {
            format!(" LIMIT {}", self.u.int_in_range(0..=50u8)?)
        } else {
            String::new()
        };
        Ok(match self.u.int_in_range(0..=3u8)? {
            // By group.
            0 | 1 => {
                let group = self.expr(Ty::Text, 3)?;
                let mut items = vec![format!("{group} AS g")];
                for i in 0..self.u.int_in_range(1..=3u8)? {
                    items.push(format!("{} AS a{i}", self.aggregate()?));
                }
                let having = if self.u.int_in_range(0..=3u8)? == 0 {
                    format!(" HAVING {} > {}", self.aggregate()?, self.expr(Ty::Num, 3)?)
                } else {
                    String::new()
                };
                format!(
                    "SELECT {} FROM {from}{filter} GROUP BY {group}{having} ORDER BY a0{limit}",
                    items.join(", ")
                )
            }
            // Row level.
            2 => {
                let mut items = Vec::new();
                for i in 0..self.u.int_in_range(1..=3u8)? {
                    let ty = *pick(self.u, &[&Ty::Num, &Ty::Text, &Ty::Bool])?;
                    items.push(format!("{} AS r{i}", self.expr(ty, 0)?));
                }
                format!("SELECT {} FROM {from}{filter}{limit}", items.join(", "))
            }
            // Windows.
            _ => {
                let partition = self.expr(Ty::Text, 3)?;
                let order = self.expr(Ty::Num, 3)?;
                let function = match self.u.int_in_range(0..=4u8)? {
                    0 => "row_number()".to_owned(),
                    1 => "rank()".to_owned(),
                    2 => format!("sum({})", self.expr(Ty::Num, 3)?),
                    3 => format!("lag({}, 1)", self.expr(Ty::Num, 3)?),
                    _ => format!("ntile({})", self.u.int_in_range(1..=5u8)?),
                };
                format!(
                    "SELECT {partition} AS p, {function} OVER (PARTITION BY {partition} ORDER BY {order}) AS w FROM {from}{filter}{limit}"
                )
            }
        })
    }
}

/// Tokens a mutation may insert into a rendered query.
const TOKENS: &[&str] = &[
    "(", ")", ",", "'", "\"", ";", "--", "/*", "*/", "SELECT", "FROM", "WHERE", "OVER", "AS", "::",
    "[", "]", "{", "}", "1", "NULL", "*", ".", "$1", "?", "\\", "\u{feff}", "\n",
];

/// A generated query, maybe mutated as text.
#[derive(Debug)]
struct SqlCase(String);

impl SqlCase {
    fn generate(u: &mut Unstructured<'_>, execute: bool) -> ArbResult<SqlCase> {
        // Three in five well typed, the others anything the grammar makes.
        let mut sql = if u.int_in_range(0..=4u8)? < 3 {
            TypedGen {
                u,
                table: 0,
                budget: 40,
            }
            .query()?
        } else {
            SqlGen {
                u,
                execute,
                scope: Vec::new(),
                budget: 60,
            }
            .statement()?
        };
        // Text mutations on a fifth of the queries: what a parser sees from a careless or
        // hostile client.
        if u.int_in_range(0..=9u8)? == 0 {
            for _ in 0..u.int_in_range(1..=4u8)? {
                let chars: Vec<char> = sql.chars().collect();
                let at = u.choose_index(chars.len() + 1)?;
                let mut chars = chars;
                match u.int_in_range(0..=2u8)? {
                    0 if at < chars.len() => {
                        let len = u.int_in_range(1..=8usize)?.min(chars.len() - at);
                        chars.drain(at..at + len);
                    }
                    1 => {
                        let token = pick(u, TOKENS)?;
                        chars.splice(at..at, token.chars());
                    }
                    _ if at < chars.len() => {
                        let end = (at + u.int_in_range(1..=30usize)?).min(chars.len());
                        let copy: Vec<char> = chars[at..end].to_vec();
                        chars.splice(at..at, copy);
                    }
                    _ => {}
                }
                sql = chars.into_iter().collect();
            }
        }
        Ok(SqlCase(sql))
    }
}

/// A query for a plan-only run (anything the grammar makes).
#[derive(Debug)]
struct PlanSql(SqlCase);

impl<'a> Arbitrary<'a> for PlanSql {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(PlanSql(SqlCase::generate(u, false)?))
    }
}

/// A query cheap enough to execute over the fixture.
#[derive(Debug)]
struct RunSql(SqlCase);

impl<'a> Arbitrary<'a> for RunSql {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(RunSql(SqlCase::generate(u, true)?))
    }
}

// ---------------------------------------------------------------------- job execution

std::thread_local! {
    /// Where this thread last panicked.
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Panics inside third-party crates that a guard contains (the worker's, for jobs), by
/// location, with their count.
static UPSTREAM_PANICS: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Records where each panic happens (then prints it as usual).
fn record_panic_locations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|last| *last.borrow_mut() = location);
            default(info);
        }));
    });
}

/// Whether the last panic of this thread was inside a third-party crate.
fn last_panic_upstream() -> Option<String> {
    let location = LAST_PANIC.with(|last| last.borrow().clone());
    location.contains("/.cargo/registry/").then(|| {
        location
            .rsplit("/.cargo/registry/src/")
            .next()
            .and_then(|rest| rest.split_once('/').map(|(_, path)| path.to_owned()))
            .unwrap_or(location)
    })
}

fn report_upstream_panics() {
    let panics = UPSTREAM_PANICS.lock().unwrap_or_else(|p| p.into_inner());
    for (location, n) in panics.iter() {
        eprintln!("fuzz: {n} contained panic(s) inside a dependency at {location}");
    }
}

/// How a target's jobs ended: succeeded, refused, did not plan, stopped at the time limit
/// (for a plan-only run: planned and checked), out of memory, failed while running.
#[derive(Debug)]
struct Tally([AtomicU64; 6]);

const OUTCOMES: [&str; 6] = ["ok", "refused", "plan", "timeout", "memory", "execution"];

impl Tally {
    const fn new() -> Tally {
        Tally([const { AtomicU64::new(0) }; 6])
    }

    fn count(&self, outcome: &Result<(), JobError>) {
        let i = match outcome {
            Ok(()) => 0,
            Err(JobError::Refused(_)) => 1,
            Err(JobError::Plan(_)) => 2,
            Err(JobError::Timeout) => 3,
            Err(JobError::ResourcesExhausted) => 4,
            Err(JobError::Execution { .. }) => 5,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, outcome: &str) -> u64 {
        let i = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .expect("an outcome");
        self.0[i].load(Ordering::Relaxed)
    }

    fn report(&self, target: &str) {
        let parts: Vec<String> = OUTCOMES
            .iter()
            .map(|o| format!("{o} {}", self.get(o)))
            .collect();
        eprintln!("fuzz {target} outcomes: {}", parts.join(", "));
    }
}

/// A fixture and a runtime per fuzz thread.
struct JobBench {
    runtime: tokio::runtime::Runtime,
    gate: Gate,
    n: AtomicU64,
    tally: &'static Tally,
}

fn job_bench(tally: &'static Tally) -> JobBench {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gate = runtime.block_on(support::gate());
    JobBench {
        runtime,
        gate,
        n: AtomicU64::new(0),
        tally,
    }
}

impl JobBench {
    /// Runs one job (SQL or Substrait) over the fixture's tables; `plan_only` stops it at
    /// its first wait for data. Every result row goes to the same file, rewritten.
    fn run(&self, sql: &str, plan: Option<Vec<u8>>, plan_only: bool) -> Result<(), JobError> {
        let policy = Policy::builtin();
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let request = JobRequest {
            scope: shuyu_engine::JobScope::Production,
            job_id: format!("fuzz_{n}"),
            sql: sql.to_owned(),
            substrait_plan: plan,
            tables: vec![
                self.gate.visits.clone(),
                self.gate.persons.clone(),
                self.gate.notes.clone(),
            ],
            pseudonym_key: self.gate.key.clone(),
            result_file: "results/fuzz/result.parquet".into(),
            result_kek: "tenant:a".into(),
            limits: JobLimits {
                max_sql_bytes: policy.limits.max_sql_bytes,
                memory_limit_bytes: 64 << 20,
                timeout: if plan_only {
                    Duration::ZERO
                } else {
                    Duration::from_secs(5)
                },
                max_result_rows: 10_000,
                preview_rows: 20,
            },
            masking_defaults: policy.masking.clone(),
            min_entities: policy.disclosure.min_entities,
            dominance_n: policy.disclosure.dominance_n as usize,
            dp: None,
            spill: None,
        };
        // As the worker does: a panic inside a dependency is contained (and reported); one
        // in our own code fails the run.
        record_panic_locations();
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.runtime.block_on(self.gate.engine.run_job(&request))
        })) {
            Ok(outcome) => outcome,
            Err(panic) => match last_panic_upstream() {
                Some(location) => {
                    *UPSTREAM_PANICS
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(location)
                        .or_default() += 1;
                    Err(JobError::Refused("contained panic".into()))
                }
                None => std::panic::resume_unwind(panic),
            },
        };
        self.tally
            .count(&outcome.as_ref().map(|_| ()).map_err(clone_error));
        match outcome {
            Ok(output) => {
                // The masked preview never shows a planted value.
                let shown = format!("{:?}", output.preview);
                for canary in CANARIES {
                    assert!(!shown.contains(canary), "{canary} in the preview of {sql}");
                }
                Ok(())
            }
            Err(e) => {
                // What the engineer is told never carries a value of the data.
                let public = e.public_message();
                for canary in CANARIES {
                    assert!(!public.contains(canary), "{canary} in {public:?} for {sql}");
                }
                Err(e)
            }
        }
    }
}

fn clone_error(e: &JobError) -> JobError {
    match e {
        JobError::Refused(m) => JobError::Refused(m.clone()),
        JobError::Plan(m) => JobError::Plan(m.clone()),
        JobError::Timeout => JobError::Timeout,
        JobError::ResourcesExhausted => JobError::ResourcesExhausted,
        JobError::Execution { detail } => JobError::Execution {
            detail: detail.clone(),
        },
    }
}

#[test]
fn sql_front_door_plans_or_refuses_without_panicking() {
    static TALLY: Tally = Tally::new();
    let campaign = campaign("sql_plan", 300);
    fuzz(
        "sql_plan",
        campaign,
        2_048,
        || job_bench(&TALLY),
        |bench, PlanSql(case)| {
            // The server's own parse of a DP job's SQL (large stack, depth cap) first.
            let _ = referenced_tables(&case.0);
            let _ = bench.run(&case.0, None, true);
        },
    );
    TALLY.report("sql_plan");
    report_upstream_panics();
    // The grammar reaches past the parser and planner: a share of its queries pass every
    // check and are stopped only at their first wait for data.
    assert!(
        TALLY.get("timeout") * 20 >= campaign.cases,
        "too few queries planned"
    );
}

#[test]
fn sql_jobs_run_or_fail_without_panicking() {
    static TALLY: Tally = Tally::new();
    let campaign = campaign("sql_run", 60);
    fuzz(
        "sql_run",
        campaign,
        2_048,
        || job_bench(&TALLY),
        |bench, RunSql(case)| {
            let _ = bench.run(&case.0, None, false);
        },
    );
    TALLY.report("sql_run");
    assert!(
        TALLY.get("ok") * 20 >= campaign.cases,
        "too few queries ran"
    );
}

// -------------------------------------------------------------------------- Substrait

/// Seed queries turned into valid Substrait plans, which the structured mutations start
/// from.
const SUBSTRAIT_SEEDS: &[&str] = &[
    "SELECT district, count(*) AS n FROM visits GROUP BY district",
    "SELECT district, sum(cost) AS s, avg(cost) AS a FROM visits WHERE year > 2020 GROUP BY district",
    "SELECT v.district, count(*) AS n FROM visits v JOIN persons p ON v.person_id = p.person_id GROUP BY v.district",
    "SELECT pseudonym(person_id) AS p, cost FROM visits",
    "SELECT district, max(cost) AS m FROM visits GROUP BY district HAVING count(*) > 10 ORDER BY m DESC LIMIT 3",
    "SELECT year, row_number() OVER (PARTITION BY district ORDER BY cost) AS r FROM visits",
    "SELECT CASE WHEN cost > 100 THEN 'high' ELSE 'low' END AS band, count(*) AS n FROM visits GROUP BY 1",
    "SELECT district FROM visits UNION SELECT person_id FROM persons",
    "SELECT * FROM visits WHERE person_id IN (SELECT person_id FROM persons WHERE insured)",
    "SELECT substr(note, 1, 3) AS s FROM notes",
    "SELECT CAST(birth_year AS DOUBLE) / 3 AS b FROM visits LIMIT 5",
];

/// One field of a protobuf message on the wire; length-delimited payloads that parse as
/// messages are kept as messages, so mutations can reach nested plan nodes.
#[derive(Debug, Clone)]
enum Wire {
    Varint(u32, u64),
    Fixed64(u32, [u8; 8]),
    Fixed32(u32, [u8; 4]),
    Bytes(u32, Vec<u8>),
    Message(u32, Vec<Wire>),
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn parse_wire(bytes: &[u8], depth: u32) -> Option<Vec<Wire>> {
    let mut at = 0;
    let mut fields = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at)?;
        let field = u32::try_from(key >> 3).ok()?;
        fields.push(match key & 7 {
            0 => Wire::Varint(field, read_varint(bytes, &mut at)?),
            1 => {
                let value: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
                at += 8;
                Wire::Fixed64(field, value)
            }
            5 => {
                let value: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
                at += 4;
                Wire::Fixed32(field, value)
            }
            2 => {
                let len = usize::try_from(read_varint(bytes, &mut at)?).ok()?;
                let payload = bytes.get(at..at.checked_add(len)?)?;
                at += len;
                match (depth < 40)
                    .then(|| parse_wire(payload, depth + 1))
                    .flatten()
                {
                    Some(nested) if !payload.is_empty() => Wire::Message(field, nested),
                    _ => Wire::Bytes(field, payload.to_vec()),
                }
            }
            _ => return None,
        });
    }
    Some(fields)
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn write_wire(fields: &[Wire], out: &mut Vec<u8>) {
    for f in fields {
        match f {
            Wire::Varint(n, v) => {
                write_varint(out, u64::from(*n) << 3);
                write_varint(out, *v);
            }
            Wire::Fixed64(n, b) => {
                write_varint(out, (u64::from(*n) << 3) | 1);
                out.extend_from_slice(b);
            }
            Wire::Fixed32(n, b) => {
                write_varint(out, (u64::from(*n) << 3) | 5);
                out.extend_from_slice(b);
            }
            Wire::Bytes(n, b) => {
                write_varint(out, (u64::from(*n) << 3) | 2);
                write_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Wire::Message(n, nested) => {
                let mut inner = Vec::new();
                write_wire(nested, &mut inner);
                write_varint(out, (u64::from(*n) << 3) | 2);
                write_varint(out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
        }
    }
}

/// Every message of the tree, as paths of child indices.
fn message_paths(fields: &[Wire], path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    out.push(path.clone());
    for (i, f) in fields.iter().enumerate() {
        if let Wire::Message(_, nested) = f {
            path.push(i);
            message_paths(nested, path, out);
            path.pop();
        }
    }
}

fn message_at<'a>(fields: &'a mut Vec<Wire>, path: &[usize]) -> &'a mut Vec<Wire> {
    match path.split_first() {
        None => fields,
        Some((&i, rest)) => match &mut fields[i] {
            Wire::Message(_, nested) => message_at(nested, rest),
            _ => unreachable!("paths lead through messages"),
        },
    }
}

/// One structured mutation of a plan's wire tree.
fn mutate(u: &mut Unstructured<'_>, tree: &mut Vec<Wire>, donor: &[Wire]) -> ArbResult<()> {
    let mut paths = Vec::new();
    message_paths(tree, &mut Vec::new(), &mut paths);
    let path = paths[u.choose_index(paths.len())?].clone();
    let message = message_at(tree, &path);
    if message.is_empty() {
        return Ok(());
    }
    let i = u.choose_index(message.len())?;
    match u.int_in_range(0..=7u8)? {
        // A field's number or value changed: references, anchors, enums, literals.
        0 => {
            if let Wire::Varint(_, v) = &mut message[i] {
                *v = match u.int_in_range(0..=4u8)? {
                    0 => 0,
                    1 => v.wrapping_add(1),
                    2 => u64::MAX,
                    3 => u64::from(u.arbitrary::<u32>()?),
                    _ => v.wrapping_sub(1),
                };
            }
        }
        1 => {
            message.remove(i);
        }
        2 => {
            let copy = message[i].clone();
            message.insert(i, copy);
        }
        3 => {
            let j = u.choose_index(message.len())?;
            message.swap(i, j);
        }
        // A node moved into another place of the plan (or of another plan).
        4 => {
            if let Some(graft) = donor.get(u.choose_index(donor.len().max(1))?) {
                message[i] = graft.clone();
            }
        }
        5 => {
            let nest = match &mut message[i] {
                Wire::Bytes(_, b) => {
                    let extra: Vec<u8> = u.arbitrary()?;
                    b.extend(extra);
                    None
                }
                Wire::Message(field, _) => Some(*field),
                _ => None,
            };
            // Nest the message inside itself: deep plans.
            if let Some(field) = nest {
                for _ in 0..u.int_in_range(1..=20u8)? {
                    let inner = message[i].clone();
                    message[i] = Wire::Message(field, vec![inner]);
                }
            }
        }
        6 => {
            let n = u.int_in_range(1..=40u32)?;
            message.push(Wire::Varint(n, u.arbitrary()?));
        }
        _ => {
            if let Wire::Fixed64(_, b) = &mut message[i] {
                *b = u.arbitrary()?;
            }
        }
    }
    Ok(())
}

/// A Substrait input: raw bytes, or a seed plan with structured mutations.
#[derive(Debug)]
enum SubstraitCase {
    Raw(Vec<u8>),
    Mutated {
        seed: usize,
        donor: usize,
        mutations: Vec<u8>,
        /// Bytes flipped after the mutations (position, xor).
        flips: Vec<(u16, u8)>,
        execute: bool,
    },
}

impl<'a> Arbitrary<'a> for SubstraitCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(if u.int_in_range(0..=9u8)? == 0 {
            SubstraitCase::Raw(u.arbitrary()?)
        } else {
            SubstraitCase::Mutated {
                seed: u.choose_index(SUBSTRAIT_SEEDS.len())?,
                donor: u.choose_index(SUBSTRAIT_SEEDS.len())?,
                mutations: u.arbitrary()?,
                flips: if u.int_in_range(0..=3u8)? == 0 {
                    u.arbitrary()?
                } else {
                    Vec::new()
                },
                execute: u.int_in_range(0..=19u8)? == 0,
            }
        })
    }
}

struct SubstraitBench {
    jobs: JobBench,
    seeds: Vec<Vec<Wire>>,
}

/// The seed queries as Substrait plans, produced over the fixture's schemas.
fn substrait_seeds(gate: &Gate, runtime: &tokio::runtime::Runtime) -> Vec<Vec<Wire>> {
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use prost::Message;

    let ctx = SessionContext::new();
    for spec in [&gate.visits, &gate.persons, &gate.notes] {
        let table = MemTable::try_new(spec.arrow_schema(), vec![vec![]]).expect("table");
        ctx.register_table(spec.name.as_str(), std::sync::Arc::new(table))
            .expect("register");
    }
    // pseudonym() as the sandbox registers it, so that the seed can name it.
    for udf in shuyu_engine_masking_udfs(&gate.key) {
        ctx.register_udf(udf);
    }
    SUBSTRAIT_SEEDS
        .iter()
        .map(|sql| {
            let plan = runtime
                .block_on(async {
                    Ok::<_, datafusion::error::DataFusionError>(
                        ctx.sql(sql).await?.into_unoptimized_plan(),
                    )
                })
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let proto = datafusion_substrait::logical_plan::producer::to_substrait_plan(
                &plan,
                &ctx.state(),
            )
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
            parse_wire(&proto.encode_to_vec(), 0).expect("a valid plan parses")
        })
        .collect()
}

/// Stand-ins with the masking functions' names and signatures, for producing seed plans.
fn shuyu_engine_masking_udfs(
    _key: &shuyu_vault::SecretKey,
) -> Vec<datafusion::logical_expr::ScalarUDF> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    vec![create_udf(
        "pseudonym",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        std::sync::Arc::new(|args: &[ColumnarValue]| Ok(args[0].clone())),
    )]
}

static SUBSTRAIT_TALLY: Tally = Tally::new();

#[test]
fn substrait_plans_plan_or_are_refused_without_panicking() {
    fuzz(
        "substrait",
        campaign("substrait", 300),
        1_024,
        || {
            let jobs = job_bench(&SUBSTRAIT_TALLY);
            let seeds = substrait_seeds(&jobs.gate, &jobs.runtime);
            SubstraitBench { jobs, seeds }
        },
        |bench, case| match case {
            SubstraitCase::Raw(bytes) => {
                let _ = bench.jobs.run("", Some(bytes), true);
            }
            SubstraitCase::Mutated {
                seed,
                donor,
                mutations,
                flips,
                execute,
            } => {
                let mut tree = bench.seeds[seed].clone();
                let donor = &bench.seeds[donor];
                let mut u = Unstructured::new(&mutations);
                for _ in 0..4 {
                    if mutate(&mut u, &mut tree, donor).is_err() {
                        break;
                    }
                }
                let mut bytes = Vec::new();
                write_wire(&tree, &mut bytes);
                for (at, xor) in flips {
                    if let Some(b) = bytes.get_mut(usize::from(at)) {
                        *b ^= xor;
                    }
                }
                let _ = bench.jobs.run("", Some(bytes), !execute);
            }
        },
    );
    SUBSTRAIT_TALLY.report("substrait");
    report_upstream_panics();
}

#[test]
fn a_plan_that_panics_datafusion_is_contained() {
    // Found by this target (seed 20261206): a field reference past its input's schema makes
    // datafusion-substrait 55.2.0 index out of bounds while planning. The worker catches it
    // (crates/shuyu/src/worker.rs), as `JobBench::run` does.
    static TALLY: Tally = Tally::new();
    let jobs = job_bench(&TALLY);
    let plan = include_bytes!("fuzz-regressions/substrait-field-reference-panic.bin");
    let contained = || {
        UPSTREAM_PANICS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(location, _)| location.contains("datafusion-common"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let before = contained();
    assert!(jobs.run("", Some(plan.to_vec()), true).is_err());
    // (Other tests of this binary may contain panics meanwhile: at least this one.)
    assert!(
        contained() > before,
        "the plan no longer panics inside DataFusion: the worker's guard may be re-checked"
    );
}

#[test]
fn unmutated_substrait_seeds_are_valid_jobs() {
    // The mutations start from plans the engine accepts: otherwise the target would only
    // ever test the decoder's refusals.
    static TALLY: Tally = Tally::new();
    let jobs = job_bench(&TALLY);
    let seeds = substrait_seeds(&jobs.gate, &jobs.runtime);
    let mut accepted = 0;
    for (sql, tree) in SUBSTRAIT_SEEDS.iter().zip(&seeds) {
        let mut bytes = Vec::new();
        write_wire(tree, &mut bytes);
        match jobs.run("", Some(bytes), false) {
            Ok(()) => accepted += 1,
            Err(JobError::Refused(_) | JobError::Plan(_)) => {}
            Err(other) => panic!("{sql}: {other:?}"),
        }
    }
    assert!(accepted >= SUBSTRAIT_SEEDS.len() / 2, "{accepted} accepted");
}

// ----------------------------------------------------------------------------- ingest

const COLUMN_NAMES: &[&str] = &[
    "id", "name", "district", "cost", "born", "flag", "名字", " x ",
];

/// A value for one CSV field.
#[derive(Debug)]
enum Field {
    Valid,
    Odd(&'static str),
    Text(String),
    Quoted(String),
    Canary,
    InvalidUtf8(Vec<u8>),
}

const ODD_FIELDS: &[&str] = &[
    "",
    " ",
    "NULL",
    "null",
    "NaN",
    "inf",
    "-0",
    "1e400",
    "9223372036854775808",
    "-9223372036854775809",
    "0x10",
    "1_000",
    "2024-02-30",
    "2023-02-29",
    "0000-00-00",
    "99999-01-01",
    "2024-1-1",
    "2024-01-01T00:00:00",
    "true",
    "FALSE",
    "t",
    "yes",
    "1",
    "\"",
    "\"\"",
    "\"a\"b\"",
    "a,b",
    "\r",
    "\n",
    "\u{feff}",
    "数域",
    "😀",
    "\u{0}",
    "  7  ",
];

#[derive(Debug)]
struct CsvDoc {
    columns: Vec<ColumnSpec>,
    /// Header names (usually the declared ones, sometimes not).
    header: Vec<String>,
    bom: bool,
    rows: Vec<Vec<Field>>,
    line_end: &'static str,
    trailing_newline: bool,
}

fn arbitrary_columns(u: &mut Unstructured<'_>) -> ArbResult<Vec<ColumnSpec>> {
    let n = u.int_in_range(1..=5usize)?;
    let mut columns: Vec<ColumnSpec> = Vec::with_capacity(n);
    for i in 0..n {
        let data_type = *pick(
            u,
            &[
                &ColumnType::String,
                &ColumnType::Int64,
                &ColumnType::Float64,
                &ColumnType::Bool,
                &ColumnType::Date,
            ],
        )?;
        let name = if u.int_in_range(0..=9u8)? == 0 {
            pick(u, COLUMN_NAMES)?.to_owned()
        } else {
            format!("c{i}")
        };
        columns.push(ColumnSpec {
            name,
            data_type,
            classification: Classification::Ordinary,
            masking: MaskingRule::Keep,
        });
    }
    Ok(columns)
}

fn valid_value(u: &mut Unstructured<'_>, data_type: ColumnType) -> ArbResult<String> {
    Ok(match data_type {
        ColumnType::String => format!("s{}", u.int_in_range(0..=999u16)?),
        ColumnType::Int64 => u.arbitrary::<i64>()?.to_string(),
        ColumnType::Float64 => format!("{}", u.arbitrary::<f32>()?),
        ColumnType::Bool => pick(u, &["true", "false"])?.to_owned(),
        ColumnType::Date => format!(
            "{:04}-{:02}-{:02}",
            u.int_in_range(1900..=2100u16)?,
            u.int_in_range(1..=12u8)?,
            u.int_in_range(1..=28u8)?
        ),
    })
}

impl<'a> Arbitrary<'a> for CsvDoc {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let columns = arbitrary_columns(u)?;
        let mut header: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        match u.int_in_range(0..=9u8)? {
            0 => header.reverse(),
            1 => {
                header.pop();
            }
            2 => header.push("extra".into()),
            3 => header[0] = format!(" {} ", header[0]),
            _ => {}
        }
        let n_rows = u.int_in_range(0..=12usize)?;
        let mut rows = Vec::with_capacity(n_rows);
        for _ in 0..n_rows {
            let mut n_fields = columns.len();
            if u.int_in_range(0..=14u8)? == 0 {
                n_fields = u.int_in_range(0..=columns.len() + 2)?;
            }
            let mut row = Vec::with_capacity(n_fields);
            for _ in 0..n_fields {
                row.push(match u.int_in_range(0..=19u8)? {
                    0..=13 => Field::Valid,
                    14..=15 => Field::Odd(pick(u, ODD_FIELDS)?),
                    16 => Field::Text(u.arbitrary()?),
                    17 => Field::Quoted(u.arbitrary()?),
                    18 => Field::Canary,
                    _ => Field::InvalidUtf8(u.arbitrary()?),
                });
            }
            rows.push(row);
        }
        Ok(CsvDoc {
            columns,
            header,
            bom: u.int_in_range(0..=9u8)? == 0,
            rows,
            line_end: pick(u, &["\n", "\n", "\r\n", "\r"])?,
            trailing_newline: u.arbitrary()?,
        })
    }
}

impl CsvDoc {
    fn render(&self, u: &mut Unstructured<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        if self.bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        out.extend_from_slice(self.header.join(",").as_bytes());
        for row in &self.rows {
            out.extend_from_slice(self.line_end.as_bytes());
            for (i, field) in row.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match field {
                    Field::Valid => {
                        let column = &self.columns[i % self.columns.len()];
                        let value = valid_value(u, column.data_type).unwrap_or_default();
                        out.extend_from_slice(value.as_bytes());
                    }
                    Field::Odd(text) => out.extend_from_slice(text.as_bytes()),
                    Field::Text(text) => out.extend_from_slice(text.as_bytes()),
                    Field::Quoted(text) => {
                        out.push(b'"');
                        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
                        out.push(b'"');
                    }
                    Field::Canary => out.extend_from_slice(CANARIES[0].as_bytes()),
                    Field::InvalidUtf8(bytes) => {
                        out.extend_from_slice(bytes);
                        out.push(0xff);
                    }
                }
            }
        }
        if self.trailing_newline {
            out.extend_from_slice(self.line_end.as_bytes());
        }
        out
    }
}

/// A Parquet input: a file written from random columns and values, maybe damaged.
#[derive(Debug)]
struct ParquetDoc {
    declared: Vec<ColumnSpec>,
    /// Write the declared columns (else random ones).
    matching: bool,
    n_rows: usize,
    nested_column: bool,
    damage: Damage,
}

#[derive(Debug, Arbitrary)]
enum Damage {
    None,
    Flip(u16, u8),
    FlipFooter(u16, u8),
    Truncate(u16),
    FooterLength(u32),
    Splice(u16, Vec<u8>),
}

impl<'a> Arbitrary<'a> for ParquetDoc {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(ParquetDoc {
            declared: arbitrary_columns(u)?,
            matching: u.int_in_range(0..=3u8)? > 0,
            n_rows: u.int_in_range(0..=40usize)?,
            nested_column: u.int_in_range(0..=9u8)? == 0,
            damage: if u.int_in_range(0..=1u8)? == 0 {
                Damage::None
            } else {
                u.arbitrary()?
            },
        })
    }
}

impl ParquetDoc {
    fn render(&self, u: &mut Unstructured<'_>) -> Vec<u8> {
        use arrow::array::{
            Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
            ListArray, StringArray,
        };
        use arrow::datatypes::{DataType, Field as ArrowField, Int64Type, Schema};
        use std::sync::Arc;

        let n = self.n_rows;
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for column in &self.declared {
            let data_type = if self.matching {
                column.data_type.arrow_type()
            } else {
                [
                    DataType::Int32,
                    DataType::Utf8,
                    DataType::Float64,
                    DataType::Boolean,
                ][u.choose_index(4).unwrap_or(0)]
                .clone()
            };
            let mut value = |i: usize| -> Option<i64> {
                (u.int_in_range(0..=9u8).unwrap_or(0) > 0)
                    .then(|| u.arbitrary::<i64>().unwrap_or(i as i64))
            };
            let array: ArrayRef = match &data_type {
                DataType::Int64 => Arc::new((0..n).map(&mut value).collect::<Int64Array>()),
                DataType::Int32 => Arc::new(
                    (0..n)
                        .map(|i| value(i).map(|v| v as i32))
                        .collect::<Int32Array>(),
                ),
                DataType::Float64 => Arc::new(
                    (0..n)
                        .map(|i| value(i).map(|v| f64::from_bits(v as u64)))
                        .collect::<Float64Array>(),
                ),
                DataType::Boolean => Arc::new(
                    (0..n)
                        .map(|i| value(i).map(|v| v % 2 == 0))
                        .collect::<BooleanArray>(),
                ),
                DataType::Date32 => Arc::new(
                    (0..n)
                        .map(|i| value(i).map(|v| v as i32))
                        .collect::<Date32Array>(),
                ),
                _ => Arc::new(
                    (0..n)
                        .map(|i| value(i).map(|v| format!("v{v}")))
                        .collect::<StringArray>(),
                ),
            };
            fields.push(ArrowField::new(&column.name, data_type, true));
            arrays.push(array);
        }
        if self.nested_column {
            let list = ListArray::from_iter_primitive::<Int64Type, _, _>(
                (0..n).map(|i| Some(vec![Some(i as i64), None])),
            );
            fields.push(ArrowField::new("nested", list.data_type().clone(), true));
            arrays.push(Arc::new(list));
        }
        let schema = Arc::new(Schema::new(fields));
        let Ok(batch) = arrow::array::RecordBatch::try_new(Arc::clone(&schema), arrays) else {
            return Vec::new();
        };
        let mut file = Vec::new();
        {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(u.int_in_range(1..=64usize).unwrap_or(8)))
                .set_dictionary_enabled(u.arbitrary().unwrap_or(true))
                .build();
            let Ok(mut writer) =
                parquet::arrow::ArrowWriter::try_new(&mut file, schema, Some(props))
            else {
                return Vec::new();
            };
            if writer.write(&batch).is_err() || writer.close().is_err() {
                return Vec::new();
            }
        }
        let len = file.len();
        let footer_len = if len >= 8 {
            u32::from_le_bytes(file[len - 8..len - 4].try_into().unwrap_or([0; 4])) as usize
        } else {
            0
        };
        match &self.damage {
            Damage::None => {}
            Damage::Flip(at, xor) => {
                if len > 0 {
                    file[usize::from(*at) % len] ^= xor;
                }
            }
            Damage::FlipFooter(at, xor) => {
                if footer_len > 0 && footer_len + 8 <= len {
                    file[len - 8 - footer_len + usize::from(*at) % footer_len] ^= xor;
                }
            }
            Damage::Truncate(cut) => file.truncate(len.saturating_sub(usize::from(*cut))),
            Damage::FooterLength(v) => {
                if len >= 8 {
                    file[len - 8..len - 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            Damage::Splice(at, bytes) => {
                let at = usize::from(*at).min(len);
                file.splice(at..at, bytes.iter().copied());
            }
        }
        file
    }
}

#[derive(Debug)]
enum IngestCase {
    Csv(CsvDoc, Vec<u8>),
    RawCsv(Vec<ColumnSpec>, Vec<u8>),
    Parquet(ParquetDoc, Vec<u8>),
    RawParquet(Vec<ColumnSpec>, Vec<u8>),
}

impl<'a> Arbitrary<'a> for IngestCase {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(match u.int_in_range(0..=9u8)? {
            0..=4 => IngestCase::Csv(u.arbitrary()?, u.arbitrary()?),
            5 => IngestCase::RawCsv(arbitrary_columns(u)?, u.arbitrary()?),
            6..=8 => IngestCase::Parquet(u.arbitrary()?, u.arbitrary()?),
            _ => {
                let columns = arbitrary_columns(u)?;
                let mut bytes = b"PAR1".to_vec();
                bytes.extend(u.arbitrary::<Vec<u8>>()?);
                bytes.extend(u.arbitrary::<u32>()?.to_le_bytes());
                bytes.extend_from_slice(b"PAR1");
                IngestCase::RawParquet(columns, bytes)
            }
        })
    }
}

/// Checks one ingest input; the error names no value.
fn check_ingest(format: IngestFormat, input: Vec<u8>, columns: &[ColumnSpec]) {
    let options = IngestOptions {
        max_row_bytes: 4096,
        batch_rows: 4,
    };
    if let Err(e) = validate_input(format, &Bytes::from(input), columns, &options) {
        let text = e.to_string();
        assert!(!text.contains(CANARIES[0]), "a value in {text:?}");
    }
}

#[test]
fn ingest_validation_accepts_or_refuses_without_panicking() {
    fuzz(
        "ingest",
        campaign("ingest", 3_000),
        4_096,
        || (),
        |(), case| match case {
            IngestCase::Csv(doc, render_bytes) => {
                let input = doc.render(&mut Unstructured::new(&render_bytes));
                check_ingest(IngestFormat::Csv, input, &doc.columns);
            }
            IngestCase::RawCsv(columns, bytes) => check_ingest(IngestFormat::Csv, bytes, &columns),
            IngestCase::Parquet(doc, render_bytes) => {
                let input = doc.render(&mut Unstructured::new(&render_bytes));
                check_ingest(IngestFormat::Parquet, input, &doc.declared);
            }
            IngestCase::RawParquet(columns, bytes) => {
                check_ingest(IngestFormat::Parquet, bytes, &columns);
            }
        },
    );
}

#[test]
fn ingest_validation_agrees_with_ingest() {
    // The fast path is only worth its inputs if it decides as the real ingest does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gate = runtime.block_on(support::gate());
    let columns = support::visit_columns();
    let good = support::visits_csv();
    let bad = good.replacen(",2020", ",20x0", 1);
    for (csv, ok) in [(good, true), (bad, false)] {
        let input = Bytes::from(csv);
        let checked = validate_input(
            IngestFormat::Csv,
            &input,
            &columns,
            &IngestOptions::default(),
        );
        let ingested = runtime.block_on(gate.engine.ingest(
            IngestFormat::Csv,
            input,
            &columns,
            "datasets/ds_agree/",
            "domain",
            &IngestOptions::default(),
        ));
        assert_eq!(checked.is_ok(), ok, "{checked:?}");
        assert_eq!(ingested.is_ok(), ok, "{ingested:?}");
        if let (Ok(rows), Ok(outcome)) = (&checked, &ingested) {
            assert_eq!(*rows, outcome.n_rows);
        }
    }
}
