//! The DataFusion side of Shuyu: encrypted tables, sandboxed SQL sessions, masking, lineage
//! and the result checks of the export gate.
//!
//! This crate knows nothing of the wire format or the metadata store: the server hands it
//! plain specs ([`TableSpec`], [`JobRequest`]) and gets plain results back.

mod aggregates;
mod checks;
mod crypto;
mod disclosure;
mod dp;
mod error;
mod export_work;
pub mod functions;
mod ingest;
mod lineage;
mod masking;
mod memory;
mod plan_text;
mod reconstruction;
mod results;
mod schema;
mod sealed;
mod session;
mod sketch;
mod spill;
mod storage;
pub mod worker;

pub use checks::{
    CheckOutcome, CheckReport, ExportChecks, GateInput, PopulationId, ReleasedCell, members_needed,
    release_checks, result_sketches, result_units_range, run_export_checks,
    run_export_checks_on_heads, units_range,
};
pub use crypto::{ENCRYPTION_FACTORY_ID, EnvelopeEncryptionFactory};
pub use disclosure::{
    DisclosureMeta, DominanceColumn, HIDDEN_PREFIX, Population, UnitCount, is_hidden,
};
pub use dp::{DpBound, DpGuarantee, DpSpec, referenced_tables};
pub use error::{EngineError, JobError};
pub use export_work::{
    FileFacts, LedgerInputs, ProductFacts, ProductOptions, ReleasedSource, ResultGate,
};
pub use ingest::{IngestFormat, IngestOptions, IngestOutcome, validate_columns, validate_input};
pub use lineage::{OutputColumn, PlanLineage, RowInfluence, column_lineage, plan_lineage};
pub use masking::{MaskedTable, display_key, mask_batches, mask_value_array};
pub use plan_text::{PlanSource, PlanText};
pub use results::{ExportFormat, ResultData, read_result, render_export_file};
pub use schema::{ColumnSpec, ColumnType, TableSpec};
pub use sealed::{SealedCursor, SealedFile, SealedSlice, copy_batches};
pub use session::{
    Engine, GROUP_ROWS_COLUMN, JobLimits, JobOutput, JobProgress, JobRequest, JobScope, JobStage,
    MAX_EXPRESSION_DEPTH, MAX_SUBSTRAIT_BYTES, PROGRESS_INTERVAL, SpillOptions,
};
pub use sketch::{AUDITED_UNITS, Difference, SketchDigest, UnitSketch};
pub use spill::EncryptedSpillFactory;
pub use storage::{DurableFile, READ_CHUNK_BYTES, Storage, object_context, sha256_of};
