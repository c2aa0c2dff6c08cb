//! Privacy-unit sketches: which people stand behind an aggregate cell, kept so that two
//! cells' populations can be compared exactly when they differ by a few people, without
//! storing who they are (the cross-release differencing defence).
//!
//! A [`UnitSketch`] is an invertible Bloom lookup table (Goodrich & Mitzenmacher, 2011) over
//! keyed SipHash-1-3 hashes of a cell's distinct privacy-unit values, plus their count.
//! Subtracting two sketches and peeling the result recovers the symmetric difference of the
//! two populations when it is small (tens of units) — exactly the case where
//! releasing both cells would isolate those people; a larger difference fails to peel and is
//! reported as large. The hashes are keyed per tenant, so a sketch reveals nothing without
//! the key, and the key never leaves the domain.
//!
//! The `unit_sketch(value)` aggregate (only the gate's plan rewrite calls it; it is not in
//! the SQL function registry) collects a group's distinct unit hashes and returns the sketch.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use shuyu_vault::SecretKey;
use siphasher::sip::SipHasher13;

/// Cells of the table: four partitions of 24, one hash function each. Two people collide in
/// all four of their cells with probability 1 / 24^4, so a difference of 9 people fails to
/// peel about once in 10,000 comparisons (measured in the tests).
const HASHES: usize = 4;
const PARTITION: usize = 24;
const CELLS: usize = HASHES * PARTITION;
/// Serialized size: unit count, then (count, key xor, check xor) per cell; then, for small
/// populations, the count and list of the unit hashes themselves.
const BYTES: usize = 8 + CELLS * 24;
/// Populations up to this size keep their (keyed) unit hashes, so the gate can audit sums
/// over overlapping small populations for linear reconstruction.
pub const AUDITED_UNITS: usize = 1_000;
/// Every sketch keeps its population's this many smallest unit hashes. Two populations that
/// differ by fewer than k ≤ BOTTOM people share one of their k smallest hashes (of the k
/// smallest of the union, at most k − 1 are in only one of them), so indexing cells by these
/// finds every close pair without comparing all pairs.
pub const BOTTOM: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Cell {
    count: i64,
    keys: u64,
    checks: u64,
}

/// A cell population's sketch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSketch {
    units: u64,
    cells: [Cell; CELLS],
    /// The sorted unit hashes of a population of at most [`AUDITED_UNITS`].
    members: Option<Vec<u64>>,
    /// The [`BOTTOM`] smallest unit hashes, ascending.
    bottom: Vec<u64>,
}

/// How two populations compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// The same people.
    Identical,
    /// Exactly this many people are in one population but not the other.
    Small(usize),
    /// More people differ than the sketch can resolve.
    Large,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: the keys are already keyed hashes, this only decorrelates
    // the cell choices and the check value.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn cell_of(key: u64, partition: usize) -> usize {
    let h = mix(key.wrapping_add(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(partition as u64 + 1)));
    partition * PARTITION + (h % PARTITION as u64) as usize
}

fn check_of(key: u64) -> u64 {
    mix(key ^ 0x5851_f42d_4c95_7f2d)
}

impl UnitSketch {
    /// The sketch of a set of distinct unit hashes.
    pub fn from_hashes<'a>(hashes: impl IntoIterator<Item = &'a u64>) -> UnitSketch {
        let mut sketch = UnitSketch {
            units: 0,
            cells: [Cell::default(); CELLS],
            members: None,
            bottom: Vec::new(),
        };
        let mut members = Vec::new();
        // The smallest hashes so far, a max-heap of at most BOTTOM.
        let mut bottom = std::collections::BinaryHeap::with_capacity(BOTTOM + 1);
        for &key in hashes {
            sketch.units += 1;
            sketch.toggle(key, 1);
            if members.len() <= AUDITED_UNITS {
                members.push(key);
            }
            if bottom.len() < BOTTOM {
                bottom.push(key);
            } else if bottom.peek().is_some_and(|&largest| key < largest) {
                bottom.pop();
                bottom.push(key);
            }
        }
        if members.len() <= AUDITED_UNITS {
            members.sort_unstable();
            sketch.members = Some(members);
        }
        sketch.bottom = bottom.into_sorted_vec();
        sketch
    }

    /// The population's smallest [`BOTTOM`] unit hashes, ascending.
    pub fn bottom(&self) -> &[u64] {
        &self.bottom
    }

    /// The population's unit hashes (sorted), kept for populations of at most
    /// [`AUDITED_UNITS`].
    pub fn members(&self) -> Option<&[u64]> {
        self.members.as_deref()
    }

    fn toggle(&mut self, key: u64, count: i64) {
        let check = check_of(key);
        for partition in 0..HASHES {
            let cell = &mut self.cells[cell_of(key, partition)];
            cell.count += count;
            cell.keys ^= key;
            cell.checks ^= check;
        }
    }

    /// Distinct privacy units in the population.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// How this population differs from `other`'s.
    pub fn difference(&self, other: &UnitSketch) -> Difference {
        let mut diff = self.clone();
        diff.members = None;
        diff.bottom.clear();
        for (cell, theirs) in diff.cells.iter_mut().zip(&other.cells) {
            cell.count -= theirs.count;
            cell.keys ^= theirs.keys;
            cell.checks ^= theirs.checks;
        }
        if diff.cells.iter().all(|c| *c == Cell::default()) {
            return Difference::Identical;
        }
        let mut peeled = 0;
        loop {
            let pure = diff
                .cells
                .iter()
                .find(|c| (c.count == 1 || c.count == -1) && c.checks == check_of(c.keys))
                .copied();
            match pure {
                Some(cell) => {
                    diff.toggle(cell.keys, -cell.count);
                    peeled += 1;
                    if peeled > CELLS * 2 {
                        return Difference::Large;
                    }
                }
                None => break,
            }
        }
        if diff.cells.iter().all(|c| *c == Cell::default()) {
            Difference::Small(peeled)
        } else {
            Difference::Large
        }
    }

    /// Fixed-size binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BYTES);
        out.extend_from_slice(&self.units.to_le_bytes());
        for cell in &self.cells {
            out.extend_from_slice(&cell.count.to_le_bytes());
            out.extend_from_slice(&cell.keys.to_le_bytes());
            out.extend_from_slice(&cell.checks.to_le_bytes());
        }
        out.extend_from_slice(&(self.bottom.len() as u64).to_le_bytes());
        for b in &self.bottom {
            out.extend_from_slice(&b.to_le_bytes());
        }
        if let Some(members) = &self.members {
            out.extend_from_slice(&(members.len() as u64).to_le_bytes());
            for m in members {
                out.extend_from_slice(&m.to_le_bytes());
            }
        }
        out
    }

    /// Parses [`UnitSketch::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<UnitSketch> {
        if bytes.len() < BYTES + 8 || !(bytes.len() - BYTES).is_multiple_of(8) {
            return None;
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let n_bottom = usize::try_from(word(BYTES)).ok()?;
        let after_bottom = BYTES + 8 + n_bottom.checked_mul(8)?;
        if n_bottom > BOTTOM || bytes.len() < after_bottom {
            return None;
        }
        let bottom = (0..n_bottom).map(|i| word(BYTES + 8 + i * 8)).collect();
        let members = if bytes.len() > after_bottom {
            let n = usize::try_from(word(after_bottom)).ok()?;
            if n > AUDITED_UNITS || bytes.len() != after_bottom + 8 + n * 8 {
                return None;
            }
            Some((0..n).map(|i| word(after_bottom + 8 + i * 8)).collect())
        } else {
            None
        };
        let mut sketch = UnitSketch {
            units: word(0),
            cells: [Cell::default(); CELLS],
            members,
            bottom,
        };
        for (i, cell) in sketch.cells.iter_mut().enumerate() {
            let at = 8 + i * 24;
            cell.count = word(at) as i64;
            cell.keys = word(at + 8);
            cell.checks = word(at + 16);
        }
        Some(sketch)
    }
}

/// The `unit_sketch` aggregate, keyed per tenant.
pub(crate) struct UnitSketchUdaf {
    signature: Signature,
    key: [u8; 16],
}

impl std::fmt::Debug for UnitSketchUdaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitSketchUdaf").finish_non_exhaustive()
    }
}

impl PartialEq for UnitSketchUdaf {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for UnitSketchUdaf {}
impl Hash for UnitSketchUdaf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// Name of the sketch aggregate in plans.
pub(crate) const UNIT_SKETCH: &str = "__shuyu_unit_sketch";

impl UnitSketchUdaf {
    /// The aggregate, its hashes keyed by a key derived from the tenant's pseudonym key (so
    /// sketches of one tenant's releases compare, and no one else's).
    pub(crate) fn udaf(pseudonym_key: &SecretKey) -> Arc<AggregateUDF> {
        let derived = pseudonym_key.hmac_sha256(b"shuyu unit sketch v1");
        let mut key = [0u8; 16];
        key.copy_from_slice(&derived[..16]);
        Arc::new(AggregateUDF::from(UnitSketchUdaf {
            signature: Signature::any(1, Volatility::Immutable),
            key,
        }))
    }
}

impl AggregateUDFImpl for UnitSketchUdaf {
    fn name(&self) -> &str {
        UNIT_SKETCH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(SketchAccumulator {
            key: self.key,
            hashes: HashSet::new(),
        }))
    }
}

#[derive(Debug)]
struct SketchAccumulator {
    key: [u8; 16],
    hashes: HashSet<u64>,
}

impl SketchAccumulator {
    fn hash(&self, value: &[u8]) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write(value);
        hasher.finish()
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        // One text form for every unit type, so an id stored as text and as a number hash
        // alike.
        let text = arrow::compute::cast(values, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        for i in 0..text.len() {
            if text.is_valid(i) {
                let h = self.hash(text.value(i).as_bytes());
                self.hashes.insert(h);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Binary(Some(
            UnitSketch::from_hashes(&self.hashes).to_bytes(),
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.hashes.capacity() * 9
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let mut bytes = Vec::with_capacity(self.hashes.len() * 8);
        for h in &self.hashes {
            bytes.extend_from_slice(&h.to_le_bytes());
        }
        Ok(vec![ScalarValue::Binary(Some(bytes))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let Some(states) = states.first() else {
            return Ok(());
        };
        let states: &BinaryArray = states.as_binary::<i32>();
        for i in 0..states.len() {
            if states.is_valid(i) {
                for chunk in states.value(i).chunks_exact(8) {
                    self.hashes
                        .insert(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
                }
            }
        }
        Ok(())
    }
}

/// Unit sketches of a column of serialized sketches (`None` for nulls or malformed values).
pub(crate) fn sketches(column: &ArrayRef) -> Vec<Option<UnitSketch>> {
    // Staged results read back as BinaryView: one form for all.
    let column = match arrow::compute::cast(column, &DataType::Binary) {
        Ok(column) => column,
        Err(_) => return vec![None; column.len()],
    };
    match column.as_binary_opt::<i32>() {
        Some(binary) => (0..binary.len())
            .map(|i| {
                binary
                    .is_valid(i)
                    .then(|| UnitSketch::from_bytes(binary.value(i)))
                    .flatten()
            })
            .collect(),
        None => vec![None; column.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Symmetric differences up to this size peel in these tests.
    const DECODABLE: usize = 30;

    fn sketch(ids: impl IntoIterator<Item = u64>) -> UnitSketch {
        let hashes: Vec<u64> = ids.into_iter().map(|i| mix(i ^ 0xdead_beef)).collect();
        UnitSketch::from_hashes(&hashes)
    }

    #[test]
    fn small_differences_are_counted_exactly_and_large_ones_are_large() {
        let base = sketch(0..10_000);
        assert_eq!(base.units(), 10_000);
        assert_eq!(base.difference(&sketch(0..10_000)), Difference::Identical);
        assert_eq!(base.difference(&sketch(1..10_000)), Difference::Small(1));
        assert_eq!(sketch(1..10_000).difference(&base), Difference::Small(1));
        // One person out, another in: two differ although the counts are equal.
        assert_eq!(
            base.difference(&sketch((1..10_000).chain([20_000]))),
            Difference::Small(2)
        );
        for d in 1..=DECODABLE {
            assert_eq!(
                base.difference(&sketch(d as u64..10_000)),
                Difference::Small(d),
                "{d}"
            );
        }
        assert_eq!(base.difference(&sketch(500..10_000)), Difference::Large);
        assert_eq!(base.difference(&sketch(20_000..30_000)), Difference::Large);
    }

    /// Small differences must peel: a failure is a missed differencing pair.
    #[test]
    fn small_differences_almost_never_fail_to_peel() {
        let mut failures = 0;
        let trials = 20_000u64;
        for t in 0..trials {
            let d = 1 + (t % 9);
            let start = t * 1_000;
            let a = sketch(start..start + 200);
            let b = sketch(start + d..start + 200);
            match a.difference(&b) {
                Difference::Small(n) => assert_eq!(n as u64, d),
                Difference::Large => failures += 1,
                Difference::Identical => panic!("not identical"),
            }
        }
        eprintln!("{failures} of {trials} small differences did not peel");
        assert!(
            failures <= 10,
            "{failures} of {trials} small differences did not peel"
        );
    }

    /// The index the differencing check relies on: populations that differ by fewer than k
    /// people share one of their k smallest hashes.
    #[test]
    fn close_populations_share_a_bottom_hash() {
        for t in 0..2_000u64 {
            let k = 2 + (t % 9) as usize;
            let size = 1 + (t % 500);
            let start = t * 10_000;
            let a: Vec<u64> = (start..start + size).collect();
            // Remove up to k - 1 people, some of the smallest among them.
            let removed = (t as usize * 7) % k;
            let b: Vec<u64> = a.iter().copied().skip(removed).collect();
            let (sa, sb) = (sketch(a), sketch(b));
            if sb.units() == 0 {
                continue;
            }
            let bottom_a = &sa.bottom()[..k.min(sa.bottom().len())];
            let bottom_b = &sb.bottom()[..k.min(sb.bottom().len())];
            assert!(
                bottom_a.iter().any(|h| bottom_b.contains(h)),
                "t={t}: {removed} removed of {size}"
            );
        }
    }

    #[test]
    fn bytes_round_trip() {
        let s = sketch(0..123);
        assert_eq!(s.members().map(<[u64]>::len), Some(123));
        assert_eq!(UnitSketch::from_bytes(&s.to_bytes()), Some(s));
        let large = sketch(0..AUDITED_UNITS as u64 + 1);
        assert_eq!(large.members(), None);
        assert_eq!(large.bottom().len(), BOTTOM);
        assert!(large.bottom().windows(2).all(|w| w[0] < w[1]));
        assert_eq!(UnitSketch::from_bytes(&large.to_bytes()), Some(large));
        assert_eq!(UnitSketch::from_bytes(b"short"), None);
    }
}
