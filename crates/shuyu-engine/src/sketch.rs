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

use arrow::array::BooleanArray;
use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, UInt64Type};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sha2::{Digest as _, Sha256};
use shuyu_vault::SecretKey;
use siphasher::sip::SipHasher13;

/// Cells of the table: four partitions of 24, one hash function each. Two people collide in
/// all four of their cells with probability 1 / 24^4, so a difference of 9 people fails to
/// peel about once in 10,000 comparisons (measured in the tests).
const HASHES: usize = 4;
const PARTITION: usize = 24;
const CELLS: usize = HASHES * PARTITION;
/// Populations up to this size keep their (keyed) unit hashes, so the gate can audit sums
/// over overlapping small populations for linear reconstruction.
pub const AUDITED_UNITS: usize = 1_000;
/// Every sketch keeps its population's this many smallest unit hashes. Two populations that
/// differ by fewer than k ≤ BOTTOM people share one of their k smallest hashes (of the k
/// smallest of the union, at most k − 1 are in only one of them), so indexing cells by these
/// finds every close pair without comparing all pairs.
pub const BOTTOM: usize = 32;
/// Buckets of a head's signature ([`sketch_head`]): the member hashes split by their top
/// eight bits, one byte (the XOR of their low bytes) per bucket. Two populations whose
/// signatures differ in n buckets differ by at least n people, so heads tell most different
/// populations apart as [`Difference::Large`] without their members.
const SIGNATURE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Cell {
    count: i64,
    keys: u64,
    checks: u64,
}

/// A cell population's sketch: for a population of at most [`AUDITED_UNITS`], its (keyed)
/// unit hashes themselves; for a larger one, the invertible table and its [`BOTTOM`]
/// smallest hashes. Held in its binary form ([`UnitSketch::to_bytes`]), validated once:
/// the checks read the count and the smallest hashes from it in place, and decode members
/// or a table only for the pairs and audits that need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSketch {
    bytes: Vec<u8>,
}

/// A 128-bit digest of a sketch's binary form (the first half of its SHA-256): two sketches
/// with the same digest describe the same population, as far as the sketch can tell.
pub type SketchDigest = [u8; 16];

/// The [`SketchDigest`] of a binary sketch.
fn digest_of(bytes: &[u8]) -> SketchDigest {
    let full = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A validated binary sketch borrowed from a result column or a [`UnitSketch`]: nothing
/// decoded until asked for. It may be a sketch's *head* ([`sketch_head`]): the count, the
/// digest and the smallest hashes, without the members or the table — enough for every
/// check but an exact comparison of two different populations and the reconstruction audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SketchRef<'a> {
    units: u64,
    /// The whole binary form (of a full sketch, for its digest).
    whole: &'a [u8],
    /// A head's digest of the full sketch it stands for (also set on a full sketch read
    /// beside its head, or kept beside it in the ledger).
    head_digest: Option<&'a [u8]>,
    /// A head of a population of at most [`AUDITED_UNITS`], whose full sketch keeps members.
    head_of_members: bool,
    /// The sorted member hashes (little-endian words) of a population of at most
    /// [`AUDITED_UNITS`].
    members: Option<&'a [u8]>,
    /// The invertible table's cells (large populations only).
    table: Option<&'a [u8]>,
    /// A head's signature of its members ([`SIGNATURE`] bytes; heads of populations of at
    /// most [`AUDITED_UNITS`] written since the signature was added).
    signature: Option<&'a [u8]>,
    /// The smallest hashes, ascending (little-endian words).
    bottom: &'a [u8],
}

/// How two populations compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// The same people.
    Identical,
    /// Exactly this many people are in one population but not the other.
    Small(usize),
    /// More people differ than the sketch can resolve (or than the caller asked about).
    Large,
    /// Not known from heads alone ([`sketch_head`]): the full sketches are needed.
    Unknown,
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

/// The little-endian words of `bytes` (a multiple of 8 long).
fn words(bytes: &[u8]) -> impl ExactSizeIterator<Item = u64> + Clone + '_ {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
}

/// Tag of the binary form: the population's members follow.
const MEMBERS_TAG: u8 = 0;
/// Tag of the binary form: the invertible table and the smallest hashes follow.
const TABLE_TAG: u8 = 1;
/// Tag of a head ([`sketch_head`]): whether the full sketch keeps members (one byte), its
/// digest, and its smallest hashes follow. Heads of large populations are written so; heads
/// of small ones were, before [`SIGNED_HEAD_TAG`] (staged results keep them: both are read).
const HEAD_TAG: u8 = 2;
/// Tag of a head of a population that keeps its members: as [`HEAD_TAG`], with the members'
/// signature ([`SIGNATURE`] bytes) between the digest and the smallest hashes.
const SIGNED_HEAD_TAG: u8 = 3;

/// The signature of sorted or unsorted member hashes: per bucket of their top eight bits,
/// the XOR of their low bytes. Where two populations' signatures differ, at least one
/// person of that bucket is in only one of them; so the buckets that differ are a lower
/// bound of the people who do (equal buckets prove nothing: a bucket's people may differ
/// with equal bytes).
fn signature_of(members: impl Iterator<Item = u64>) -> [u8; SIGNATURE] {
    let mut out = [0u8; SIGNATURE];
    for m in members {
        out[(m >> 56) as usize] ^= m as u8;
    }
    out
}

/// People certainly in only one of two populations with these signatures.
fn signature_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// The head of a full binary sketch: the unit count, its tag, whether the full form keeps
/// the members, the full form's [`SketchDigest`], the members' signature when it keeps them,
/// and the smallest hashes — about 560 bytes where a cell of 400 people takes 3.2 KB.
/// `None` unless `bytes` is a full sketch.
pub(crate) fn sketch_head(bytes: &[u8]) -> Option<Vec<u8>> {
    let full = SketchRef::parse(bytes, false)?;
    if full.is_head() {
        return None;
    }
    let mut out = Vec::with_capacity(8 + 2 + 16 + SIGNATURE + full.bottom.len());
    out.extend_from_slice(&bytes[..8]);
    out.push(if full.members.is_some() {
        SIGNED_HEAD_TAG
    } else {
        HEAD_TAG
    });
    out.push(u8::from(full.members.is_some()));
    out.extend_from_slice(&digest_of(bytes));
    if let Some(members) = full.members {
        out.extend_from_slice(&signature_of(words(members)));
    }
    out.extend_from_slice(full.bottom);
    Some(out)
}

impl UnitSketch {
    /// The sketch of a set of distinct unit hashes.
    pub fn from_hashes<'a>(hashes: impl IntoIterator<Item = &'a u64>) -> UnitSketch {
        let mut all: Vec<u64> = hashes.into_iter().copied().collect();
        all.sort_unstable();
        all.dedup();
        UnitSketch {
            bytes: sorted_to_bytes(&all),
        }
    }

    /// The borrowed form (the bytes were validated when this sketch was made).
    pub(crate) fn view(&self) -> SketchRef<'_> {
        SketchRef::parse(&self.bytes, false).expect("a validated sketch")
    }

    /// The population's smallest [`BOTTOM`] unit hashes, ascending.
    pub fn bottom(&self) -> Vec<u64> {
        self.view().bottom().collect()
    }

    /// The population's unit hashes (sorted), kept for populations of at most
    /// [`AUDITED_UNITS`].
    pub fn members(&self) -> Option<Vec<u64>> {
        self.view().members()
    }

    /// Distinct privacy units in the population.
    pub fn units(&self) -> u64 {
        self.view().units()
    }

    /// How this population differs from `other`'s: exactly, from the members when both
    /// keep them; else from the invertible tables.
    pub fn difference(&self, other: &UnitSketch) -> Difference {
        self.view().difference(&other.view(), usize::MAX)
    }

    /// Binary form: the unit count, then either the members or the table and bottom hashes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The digest of the binary form: equal digests, equal sketches.
    pub fn digest(&self) -> SketchDigest {
        digest_of(&self.bytes)
    }

    /// Parses [`UnitSketch::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<UnitSketch> {
        UnitSketch::from_vec(bytes.to_vec())
    }

    /// [`UnitSketch::from_bytes`] taking the bytes it keeps.
    pub fn from_vec(bytes: Vec<u8>) -> Option<UnitSketch> {
        if SketchRef::parse(&bytes, true)?.is_head() {
            return None;
        }
        Some(UnitSketch { bytes })
    }
}

impl<'a> SketchRef<'a> {
    /// Reads a binary sketch; `None` unless it is well formed. With `validate`, the members'
    /// order is checked too (the exact comparisons rely on it).
    pub(crate) fn parse(bytes: &'a [u8], validate: bool) -> Option<SketchRef<'a>> {
        if bytes.len() < 9 {
            return None;
        }
        let units = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let rest = &bytes[9..];
        match bytes[8] {
            MEMBERS_TAG
                if rest.len().is_multiple_of(8)
                    && (rest.len() / 8) as u64 == units
                    && rest.len() / 8 <= AUDITED_UNITS =>
            {
                if validate && !words(rest).zip(words(rest).skip(1)).all(|(a, b)| a < b) {
                    return None;
                }
                Some(SketchRef {
                    units,
                    whole: bytes,
                    head_digest: None,
                    head_of_members: false,
                    members: Some(rest),
                    table: None,
                    signature: None,
                    bottom: &rest[..rest.len().min(BOTTOM * 8)],
                })
            }
            TABLE_TAG
                if rest.len() >= CELLS * 24
                    && (rest.len() - CELLS * 24).is_multiple_of(8)
                    && (rest.len() - CELLS * 24) / 8 <= BOTTOM =>
            {
                let (table, bottom) = rest.split_at(CELLS * 24);
                Some(SketchRef {
                    units,
                    whole: bytes,
                    head_digest: None,
                    head_of_members: false,
                    members: None,
                    table: Some(table),
                    signature: None,
                    bottom,
                })
            }
            tag @ (HEAD_TAG | SIGNED_HEAD_TAG) if rest.len() >= 17 && rest[0] <= 1 => {
                let keeps = rest[0] == 1;
                let (digest, after) = rest[1..].split_at(16);
                let (signature, bottom) = match tag {
                    SIGNED_HEAD_TAG if keeps && after.len() >= SIGNATURE => {
                        let (signature, bottom) = after.split_at(SIGNATURE);
                        (Some(signature), bottom)
                    }
                    SIGNED_HEAD_TAG => return None,
                    _ => (None, after),
                };
                let expected = units.min(BOTTOM as u64) as usize;
                if bottom.len() != expected * 8
                    || keeps != (units <= AUDITED_UNITS as u64)
                    || (validate && !words(bottom).zip(words(bottom).skip(1)).all(|(a, b)| a < b))
                {
                    return None;
                }
                Some(SketchRef {
                    units,
                    whole: bytes,
                    head_digest: Some(digest),
                    head_of_members: keeps,
                    members: None,
                    table: None,
                    signature,
                    bottom,
                })
            }
            _ => None,
        }
    }

    /// Distinct privacy units in the population.
    pub(crate) fn units(&self) -> u64 {
        self.units
    }

    /// The population's smallest [`BOTTOM`] unit hashes, ascending.
    pub(crate) fn bottom(&self) -> impl ExactSizeIterator<Item = u64> + Clone + 'a {
        words(self.bottom)
    }

    /// How many smallest hashes the sketch keeps (all of a population below [`BOTTOM`]).
    pub(crate) fn bottom_len(&self) -> usize {
        self.bottom.len() / 8
    }

    /// Whether the population's members are kept (it has at most [`AUDITED_UNITS`]); for a
    /// head, whether its full sketch keeps them.
    pub(crate) fn keeps_members(&self) -> bool {
        self.members.is_some() || self.head_of_members
    }

    /// Whether this is a head: count, digest and smallest hashes only.
    pub(crate) fn is_head(&self) -> bool {
        self.members.is_none() && self.table.is_none()
    }

    /// This full sketch, its digest taken from its head (read beside it) instead of being
    /// computed again.
    pub(crate) fn with_head(self, head: &SketchRef<'a>) -> SketchRef<'a> {
        SketchRef {
            head_digest: head.head_digest,
            ..self
        }
    }

    /// This full sketch with its digest as kept beside it (a released cell's, in the
    /// ledger), instead of computed again at every comparison.
    pub(crate) fn with_digest(self, digest: &'a SketchDigest) -> SketchRef<'a> {
        SketchRef {
            head_digest: Some(digest.as_slice()),
            ..self
        }
    }

    /// The digest of the full sketch (read from a head, computed from a full sketch).
    pub(crate) fn digest(&self) -> SketchDigest {
        match self.head_digest {
            Some(d) => d.try_into().expect("16 bytes"),
            None => digest_of(self.whole),
        }
    }

    /// The members' signature ([`signature_of`]): a head's, read in place, or computed
    /// from the members; `None` for large populations and heads written without one.
    fn signature(&self) -> Option<std::borrow::Cow<'a, [u8]>> {
        match (self.signature, self.members) {
            (Some(s), _) => Some(std::borrow::Cow::Borrowed(s)),
            (None, Some(m)) => Some(std::borrow::Cow::Owned(signature_of(words(m)).to_vec())),
            (None, None) => None,
        }
    }

    /// The population's unit hashes (sorted), decoded, when kept.
    pub(crate) fn members(&self) -> Option<Vec<u64>> {
        self.members.map(|m| words(m).collect())
    }

    /// People certainly in only one of the two populations, from their smallest hashes
    /// alone, and whether that is all of them (both keep their whole population there). A
    /// hash of one at or below the other's largest kept hash is in the other population
    /// exactly when it is among the other's kept hashes.
    fn bottom_difference(&self, other: &SketchRef<'_>) -> (usize, bool) {
        let whole = |s: &SketchRef<'_>| s.units <= s.bottom_len() as u64;
        let (a_whole, b_whole) = (whole(self), whole(other));
        let limit_of = |s: &SketchRef<'_>, is_whole: bool| {
            if is_whole {
                u64::MAX
            } else {
                s.bottom().last().unwrap_or(u64::MAX)
            }
        };
        let (a_max, b_max) = (limit_of(self, a_whole), limit_of(other, b_whole));
        let (mut a, mut b) = (self.bottom().peekable(), other.bottom().peekable());
        let mut only = 0;
        loop {
            match (a.peek().copied(), b.peek().copied()) {
                (Some(x), Some(y)) if x == y => {
                    a.next();
                    b.next();
                }
                (Some(x), y) if y.is_none_or(|y| x < y) => {
                    a.next();
                    if x <= b_max {
                        only += 1;
                    }
                }
                (_, Some(y)) => {
                    b.next();
                    if y <= a_max {
                        only += 1;
                    }
                }
                _ => break,
            }
        }
        (only, a_whole && b_whole)
    }

    /// The invertible table, built from the members when the sketch does not keep one.
    fn table(&self) -> Box<[Cell; CELLS]> {
        match (self.table, self.members) {
            (Some(table), _) => {
                let mut cells = Box::new([Cell::default(); CELLS]);
                let mut values = words(table);
                for cell in cells.iter_mut() {
                    cell.count = values.next().unwrap_or(0) as i64;
                    cell.keys = values.next().unwrap_or(0);
                    cell.checks = values.next().unwrap_or(0);
                }
                cells
            }
            (None, Some(members)) => table_of(words(members)),
            (None, None) => Box::new([Cell::default(); CELLS]),
        }
    }

    /// How this population differs from `other`'s: exactly, from the members when both
    /// keep them; else from the invertible tables. Differences of `limit` people or more
    /// may be reported as [`Difference::Large`] without being counted.
    ///
    /// A head can only be told identical to another sketch (by digest): otherwise the
    /// comparison is [`Difference::Unknown`] and needs the full sketches.
    pub(crate) fn difference(&self, other: &SketchRef<'_>, limit: usize) -> Difference {
        if self.is_head() || other.is_head() {
            if self.units == other.units && self.digest() == other.digest() {
                return Difference::Identical;
            }
            // The smallest hashes settle it when they hold whole populations, or show at
            // least `limit` people in only one of them; else the signatures may.
            return match self.bottom_difference(other) {
                (d, true) => match d {
                    0 => Difference::Identical,
                    d if d >= limit => Difference::Large,
                    d => Difference::Small(d),
                },
                (d, false) if d >= limit => Difference::Large,
                _ => match (self.signature(), other.signature()) {
                    (Some(a), Some(b)) if signature_difference(&a, &b) >= limit => {
                        Difference::Large
                    }
                    _ => Difference::Unknown,
                },
            };
        }
        if let (Some(a), Some(b)) = (self.members, other.members) {
            if a == b {
                return Difference::Identical;
            }
            return match symmetric_difference(a, b, limit) {
                0 => Difference::Identical,
                d if d >= limit => Difference::Large,
                d => Difference::Small(d),
            };
        }
        let mut diff = self.table();
        for (cell, theirs) in diff.iter_mut().zip(other.table().iter()) {
            cell.count -= theirs.count;
            cell.keys ^= theirs.keys;
            cell.checks ^= theirs.checks;
        }
        if diff.iter().all(|c| *c == Cell::default()) {
            return Difference::Identical;
        }
        let mut peeled = 0;
        loop {
            let pure = diff
                .iter()
                .find(|c| (c.count == 1 || c.count == -1) && c.checks == check_of(c.keys))
                .copied();
            match pure {
                Some(cell) => {
                    toggle(&mut diff, cell.keys, -cell.count);
                    peeled += 1;
                    if peeled > CELLS * 2 {
                        return Difference::Large;
                    }
                }
                None => break,
            }
        }
        if diff.iter().all(|c| *c == Cell::default()) {
            Difference::Small(peeled)
        } else {
            Difference::Large
        }
    }
}

/// The length of the binary form of the sketch of `units` distinct unit hashes.
fn sketch_len(units: usize) -> usize {
    if units <= AUDITED_UNITS {
        9 + units * 8
    } else {
        9 + CELLS * 24 + BOTTOM * 8
    }
}

/// A column's offset for `len` bytes of values.
fn offset(len: usize) -> DfResult<i32> {
    i32::try_from(len)
        .map_err(|_| DataFusionError::ResourcesExhausted("sketches over 2 GiB in one batch".into()))
}

/// A binary column of the `values` between consecutive `offsets` (none null).
fn binary_array(offsets: Vec<i32>, values: Vec<u8>) -> BinaryArray {
    BinaryArray::new(
        arrow::buffer::OffsetBuffer::new(offsets.into()),
        values.into(),
        None,
    )
}

/// The binary form of the sketch of sorted, distinct unit hashes.
fn sorted_to_bytes(all: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sketch_len(all.len()));
    write_sorted(all, &mut out);
    out
}

/// Appends the binary form of the sketch of sorted, distinct unit hashes to `out`.
fn write_sorted(all: &[u64], out: &mut Vec<u8>) {
    out.extend_from_slice(&(all.len() as u64).to_le_bytes());
    if all.len() <= AUDITED_UNITS {
        out.push(MEMBERS_TAG);
        for m in all {
            out.extend_from_slice(&m.to_le_bytes());
        }
    } else {
        out.push(TABLE_TAG);
        for cell in table_of(all.iter().copied()).iter() {
            out.extend_from_slice(&cell.count.to_le_bytes());
            out.extend_from_slice(&cell.keys.to_le_bytes());
            out.extend_from_slice(&cell.checks.to_le_bytes());
        }
        for b in all.iter().take(BOTTOM) {
            out.extend_from_slice(&b.to_le_bytes());
        }
    }
}

fn toggle(cells: &mut [Cell; CELLS], key: u64, count: i64) {
    let check = check_of(key);
    for partition in 0..HASHES {
        let cell = &mut cells[cell_of(key, partition)];
        cell.count += count;
        cell.keys ^= key;
        cell.checks ^= check;
    }
}

fn table_of(keys: impl IntoIterator<Item = u64>) -> Box<[Cell; CELLS]> {
    let mut cells = Box::new([Cell::default(); CELLS]);
    for key in keys {
        toggle(&mut cells, key, 1);
    }
    cells
}

/// |a Δ b| of two sorted, distinct lists of little-endian words, counted up to `limit`
/// (the count stops there once reached).
fn symmetric_difference(a: &[u8], b: &[u8], limit: usize) -> usize {
    let (mut a, mut b) = (words(a).peekable(), words(b).peekable());
    let mut d = 0;
    while let (Some(&x), Some(&y)) = (a.peek(), b.peek()) {
        if x == y {
            a.next();
            b.next();
            continue;
        }
        d += 1;
        if d >= limit {
            return d;
        }
        if x < y {
            a.next();
        } else {
            b.next();
        }
    }
    d + a.count() + b.count()
}

/// The `unit_sketch` aggregate, keyed per tenant.
pub(crate) struct UnitSketchUdaf {
    signature: Signature,
    key: [u8; 16],
    /// Whether its argument holds the units' keyed hashes already ([`UnitHashUdf`]), not
    /// the units.
    hashed: bool,
}

impl std::fmt::Debug for UnitSketchUdaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitSketchUdaf").finish_non_exhaustive()
    }
}

impl PartialEq for UnitSketchUdaf {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.hashed == other.hashed
    }
}
impl Eq for UnitSketchUdaf {}
impl Hash for UnitSketchUdaf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.hashed.hash(state);
    }
}

/// Name of the sketch aggregate in plans.
pub(crate) const UNIT_SKETCH: &str = "__shuyu_unit_sketch";

impl UnitSketchUdaf {
    /// The aggregate, its hashes keyed by a key derived from the tenant's pseudonym key (so
    /// sketches of one tenant's releases compare, and no one else's).
    pub(crate) fn udaf(pseudonym_key: &SecretKey) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(UnitSketchUdaf {
            signature: Signature::any(1, Volatility::Immutable),
            key: sketch_key(pseudonym_key),
            hashed: false,
        }))
    }
}

/// The key of a tenant's unit hashes, derived from its pseudonym key.
fn sketch_key(pseudonym_key: &SecretKey) -> [u8; 16] {
    let derived = pseudonym_key.hmac_sha256(b"shuyu unit sketch v1");
    let mut key = [0u8; 16];
    key.copy_from_slice(&derived[..16]);
    key
}

/// Name of the unit-hash function in plans.
pub(crate) const UNIT_HASH: &str = "__shuyu_unit_hash";
/// Name of the sketch aggregate over unit hashes in plans.
pub(crate) const UNIT_SKETCH_OF_HASHES: &str = "__shuyu_unit_sketch_hashed";

/// The sketch's functions in two steps, for plans that group by person before they group by
/// cell: `__shuyu_unit_hash(unit)` gives each unit's keyed hash (the very value the sketch
/// keeps, NULL for NULL), and `__shuyu_unit_sketch_hashed(hash)` builds the same sketch as
/// `unit_sketch(unit)` from those hashes. Grouping people by the 64-bit hash instead of the
/// identifier is cheaper and merges two people only where their sketch would anyway (a
/// collision: about n² / 2⁶⁵ for n people).
#[derive(Debug, Clone)]
pub(crate) struct UnitHashing {
    /// `__shuyu_unit_hash`.
    pub hash: Arc<ScalarUDF>,
    /// `__shuyu_unit_sketch_hashed`.
    pub sketch: Arc<AggregateUDF>,
}

impl UnitHashing {
    /// Both functions keyed like [`UnitSketchUdaf::udaf`] with the same key.
    pub(crate) fn new(pseudonym_key: &SecretKey) -> UnitHashing {
        let key = sketch_key(pseudonym_key);
        UnitHashing {
            hash: Arc::new(ScalarUDF::from(UnitHashUdf {
                signature: Signature::any(1, Volatility::Immutable),
                key,
            })),
            sketch: Arc::new(AggregateUDF::from(UnitSketchUdaf {
                signature: Signature::any(1, Volatility::Immutable),
                key,
                hashed: true,
            })),
        }
    }
}

/// `__shuyu_unit_hash(unit)`: the unit's keyed hash, as the sketch takes it.
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct UnitHashUdf {
    signature: Signature,
    key: [u8; 16],
}

impl std::fmt::Debug for UnitHashUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitHashUdf").finish_non_exhaustive()
    }
}

impl ScalarUDFImpl for UnitHashUdf {
    fn name(&self) -> &str {
        UNIT_HASH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        // A hash per valid value; a null stays null (the input's null buffer, reused).
        let mut hashes = vec![0u64; values.len()];
        hash_values(&self.key, &values, false, |i, h| hashes[i] = h)?;
        Ok(ColumnarValue::Array(
            Arc::new(UInt64Array::new(hashes.into(), values.logical_nulls())) as ArrayRef,
        ))
    }
}

impl AggregateUDFImpl for UnitSketchUdaf {
    fn name(&self) -> &str {
        if self.hashed {
            UNIT_SKETCH_OF_HASHES
        } else {
            UNIT_SKETCH
        }
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
            hashed: self.hashed,
            hashes: HashSet::new(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SketchGroups {
            key: self.key,
            hashed: self.hashed,
            groups: Vec::new(),
            bytes: 0,
        }))
    }
}

/// Keyed SipHash-1-3 of every non-null unit value, in one text form for every unit type (an
/// identifier stored as text or as a number hashes alike).
/// With `hashed`, `values` are such hashes already ([`UnitHashUdf`]) and pass as they are.
fn hash_values(
    key: &[u8; 16],
    values: &ArrayRef,
    hashed: bool,
    mut each: impl FnMut(usize, u64),
) -> DfResult<()> {
    let hash = |v: &[u8]| {
        let mut hasher = SipHasher13::new_with_key(key);
        hasher.write(v);
        hasher.finish()
    };
    if hashed {
        let hashes = values
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| DataFusionError::Internal("unit hashes are not UInt64".into()))?;
        for i in 0..hashes.len() {
            if hashes.is_valid(i) {
                each(i, hashes.value(i));
            }
        }
        return Ok(());
    }
    match values.data_type() {
        DataType::Utf8View => {
            let text = values.as_string_view();
            for i in 0..text.len() {
                if text.is_valid(i) {
                    each(i, hash(text.value(i).as_bytes()));
                }
            }
        }
        DataType::Utf8 => {
            let text = values.as_string::<i32>();
            for i in 0..text.len() {
                if text.is_valid(i) {
                    each(i, hash(text.value(i).as_bytes()));
                }
            }
        }
        _ => {
            let text = arrow::compute::cast(values, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            for i in 0..text.len() {
                if text.is_valid(i) {
                    each(i, hash(text.value(i).as_bytes()));
                }
            }
        }
    }
    Ok(())
}

/// The vectorised form of the sketch aggregate: each group's unit hashes in a vector,
/// deduplicated when it doubles and when the group is emitted.
struct SketchGroups {
    key: [u8; 16],
    hashed: bool,
    groups: Vec<Vec<u64>>,
    bytes: usize,
}

impl SketchGroups {
    /// Adds a unit's hash to a group. Over units, a group's hashes are deduplicated each
    /// time its vector would grow, so that it holds about its people, not its rows. Over
    /// hashes ([`UnitHashing`]) the input is one row per (cell, person) already, so that
    /// would sort for nothing: they are deduplicated once, when the sketch is built.
    fn push(&mut self, group: usize, hash: u64) {
        let hashes = &mut self.groups[group];
        if !self.hashed && hashes.len() == hashes.capacity() && hashes.len() >= 64 {
            let before = hashes.len();
            hashes.sort_unstable();
            hashes.dedup();
            self.bytes -= (before - hashes.len()) * 8;
        }
        hashes.push(hash);
        self.bytes += 8;
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<Vec<u64>> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.bytes = self.groups.iter().map(|g| g.len() * 8).sum();
        taken
    }
}

impl GroupsAccumulator for SketchGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let (key, hashed) = (self.key, self.hashed);
        hash_values(&key, &values[0], hashed, |i, h| {
            if opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) {
                self.push(group_indices[i], h);
            }
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let taken = self.take(emit_to);
        // One buffer for every sketch, sized up front (no per-group vector, no regrowth).
        let bytes: usize = taken.iter().map(|h| sketch_len(h.len())).sum();
        let mut values = Vec::with_capacity(bytes);
        let mut offsets = Vec::with_capacity(taken.len() + 1);
        offsets.push(0i32);
        for mut hashes in taken {
            hashes.sort_unstable();
            hashes.dedup();
            write_sorted(&hashes, &mut values);
            offsets.push(offset(values.len())?);
        }
        Ok(Arc::new(binary_array(offsets, values)))
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let taken = self.take(emit_to);
        let bytes: usize = taken.iter().map(|h| h.len() * 8).sum();
        let mut values = Vec::with_capacity(bytes);
        let mut offsets = Vec::with_capacity(taken.len() + 1);
        offsets.push(0i32);
        for hashes in taken {
            for h in hashes {
                values.extend_from_slice(&h.to_le_bytes());
            }
            offsets.push(offset(values.len())?);
        }
        Ok(vec![Arc::new(binary_array(offsets, values))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let states = values[0].as_binary::<i32>();
        for (i, &group) in group_indices.iter().enumerate() {
            if states.is_valid(i) {
                let state = states.value(i);
                if self.hashed {
                    // One row per (cell, person) upstream: nothing to deduplicate here.
                    self.groups[group].extend(words(state));
                    self.bytes += state.len() / 8 * 8;
                } else {
                    for h in words(state) {
                        self.push(group, h);
                    }
                }
            }
        }
        Ok(())
    }

    /// Each row as its own group's state: its one hash (nothing for nulls or filtered rows).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        let mut states: Vec<Vec<u8>> = vec![Vec::new(); values[0].len()];
        hash_values(&self.key, &values[0], self.hashed, |i, h| {
            if opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) {
                states[i] = h.to_le_bytes().to_vec();
            }
        })?;
        Ok(vec![Arc::new(BinaryArray::from_iter_values(states))])
    }

    fn size(&self) -> usize {
        self.bytes + self.groups.capacity() * std::mem::size_of::<Vec<u64>>()
    }
}

#[derive(Debug)]
struct SketchAccumulator {
    key: [u8; 16],
    hashed: bool,
    hashes: HashSet<u64>,
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        let key = self.key;
        let hashes = &mut self.hashes;
        hash_values(&key, values, self.hashed, |_, h| {
            hashes.insert(h);
        })
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Binary(Some(
            UnitSketch::from_hashes(&self.hashes).bytes,
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

/// Each value of a column of serialized sketches, borrowed in place (`None` for nulls); all
/// `None` for a column that is not binary. Results are written as `Binary` and read back as
/// `BinaryView`: neither is copied.
fn binary_values(column: &ArrayRef) -> Vec<Option<&[u8]>> {
    fn each<'a>(
        len: usize,
        valid: impl Fn(usize) -> bool,
        value: impl Fn(usize) -> &'a [u8],
    ) -> Vec<Option<&'a [u8]>> {
        (0..len).map(|i| valid(i).then(|| value(i))).collect()
    }
    match column.data_type() {
        DataType::BinaryView => {
            let a = column.as_binary_view();
            each(a.len(), |i| a.is_valid(i), |i| a.value(i))
        }
        DataType::Binary => {
            let a = column.as_binary::<i32>();
            each(a.len(), |i| a.is_valid(i), |i| a.value(i))
        }
        DataType::LargeBinary => {
            let a = column.as_binary::<i64>();
            each(a.len(), |i| a.is_valid(i), |i| a.value(i))
        }
        _ => vec![None; column.len()],
    }
}

/// The unit count of each serialized sketch of a column, without parsing the rest (0 for
/// nulls or malformed values).
pub(crate) fn unit_counts(column: &ArrayRef) -> Vec<i64> {
    binary_values(column)
        .into_iter()
        .map(|bytes| match bytes {
            Some(bytes) if bytes.len() >= 9 => {
                i64::try_from(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")))
                    .unwrap_or(0)
            }
            _ => 0,
        })
        .collect()
}

/// The name of the head column of a sketch column `field` (a cell's unit sketch or a branch
/// population's sketch), if it is one.
pub(crate) fn head_of(field: &Field) -> Option<String> {
    use crate::disclosure::{
        POPULATION_HEAD_PREFIX, POPULATION_PREFIX, UNIT_HEAD_PREFIX, UNITS_PREFIX,
    };
    if field.data_type() != &DataType::Binary {
        return None;
    }
    if let Some(k) = field.name().strip_prefix(UNITS_PREFIX) {
        return Some(format!("{UNIT_HEAD_PREFIX}{k}"));
    }
    field
        .name()
        .strip_prefix(POPULATION_PREFIX)
        .map(|m| format!("{POPULATION_HEAD_PREFIX}{m}"))
}

/// The schema of a result with a head column ([`sketch_head`]) after each sketch column.
pub(crate) fn schema_with_heads(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<FieldRef> = Vec::with_capacity(schema.fields().len() + 1);
    for field in schema.fields() {
        fields.push(Arc::clone(field));
        if let Some(head) = head_of(field) {
            fields.push(Arc::new(Field::new(head, DataType::Binary, true)));
        }
    }
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with the head of each of its sketches in the columns [`schema_with_heads`] adds.
pub(crate) fn with_heads(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    if schema.fields().len() == batch.num_columns() {
        return Ok(batch.clone());
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        columns.push(Arc::clone(column));
        if head_of(field).is_some() {
            let heads: BinaryArray = binary_values(column)
                .into_iter()
                .map(|bytes| bytes.and_then(sketch_head))
                .collect();
            columns.push(Arc::new(heads));
        }
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Unit sketches of a column of serialized sketches, borrowed in place (`None` for nulls or
/// malformed values).
pub(crate) fn sketch_refs(column: &ArrayRef) -> Vec<Option<SketchRef<'_>>> {
    binary_values(column)
        .into_iter()
        .map(|bytes| bytes.and_then(|b| SketchRef::parse(b, true)))
        .collect()
}

/// Unit sketches of a column of serialized sketches (`None` for nulls or malformed values).
pub(crate) fn sketches(column: &ArrayRef) -> Vec<Option<UnitSketch>> {
    binary_values(column)
        .into_iter()
        .map(|bytes| bytes.and_then(UnitSketch::from_bytes))
        .collect()
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
        // Populations above AUDITED_UNITS: compared through their tables.
        let mut failures = 0;
        let trials = 4_000u64;
        let size = AUDITED_UNITS as u64 + 200;
        for t in 0..trials {
            let d = 1 + (t % 9);
            let start = t * 10_000;
            let a = sketch(start..start + size);
            let b = sketch(start + d..start + size);
            match a.difference(&b) {
                Difference::Small(n) => assert_eq!(n as u64, d),
                Difference::Large => failures += 1,
                Difference::Identical => panic!("not identical"),
                Difference::Unknown => panic!("full sketches"),
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
            // The stronger form the differencing check uses: of their m = 2k − 1 smallest,
            // at least m − k + 1 are shared (or all but k − 1 of a smaller population).
            let m = 2 * k - 1;
            let (ma, mb) = (
                &sa.bottom()[..m.min(sa.bottom().len())],
                &sb.bottom()[..m.min(sb.bottom().len())],
            );
            let shared = ma.iter().filter(|h| mb.contains(h)).count();
            let need = (m + 1 - k)
                .min(ma.len().min(mb.len()).saturating_sub(k - 1))
                .max(1);
            assert!(shared >= need, "t={t}: {shared} shared, {need} needed");
        }
    }

    #[test]
    fn heads_stand_for_their_sketches_in_counts_bottoms_and_identity() {
        for set in [0..5u64, 0..400, 0..(AUDITED_UNITS as u64 + 50)] {
            let full = sketch(set.clone());
            let bytes = full.to_bytes();
            let head = sketch_head(&bytes).expect("a head");
            let view = SketchRef::parse(&head, true).expect("a valid head");
            assert!(view.is_head());
            assert_eq!(view.units(), full.units());
            assert_eq!(view.bottom().collect::<Vec<_>>(), full.bottom());
            assert_eq!(view.keeps_members(), full.view().keeps_members());
            assert_eq!(view.digest(), full.digest());
            assert_eq!(view.members(), None);
            // Not a sketch, and not a head of a head.
            assert_eq!(UnitSketch::from_bytes(&head), None);
            assert_eq!(sketch_head(&head), None);
            // Identity is known from heads; anything else needs the full sketches.
            assert_eq!(view.difference(&full.view(), 10), Difference::Identical);
            let other = sketch(set.start + 1..set.end + 1);
            let other_head = sketch_head(&other.to_bytes()).expect("a head");
            let other_view = SketchRef::parse(&other_head, true).expect("a head");
            // Two people differ: exact from the heads of whole small populations, unknown
            // from those of larger ones (the full sketches count it).
            let expected = if set.end <= BOTTOM as u64 {
                Difference::Small(2)
            } else {
                Difference::Unknown
            };
            assert_eq!(view.difference(&other.view(), 10), expected);
            assert_eq!(full.view().difference(&other_view, 10), expected);
            assert_eq!(
                full.view().difference(&other.view(), 10),
                Difference::Small(2)
            );
            assert_ne!(view.digest(), other_view.digest());
            {
                // A count that disagrees with the kept hashes is refused.
                let mut forged = head.clone();
                forged[..8].copy_from_slice(&(full.units() + 1).to_le_bytes());
                let forged_ok = SketchRef::parse(&forged, true).is_some();
                assert!(!forged_ok || full.units() >= BOTTOM as u64);
            }
        }
        // Much shorter than the sketch at 400 people (8 bytes a member).
        let big = sketch(0..400).to_bytes();
        assert!(sketch_head(&big).expect("a head").len() < big.len() / 5);
    }

    /// Two populations of 400 with the same smallest hashes, `d` people apart: `d / 2` of
    /// the first's other members (`d` ≤ 100) replaced by as many new people.
    fn apart(d: usize) -> (UnitSketch, UnitSketch) {
        let a: Vec<u64> = (0..400u64).map(|i| mix(i ^ 0xdead_beef)).collect();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        let above = sorted[BOTTOM - 1];
        let dropped =
            |i: usize| i >= BOTTOM && (i - BOTTOM).is_multiple_of(7) && (i - BOTTOM) / 7 < d / 2;
        let mut b: Vec<u64> = (0..400)
            .filter(|&i| !dropped(i))
            .map(|i| sorted[i])
            .collect();
        b.extend(
            (1_000u64..)
                .map(|i| mix(i ^ 0xdead_beef))
                .filter(|h| *h > above)
                .take(d / 2),
        );
        (UnitSketch::from_hashes(&a), UnitSketch::from_hashes(&b))
    }

    fn head(s: &UnitSketch) -> Vec<u8> {
        sketch_head(&s.to_bytes()).expect("a head")
    }

    /// Heads of populations that share their smallest hashes but differ by many people are
    /// told apart by their signatures; close ones still need the members.
    #[test]
    fn signatures_tell_heads_of_populations_far_apart() {
        let (a, b) = apart(60);
        assert_eq!(a.difference(&b), Difference::Small(60));
        let (ha, hb) = (head(&a), head(&b));
        let (va, vb) = (
            SketchRef::parse(&ha, true).expect("a head"),
            SketchRef::parse(&hb, true).expect("a head"),
        );
        assert_eq!(
            va.bottom_difference(&vb),
            (0, false),
            "the same smallest hashes"
        );
        assert_eq!(va.difference(&vb, 10), Difference::Large);
        // A head against a ledger's full sketch: its signature is computed from its members.
        assert_eq!(va.difference(&b.view(), 10), Difference::Large);
        assert_eq!(a.view().difference(&vb, 10), Difference::Large);
        // Not beyond what the signatures show.
        let shown = signature_difference(
            &va.signature().expect("signed"),
            &vb.signature().expect("signed"),
        );
        assert!((10..=60).contains(&shown), "{shown}");
        assert_eq!(va.difference(&vb, shown + 1), Difference::Unknown);
        // Four people apart: the members are needed.
        let (c, d) = apart(4);
        let (hc, hd) = (head(&c), head(&d));
        let (vc, vd) = (
            SketchRef::parse(&hc, true).expect("a head"),
            SketchRef::parse(&hd, true).expect("a head"),
        );
        assert_eq!(vc.difference(&vd, 10), Difference::Unknown);
        assert_eq!(c.view().difference(&d.view(), 10), Difference::Small(4));
        // Heads staged before signatures (tag 2, no signature) are still read, and settle
        // only what they did.
        let unsigned = |h: &[u8]| {
            let mut old = h[..8 + 2 + 16].to_vec();
            old[8] = HEAD_TAG;
            old.extend_from_slice(&h[8 + 2 + 16 + SIGNATURE..]);
            old
        };
        let (oa, ob) = (unsigned(&ha), unsigned(&hb));
        let (voa, vob) = (
            SketchRef::parse(&oa, true).expect("an old head"),
            SketchRef::parse(&ob, true).expect("an old head"),
        );
        assert_eq!(voa.units(), 400);
        assert_eq!(voa.digest(), va.digest());
        assert_eq!(voa.difference(&vob, 10), Difference::Unknown);
        assert_eq!(voa.difference(&vb, 10), Difference::Unknown);
        assert_eq!(voa.difference(&va, 10), Difference::Identical);
        // A signed head of a population that does not keep members, or cut short, is refused.
        let mut forged = ha.clone();
        forged[9] = 0;
        assert!(SketchRef::parse(&forged, true).is_none());
        assert!(SketchRef::parse(&ha[..8 + 2 + 16 + SIGNATURE - 1], true).is_none());
        // Large populations keep no members: their heads carry no signature.
        let large = sketch(0..AUDITED_UNITS as u64 + 1);
        let large_head = head(&large);
        assert_eq!(large_head[8], HEAD_TAG);
        let view = SketchRef::parse(&large_head, true).expect("a head");
        assert!(view.signature().is_none());
    }

    /// Heads never undercount a difference: what they prove (from their smallest hashes or
    /// their signatures) is a lower bound, exact when both hold their whole populations, and
    /// "unknown" otherwise.
    #[test]
    fn heads_bound_differences_from_below() {
        let mut state = 7u64;
        let mut next = move || {
            state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
            state
        };
        for _ in 0..2_000 {
            let size = 1 + (next() % 200);
            let base = next() % 1_000;
            let a: Vec<u64> = (base..base + size).collect();
            // b: a with some dropped and some added.
            let mut b: Vec<u64> = a.iter().copied().filter(|_| next() % 8 != 0).collect();
            b.extend((0..next() % 12).map(|i| 10_000 + base + i));
            let (sa, sb) = (sketch(a.iter().copied()), sketch(b.iter().copied()));
            let truth = match sa.difference(&sb) {
                Difference::Small(d) => d,
                Difference::Identical => 0,
                other => panic!("{other:?}"),
            };
            let ha = sketch_head(&sa.to_bytes()).expect("a head");
            let ha = SketchRef::parse(&ha, true).expect("a head");
            let hb = sketch_head(&sb.to_bytes()).expect("a head");
            let hb = SketchRef::parse(&hb, true).expect("a head");
            for limit in [1usize, 5, 10, 40] {
                for found in [ha.difference(&sb.view(), limit), ha.difference(&hb, limit)] {
                    match found {
                        Difference::Identical => assert_eq!(truth, 0),
                        Difference::Small(d) => assert_eq!(d, truth),
                        Difference::Large => assert!(truth >= limit, "{truth} < {limit}"),
                        Difference::Unknown => {}
                    }
                }
            }
        }
    }

    #[test]
    fn result_batches_gain_a_head_after_each_sketch_column() {
        let sketches: BinaryArray = [Some(sketch(0..3).to_bytes()), None].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("__shuyu_units_0", DataType::Binary, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![3, 0])),
                Arc::new(sketches),
            ],
        )
        .unwrap();
        let stored = schema_with_heads(&schema);
        let names: Vec<&str> = stored.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["n", "__shuyu_units_0", "__shuyu_unithead_0"]);
        let out = with_heads(&batch, &stored).unwrap();
        let heads = sketch_refs(out.column(2));
        assert_eq!(heads[0].map(|h| h.units()), Some(3));
        assert!(heads[0].is_some_and(|h| h.is_head()));
        assert_eq!(heads[1], None);
        // A result without sketches is written as it is.
        let plain = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        assert_eq!(schema_with_heads(&plain).fields().len(), 1);
    }

    #[test]
    fn bytes_round_trip() {
        let s = sketch(0..123);
        assert_eq!(s.members().map(|m| m.len()), Some(123));
        assert_eq!(UnitSketch::from_bytes(&s.to_bytes()), Some(s));
        let large = sketch(0..AUDITED_UNITS as u64 + 1);
        assert_eq!(large.members(), None);
        assert_eq!(large.bottom().len(), BOTTOM);
        assert!(large.bottom().windows(2).all(|w| w[0] < w[1]));
        assert_eq!(UnitSketch::from_bytes(&large.to_bytes()), Some(large));
        assert_eq!(UnitSketch::from_bytes(b"short"), None);
    }

    /// The binary form is what releases stored before the sketch was read in place: the
    /// count, a tag, then the members, or the table's cells and the smallest hashes.
    #[test]
    fn binary_form_is_unchanged() {
        let small = UnitSketch::from_hashes(&[30, 10, 20]);
        let mut expected = 3u64.to_le_bytes().to_vec();
        expected.push(0);
        for m in [10u64, 20, 30] {
            expected.extend_from_slice(&m.to_le_bytes());
        }
        assert_eq!(small.to_bytes(), expected);
        let hashes: Vec<u64> = (1..=AUDITED_UNITS as u64 + 1).map(mix).collect();
        let large = UnitSketch::from_hashes(&hashes);
        let mut sorted = hashes.clone();
        sorted.sort_unstable();
        let mut expected = (AUDITED_UNITS as u64 + 1).to_le_bytes().to_vec();
        expected.push(1);
        for cell in table_of(sorted.iter().copied()).iter() {
            for word in [cell.count as u64, cell.keys, cell.checks] {
                expected.extend_from_slice(&word.to_le_bytes());
            }
        }
        for b in &sorted[..BOTTOM] {
            expected.extend_from_slice(&b.to_le_bytes());
        }
        assert_eq!(large.to_bytes(), expected);
        // Unsorted or repeated members are refused.
        let mut unsorted = 2u64.to_le_bytes().to_vec();
        unsorted.push(0);
        unsorted.extend_from_slice(&20u64.to_le_bytes());
        unsorted.extend_from_slice(&10u64.to_le_bytes());
        assert_eq!(UnitSketch::from_bytes(&unsorted), None);
    }

    /// A bounded comparison stops counting at its limit and says so.
    #[test]
    fn bounded_differences_stop_at_the_limit() {
        let (a, b) = (sketch(0..500), sketch(3..600));
        assert_eq!(a.difference(&b), Difference::Small(103));
        assert_eq!(a.view().difference(&b.view(), 104), Difference::Small(103));
        assert_eq!(a.view().difference(&b.view(), 103), Difference::Large);
        assert_eq!(a.view().difference(&b.view(), 10), Difference::Large);
        assert_eq!(
            a.view().difference(&sketch(0..500).view(), 1),
            Difference::Identical
        );
    }

    /// The two-step form gives the very sketch `unit_sketch` gives, for text and numeric
    /// units, NULLs and repeated people included; and another key gives another sketch.
    #[tokio::test]
    async fn sketches_of_unit_hashes_equal_sketches_of_units() {
        use datafusion::prelude::SessionContext;
        let rows: Vec<String> = (0..3000)
            .map(|i| match i % 7 {
                0 => format!("({}, NULL, NULL)", i % 3),
                _ => format!("({}, 'p{}', {})", i % 3, i % 1200, i % 1200),
            })
            .collect();
        let sql = format!(
            "WITH t(g, p, n) AS (VALUES {}) SELECT g, {UNIT_SKETCH}(p), \
             {UNIT_SKETCH_OF_HASHES}({UNIT_HASH}(p)), {UNIT_SKETCH}(n), \
             {UNIT_SKETCH_OF_HASHES}({UNIT_HASH}(n)), count(DISTINCT {UNIT_HASH}(p)), \
             count(DISTINCT p) FROM t GROUP BY g ORDER BY g",
            rows.join(", ")
        );
        // Per group: the four sketches, the distinct hashes and the distinct people.
        let run = |key: SecretKey| {
            let sql = sql.clone();
            async move {
                let ctx = SessionContext::new();
                ctx.register_udaf(AggregateUDF::clone(&UnitSketchUdaf::udaf(&key)));
                let hashing = UnitHashing::new(&key);
                ctx.register_udf(ScalarUDF::clone(&hashing.hash));
                ctx.register_udaf(AggregateUDF::clone(&hashing.sketch));
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
                (0..batch.num_rows())
                    .map(|row| {
                        let sketch =
                            |c: usize| batch.column(c).as_binary::<i32>().value(row).to_vec();
                        let count = |c: usize| {
                            batch
                                .column(c)
                                .as_primitive::<arrow::datatypes::Int64Type>()
                                .value(row)
                        };
                        (
                            [sketch(1), sketch(2), sketch(3), sketch(4)],
                            count(5),
                            count(6),
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let one = run(SecretKey::generate()).await;
        let other = run(SecretKey::generate()).await;
        assert_eq!(one.len(), 3);
        for (row, ([text, text_hashed, number, number_hashed], hashes, people)) in
            one.iter().enumerate()
        {
            assert_eq!(text, text_hashed, "row {row}");
            assert_eq!(number, number_hashed, "row {row}");
            assert_eq!(
                UnitSketch::from_bytes(text).map(|s| s.units()),
                Some(400),
                "row {row}"
            );
            assert_eq!(hashes, people, "row {row}: one hash per person");
            assert_ne!(&other[row].0[1], text_hashed, "row {row}: another key");
        }
    }
}

/// `__shuyu_largest_<i>(value)`: the i-th largest value of a group (0 when it has fewer),
/// vectorised; the gate's dominance statistics use it instead of an ordered `nth_value`.
pub(crate) struct Largest {
    signature: Signature,
    rank: usize,
    name: String,
}

impl std::fmt::Debug for Largest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Largest").field("rank", &self.rank).finish()
    }
}

impl PartialEq for Largest {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}
impl Eq for Largest {}
impl Hash for Largest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank.hash(state);
    }
}

impl Largest {
    /// The aggregate giving the `rank`-th (1-based) largest value.
    pub(crate) fn udaf(rank: usize) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(Largest {
            signature: Signature::any(1, Volatility::Immutable),
            rank: rank.max(1),
            name: format!("__shuyu_largest_{rank}"),
        }))
    }
}

impl AggregateUDFImpl for Largest {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(
        &self,
        args: datafusion::logical_expr::function::StateFieldsArgs,
    ) -> DfResult<Vec<arrow::datatypes::FieldRef>> {
        Ok(vec![Arc::new(arrow::datatypes::Field::new(
            format!("{}_top", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let mut one = LargestGroups::new(self.rank);
        one.resize(1);
        Ok(Box::new(LargestOne(one)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(LargestGroups::new(self.rank)))
    }
}

/// The ungrouped form (an aggregate without GROUP BY): one group.
#[derive(Debug)]
struct LargestOne(LargestGroups);

impl std::fmt::Debug for LargestGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargestGroups")
            .field("rank", &self.rank)
            .field("groups", &self.lens.len())
            .finish()
    }
}

impl Accumulator for LargestOne {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let groups = vec![0; values[0].len()];
        self.0.update_batch(values, &groups, None, 1)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Float64(Some(self.0.ranked(0))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.rank * 8
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(
            self.0.top(0).iter().flat_map(|v| v.to_le_bytes()).collect(),
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let groups = vec![0; states[0].len()];
        self.0.merge_batch(states, &groups, 1)
    }
}

/// Each group's `rank` largest values, descending, in one flat vector: group `g` owns
/// `tops[g * rank..][..rank]`, of which `lens[g]` are in use (no allocation per group).
struct LargestGroups {
    rank: usize,
    tops: Vec<f64>,
    lens: Vec<u32>,
}

impl LargestGroups {
    fn new(rank: usize) -> LargestGroups {
        LargestGroups {
            rank,
            tops: Vec::new(),
            lens: Vec::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        if groups > self.lens.len() {
            self.tops.resize(groups * self.rank, 0.0);
            self.lens.resize(groups, 0);
        }
    }

    /// Group `g`'s values kept so far, descending.
    fn top(&self, g: usize) -> &[f64] {
        &self.tops[g * self.rank..][..self.lens[g] as usize]
    }

    /// Group `g`'s `rank`-th largest value, 0 when it has fewer.
    fn ranked(&self, g: usize) -> f64 {
        self.top(g).get(self.rank - 1).copied().unwrap_or(0.0)
    }

    fn offer(&mut self, group: usize, v: f64) {
        let rank = self.rank;
        let len = self.lens[group] as usize;
        let top = &mut self.tops[group * rank..][..rank];
        if len == rank && v <= top[rank - 1] {
            return;
        }
        // As an insert into the descending list, truncated to `rank`.
        let at = top[..len].partition_point(|&x| x >= v);
        let end = len.min(rank - 1);
        top.copy_within(at..end, at + 1);
        top[at] = v;
        if len < rank {
            self.lens[group] += 1;
        }
    }

    /// Removes the groups `emit_to` asks for, keeping the others (renumbered from 0).
    fn take(&mut self, emit_to: EmitTo) -> LargestGroups {
        let rank = self.rank;
        let (tops, lens) = match emit_to {
            EmitTo::All => (
                std::mem::take(&mut self.tops),
                std::mem::take(&mut self.lens),
            ),
            EmitTo::First(n) => {
                let rest_tops = self.tops.split_off(n * rank);
                let rest_lens = self.lens.split_off(n);
                (
                    std::mem::replace(&mut self.tops, rest_tops),
                    std::mem::replace(&mut self.lens, rest_lens),
                )
            }
        };
        LargestGroups { rank, tops, lens }
    }

    fn floats(values: &ArrayRef) -> DfResult<ArrayRef> {
        Ok(arrow::compute::cast(values, &DataType::Float64)?)
    }
}

impl GroupsAccumulator for LargestGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.resize(total_num_groups);
        let values = Self::floats(&values[0])?;
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        if values.null_count() == 0 && opt_filter.is_none() {
            for (&group, &v) in group_indices.iter().zip(values.values().iter()) {
                self.offer(group, v);
            }
            return Ok(());
        }
        for (i, &group) in group_indices.iter().enumerate() {
            if values.is_valid(i) && opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) {
                self.offer(group, values.value(i));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let taken = self.take(emit_to);
        Ok(Arc::new(arrow::array::Float64Array::from_iter_values(
            (0..taken.lens.len()).map(|g| taken.ranked(g)),
        )))
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let taken = self.take(emit_to);
        let n = taken.lens.len();
        let bytes: usize = taken.lens.iter().map(|&l| l as usize * 8).sum();
        let mut states = arrow::array::BinaryBuilder::with_capacity(n, bytes);
        let mut word = Vec::with_capacity(taken.rank * 8);
        for g in 0..n {
            word.clear();
            for v in taken.top(g) {
                word.extend_from_slice(&v.to_le_bytes());
            }
            states.append_value(&word);
        }
        Ok(vec![Arc::new(states.finish())])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.resize(total_num_groups);
        let states = values[0].as_binary::<i32>();
        for (i, &group) in group_indices.iter().enumerate() {
            if states.is_valid(i) {
                for chunk in states.value(i).chunks_exact(8) {
                    self.offer(
                        group,
                        f64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                    );
                }
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        let values = Self::floats(&values[0])?;
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        let mut states = arrow::array::BinaryBuilder::with_capacity(values.len(), values.len() * 8);
        for i in 0..values.len() {
            if values.is_valid(i) && opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) {
                states.append_value(values.value(i).to_le_bytes());
            } else {
                states.append_value([]);
            }
        }
        Ok(vec![Arc::new(states.finish())])
    }

    fn size(&self) -> usize {
        self.tops.capacity() * 8 + self.lens.capacity() * 4
    }
}

#[cfg(test)]
mod largest_tests {
    use arrow::array::Float64Array;

    use super::*;

    /// The `rank`-th largest of each group, by sorting: what [`LargestGroups`] must give.
    fn expected(values: &[Option<f64>], groups: &[usize], n: usize, rank: usize) -> Vec<f64> {
        (0..n)
            .map(|g| {
                let mut mine: Vec<f64> = values
                    .iter()
                    .zip(groups)
                    .filter(|&(v, &gi)| gi == g && v.is_some())
                    .map(|(v, _)| v.expect("kept"))
                    .collect();
                mine.sort_by(|a, b| b.total_cmp(a));
                mine.get(rank - 1).copied().unwrap_or(0.0)
            })
            .collect()
    }

    fn floats(array: &ArrayRef) -> Vec<f64> {
        array.as_primitive::<Float64Type>().values().to_vec()
    }

    use arrow::datatypes::Float64Type;

    #[test]
    fn each_rank_of_each_group_matches_a_sort_through_partial_states() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let n_groups = 37;
        let values: Vec<Option<f64>> = (0..5_000)
            .map(|_| {
                let r = next();
                // Nulls, repeats and ties included.
                (r % 11 != 0).then_some((r % 300) as f64 - 20.0)
            })
            .collect();
        let groups: Vec<usize> = (0..values.len())
            .map(|_| (next() % n_groups as u64) as usize)
            .collect();
        let array: ArrayRef = Arc::new(Float64Array::from(values.clone()));
        for rank in 1..=3 {
            let want = expected(&values, &groups, n_groups, rank);
            // Directly.
            let mut direct = LargestGroups::new(rank);
            direct
                .update_batch(std::slice::from_ref(&array), &groups, None, n_groups)
                .unwrap();
            assert_eq!(floats(&direct.evaluate(EmitTo::All).unwrap()), want);
            // Through two partial states (split input), merged.
            let half = values.len() / 2;
            let mut merged = LargestGroups::new(rank);
            for (from, to) in [(0, half), (half, values.len())] {
                let mut partial = LargestGroups::new(rank);
                partial
                    .update_batch(
                        &[array.slice(from, to - from)],
                        &groups[from..to],
                        None,
                        n_groups,
                    )
                    .unwrap();
                let states = partial.state(EmitTo::All).unwrap();
                merged
                    .merge_batch(&states, &(0..n_groups).collect::<Vec<_>>(), n_groups)
                    .unwrap();
            }
            assert_eq!(floats(&merged.evaluate(EmitTo::All).unwrap()), want);
            // Every row as its own state (skipped partial aggregation), merged.
            let states = LargestGroups::new(rank)
                .convert_to_state(std::slice::from_ref(&array), None)
                .unwrap();
            let mut rows = LargestGroups::new(rank);
            rows.merge_batch(&states, &groups, n_groups).unwrap();
            // Emitted in two steps: the first 10 groups, then the rest renumbered.
            let first = floats(&rows.evaluate(EmitTo::First(10)).unwrap());
            let rest = floats(&rows.evaluate(EmitTo::All).unwrap());
            assert_eq!([first, rest].concat(), want, "rank {rank}");
        }
    }

    #[test]
    fn a_filter_and_an_empty_group_give_zero() {
        let array: ArrayRef = Arc::new(Float64Array::from(vec![5.0, 9.0, 7.0]));
        let filter = BooleanArray::from(vec![true, false, true]);
        let mut top = LargestGroups::new(2);
        top.update_batch(&[array], &[0, 0, 0], Some(&filter), 2)
            .unwrap();
        assert_eq!(floats(&top.evaluate(EmitTo::All).unwrap()), vec![5.0, 0.0]);
    }
}
