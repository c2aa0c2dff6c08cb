//! Staged results as reviewers and exports see them: the gate's hidden columns removed,
//! rendered as Arrow IPC (for review) or as the exported Parquet or CSV file.

use arrow::array::RecordBatch;
use arrow::ipc::writer::StreamWriter;
use parquet::arrow::ArrowWriter;

use crate::disclosure::is_hidden;
use crate::error::EngineError;

/// Export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Plain Parquet (the package itself is signed; at rest it is sealed).
    Parquet,
    /// CSV with a header row.
    Csv,
}

impl ExportFormat {
    /// File name inside the package.
    pub fn file_name(&self) -> &'static str {
        match self {
            ExportFormat::Parquet => "result.parquet",
            ExportFormat::Csv => "result.csv",
        }
    }
}

/// A staged result without its hidden columns.
#[derive(Debug, Clone)]
pub struct ResultData {
    /// Visible batches.
    pub batches: Vec<RecordBatch>,
}

/// Removes the gate's hidden columns.
///
/// # Errors
/// On internal failures.
pub fn read_result(batches: Vec<RecordBatch>) -> Result<ResultData, EngineError> {
    let batches = batches
        .into_iter()
        .map(|batch| {
            let keep: Vec<usize> = batch
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !is_hidden(f.name()))
                .map(|(i, _)| i)
                .collect();
            batch
                .project(&keep)
                .map_err(|e| EngineError::Internal(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(ResultData { batches })
}

impl ResultData {
    /// Rows.
    pub fn n_rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// Arrow IPC stream of at most `max_rows` rows, and whether rows were cut.
    ///
    /// # Errors
    /// On internal failures.
    pub fn to_ipc(&self, max_rows: usize) -> Result<(Vec<u8>, bool), EngineError> {
        let mut out = Vec::new();
        let mut written = 0;
        let mut truncated = false;
        if let Some(first) = self.batches.first() {
            let mut writer = StreamWriter::try_new(&mut out, &first.schema())
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            for batch in &self.batches {
                let take = (max_rows - written).min(batch.num_rows());
                if take < batch.num_rows() {
                    truncated = true;
                }
                if take > 0 {
                    writer
                        .write(&batch.slice(0, take))
                        .map_err(|e| EngineError::Internal(e.to_string()))?;
                }
                written += take;
            }
            writer
                .finish()
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        }
        Ok((out, truncated))
    }
}

/// Renders the approved result as the export file.
///
/// # Errors
/// On internal failures.
pub fn render_export_file(data: &ResultData, format: ExportFormat) -> Result<Vec<u8>, EngineError> {
    let err = |e: &dyn std::fmt::Display| EngineError::Internal(e.to_string());
    let mut out = Vec::new();
    match format {
        ExportFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in &data.batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
        }
        ExportFormat::Parquet => {
            let Some(first) = data.batches.first() else {
                return Ok(out);
            };
            let mut writer =
                ArrowWriter::try_new(&mut out, first.schema(), None).map_err(|e| err(&e))?;
            for batch in &data.batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            writer.close().map_err(|e| err(&e))?;
        }
    }
    Ok(out)
}
