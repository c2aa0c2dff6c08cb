//! Masking of Arrow arrays by a column's rule, the masked tables engineers see, and the SQL
//! masking functions (`pseudonym`, `mask_id`, …) that mark a result column as masked.
//!
//! One implementation serves both paths: samples and previews call [`mask_value_array`]
//! directly, SQL calls it through [`MaskingUdf`].

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Date64Type, Float64Type, Int64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use shuyu_policy::{DateGranularity, MaskingRule};
use shuyu_vault::SecretKey;

use crate::error::EngineError;

/// A small table of masked values, rendered as text.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskedTable {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Result columns left out of the table: derived from protected columns (production).
    #[serde(default)]
    pub withheld: Vec<String>,
    /// Whether the result's row count is withheld (protected columns choose its rows).
    #[serde(default)]
    pub rows_withheld: bool,
    /// What the table shows and why, for the engineer.
    #[serde(default)]
    pub note: String,
}

/// The pseudonym token of a value: keyed HMAC-SHA256, first 64 bits in hex.
fn pseudonym_token(key: &SecretKey, value: &str) -> String {
    let mac = key.hmac_sha256(value.as_bytes());
    format!("p_{}", hex::encode(&mac[..8]))
}

fn display_strings(array: &ArrayRef) -> Result<Vec<Option<String>>, EngineError> {
    let options = FormatOptions::default().with_null("");
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)
        .map_err(|e| EngineError::Internal(format!("formatting a column: {e}")))?;
    Ok((0..array.len())
        .map(|i| {
            if array.is_null(i) {
                None
            } else {
                Some(formatter.value(i).to_string())
            }
        })
        .collect())
}

/// Applies `rule` to every value of `array`, returning text. Nulls stay null.
///
/// # Errors
/// Only on internal failures (an unsupported array type for text display).
pub fn mask_value_array(
    array: &ArrayRef,
    rule: &MaskingRule,
    pseudonym_key: &SecretKey,
) -> Result<StringArray, EngineError> {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 8);
    match rule {
        MaskingRule::GeneralizeDate(granularity) => {
            let days: Vec<Option<i32>> = match array.data_type() {
                DataType::Date32 => array.as_primitive::<Date32Type>().iter().collect(),
                DataType::Date64 => array
                    .as_primitive::<Date64Type>()
                    .iter()
                    .map(|v| v.map(|ms| ms.div_euclid(86_400_000) as i32))
                    .collect(),
                _ => return Ok(suppress_all(array)),
            };
            for d in days {
                out.append_option(d.map(|d| shuyu_policy::generalize_date(d, *granularity)));
            }
        }
        MaskingRule::GeneralizeNumber { width } => match array.data_type() {
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..) => {
                let floats = cast(array, &DataType::Float64)
                    .map_err(|e| EngineError::Internal(format!("cast for masking: {e}")))?;
                for v in floats.as_primitive::<Float64Type>().iter() {
                    out.append_option(v.map(|v| shuyu_policy::generalize_float(v, *width)));
                }
            }
            t if t.is_integer() => {
                let ints = cast(array, &DataType::Int64)
                    .map_err(|e| EngineError::Internal(format!("cast for masking: {e}")))?;
                for v in ints.as_primitive::<Int64Type>().iter() {
                    out.append_option(v.map(|v| shuyu_policy::generalize_int(v, *width)));
                }
            }
            _ => return Ok(suppress_all(array)),
        },
        MaskingRule::Suppress => return Ok(suppress_all(array)),
        MaskingRule::Keep
        | MaskingRule::Pseudonym
        | MaskingRule::PartialIdNumber
        | MaskingRule::PartialMobile
        | MaskingRule::PartialName => {
            for value in display_strings(array)? {
                out.append_option(value.map(|v| match rule {
                    MaskingRule::Keep => v,
                    MaskingRule::Pseudonym => pseudonym_token(pseudonym_key, &v),
                    MaskingRule::PartialIdNumber => shuyu_policy::mask_id_number(&v),
                    MaskingRule::PartialMobile => shuyu_policy::mask_mobile(&v),
                    _ => shuyu_policy::mask_name(&v),
                }));
            }
        }
    }
    Ok(out.finish())
}

fn suppress_all(array: &ArrayRef) -> StringArray {
    (0..array.len())
        .map(|i| (!array.is_null(i)).then(shuyu_policy::suppressed))
        .collect()
}

/// Masks up to `max_rows` rows of `batches`, column `i` with `rules[i]`.
///
/// # Errors
/// If `rules` does not match the batches' width, or on internal failures.
pub fn mask_batches(
    batches: &[RecordBatch],
    rules: &[MaskingRule],
    pseudonym_key: &SecretKey,
    max_rows: usize,
) -> Result<MaskedTable, EngineError> {
    let mut table = MaskedTable::default();
    let Some(first) = batches.first() else {
        return Ok(table);
    };
    let schema = first.schema();
    if schema.fields().len() != rules.len() {
        return Err(EngineError::Internal(
            "masking rules do not match the columns".into(),
        ));
    }
    table.columns = schema.fields().iter().map(|f| f.name().clone()).collect();
    for batch in batches {
        if table.rows.len() >= max_rows {
            break;
        }
        let take = (max_rows - table.rows.len()).min(batch.num_rows());
        let batch = batch.slice(0, take);
        let masked: Vec<StringArray> = batch
            .columns()
            .iter()
            .zip(rules)
            .map(|(column, rule)| mask_value_array(column, rule, pseudonym_key))
            .collect::<Result<_, _>>()?;
        for row in 0..take {
            table.rows.push(
                masked
                    .iter()
                    .map(|c| (!c.is_null(row)).then(|| c.value(row).to_owned()))
                    .collect(),
            );
        }
    }
    Ok(table)
}

/// Applies `rule` to `array` keeping its Arrow type, for the data lab's masked tables: the
/// same queries then type-check in the lab and in production.
///
/// Dates are cut to the first day of their year or month, numbers to the lower bound of
/// their bucket, integers pseudonymised to a keyed 63-bit number, strings masked as in
/// samples; a rule that cannot keep the type (a partial mask of a number, say) suppresses
/// the values to NULL. Nulls stay null.
///
/// # Errors
/// Only on internal failures.
pub fn mask_array_typed(
    array: &ArrayRef,
    rule: &MaskingRule,
    pseudonym_key: &SecretKey,
) -> Result<ArrayRef, EngineError> {
    use arrow::array::{Date32Array, Float64Array, Int64Array, new_null_array};
    let data_type = array.data_type().clone();
    let nulls = || new_null_array(&data_type, array.len());
    let out: ArrayRef = match (rule, &data_type) {
        (MaskingRule::Keep, _) => Arc::clone(array),
        (MaskingRule::Suppress, _) => nulls(),
        (MaskingRule::GeneralizeDate(granularity), DataType::Date32) => {
            let cut: Date32Array = array
                .as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.map(|d| truncate_days(d, *granularity)))
                .collect();
            Arc::new(cut)
        }
        (MaskingRule::GeneralizeNumber { width }, DataType::Int64) if *width >= 1 => {
            let cut: Int64Array = array
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| v.div_euclid(*width) * width))
                .collect();
            Arc::new(cut)
        }
        (MaskingRule::GeneralizeNumber { width }, DataType::Float64) if *width >= 1 => {
            let w = *width as f64;
            let cut: Float64Array = array
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| {
                    v.filter(|v| v.is_finite())
                        .map(|v| (v / w).floor() * w + 0.0)
                })
                .collect();
            Arc::new(cut)
        }
        (MaskingRule::Pseudonym, DataType::Int64) => {
            let tokens: Int64Array = array
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| {
                    v.map(|v| {
                        let mac = pseudonym_key.hmac_sha256(v.to_string().as_bytes());
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(&mac[..8]);
                        (u64::from_be_bytes(bytes) >> 1) as i64
                    })
                })
                .collect();
            Arc::new(tokens)
        }
        (
            MaskingRule::Pseudonym
            | MaskingRule::PartialIdNumber
            | MaskingRule::PartialMobile
            | MaskingRule::PartialName,
            DataType::Utf8,
        ) => Arc::new(mask_value_array(array, rule, pseudonym_key)?),
        _ => nulls(),
    };
    Ok(out)
}

/// Days since 1970-01-01 cut to the first day of their year or month.
fn truncate_days(days: i32, granularity: DateGranularity) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let Some(date) = epoch.checked_add_signed(chrono::TimeDelta::days(i64::from(days))) else {
        return days;
    };
    use chrono::Datelike;
    let cut = match granularity {
        DateGranularity::Year => date.with_day(1).and_then(|d| d.with_month(1)),
        DateGranularity::Month => date.with_day(1),
    };
    cut.map_or(days, |d| (d - epoch).num_days() as i32)
}

/// Names of the SQL functions whose output counts as masked.
pub const MASKING_FUNCTIONS: [&str; 6] = [
    "pseudonym",
    "mask_id",
    "mask_mobile",
    "mask_name",
    "generalize_date",
    "generalize_number",
];

/// The rule a call of masking function `name` applies, read from its literal arguments;
/// `None` when it is not a masking function or its parameters are not literals.
pub(crate) fn rule_of_call(
    name: &str,
    args: &[datafusion::logical_expr::Expr],
) -> Option<MaskingRule> {
    use datafusion::logical_expr::Expr;
    let literal = || -> Option<String> {
        let mut arg = args.get(1)?;
        while let Expr::Alias(alias) = arg {
            arg = &alias.expr;
        }
        match arg {
            Expr::Literal(value, _) => match value {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
                ScalarValue::Int64(Some(v)) => Some(v.to_string()),
                ScalarValue::Int32(Some(v)) => Some(v.to_string()),
                _ => None,
            },
            _ => None,
        }
    };
    Some(match name {
        "pseudonym" => MaskingRule::Pseudonym,
        "mask_id" => MaskingRule::PartialIdNumber,
        "mask_mobile" => MaskingRule::PartialMobile,
        "mask_name" => MaskingRule::PartialName,
        "generalize_date" => match literal()?.to_ascii_lowercase().as_str() {
            "year" => MaskingRule::GeneralizeDate(DateGranularity::Year),
            "month" => MaskingRule::GeneralizeDate(DateGranularity::Month),
            _ => return None,
        },
        "generalize_number" => {
            let width: i64 = literal()?.trim().parse().ok()?;
            (width >= 1).then_some(MaskingRule::GeneralizeNumber { width })?
        }
        _ => return None,
    })
}

/// Whether `rule` is meant for values of `data_type`: partial masks for text, date
/// generalisation for dates, number buckets for numbers, pseudonyms for anything.
pub(crate) fn applies_to(rule: &MaskingRule, data_type: &DataType) -> bool {
    let text = matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    match rule {
        MaskingRule::Pseudonym => true,
        MaskingRule::PartialIdNumber | MaskingRule::PartialMobile | MaskingRule::PartialName => {
            text
        }
        MaskingRule::GeneralizeDate(_) => {
            matches!(data_type, DataType::Date32 | DataType::Date64)
        }
        MaskingRule::GeneralizeNumber { .. } => {
            data_type.is_integer()
                || matches!(
                    data_type,
                    DataType::Float16
                        | DataType::Float32
                        | DataType::Float64
                        | DataType::Decimal128(..)
                )
        }
        MaskingRule::Keep | MaskingRule::Suppress => false,
    }
}

/// The key of the tokens engineers are shown (samples, lab copies and previews), derived
/// from the tenant's pseudonym key. It is never bound to a function a job can call, so a
/// token shown cannot be matched against `pseudonym('a guess')`.
pub fn display_key(pseudonym_key: &SecretKey) -> SecretKey {
    pseudonym_key.derive("shuyu display tokens v1")
}

/// A SQL masking function bound to the tenant's pseudonym key.
#[derive(Debug)]
pub struct MaskingUdf {
    name: &'static str,
    signature: Signature,
    key: SecretKey,
}

impl PartialEq for MaskingUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.key.fingerprint() == other.key.fingerprint()
    }
}
impl Eq for MaskingUdf {}
impl Hash for MaskingUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.key.fingerprint().hash(state);
    }
}

impl MaskingUdf {
    /// All masking functions, bound to `key`.
    pub fn all(key: &SecretKey) -> Vec<ScalarUDF> {
        MASKING_FUNCTIONS
            .iter()
            .map(|name| {
                let n_args = if name.starts_with("generalize") { 2 } else { 1 };
                ScalarUDF::new_from_impl(MaskingUdf {
                    name,
                    signature: Signature::any(n_args, Volatility::Immutable),
                    key: key.clone(),
                })
            })
            .collect()
    }

    fn rule(&self, args: &[ColumnarValue]) -> DfResult<MaskingRule> {
        let literal = || -> DfResult<String> {
            match args.get(1) {
                Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))))
                | Some(ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s))))
                | Some(ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s)))) => Ok(s.clone()),
                Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))) => Ok(v.to_string()),
                Some(ColumnarValue::Scalar(ScalarValue::Int32(Some(v)))) => Ok(v.to_string()),
                _ => Err(DataFusionError::Plan(format!(
                    "the second argument of {} must be a literal",
                    self.name
                ))),
            }
        };
        Ok(match self.name {
            "pseudonym" => MaskingRule::Pseudonym,
            "mask_id" => MaskingRule::PartialIdNumber,
            "mask_mobile" => MaskingRule::PartialMobile,
            "mask_name" => MaskingRule::PartialName,
            "generalize_date" => match literal()?.to_ascii_lowercase().as_str() {
                "year" => MaskingRule::GeneralizeDate(DateGranularity::Year),
                "month" => MaskingRule::GeneralizeDate(DateGranularity::Month),
                _ => {
                    return Err(DataFusionError::Plan(
                        "generalize_date takes 'year' or 'month'".into(),
                    ));
                }
            },
            _ => {
                let width: i64 = literal()?.parse().map_err(|_| {
                    DataFusionError::Plan("generalize_number takes an integer width".into())
                })?;
                if width < 1 {
                    return Err(DataFusionError::Plan(
                        "generalize_number takes a width of at least 1".into(),
                    ));
                }
                MaskingRule::GeneralizeNumber { width }
            }
        })
    }
}

impl ScalarUDFImpl for MaskingUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rule = self.rule(&args.args)?;
        let input = args.args[0].to_array(args.number_rows)?;
        let masked = mask_value_array(&input, &rule, &self.key)
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        Ok(ColumnarValue::Array(Arc::new(masked) as ArrayRef))
    }
}
