//! Linear-reconstruction audit: which people's values become exactly computable from a
//! family of released sums (or counts) over overlapping populations.
//!
//! Every aggregate cell is, for an attacker, a linear equation `Σ_{u ∈ S} x_u = value` over
//! the values `x_u` of the people in its population `S`. Person `u`'s value can be solved
//! for exactly when the unit vector `e_u` lies in the row space of the populations'
//! incidence matrix — whatever the values are. Pairwise differencing is the special case of
//! two rows; random overlapping subsets (Dinur & Nissim, 2003) need many rows, which only
//! this audit sees. Arithmetic is exact, modulo the prime 2^61 − 1.

use std::collections::{HashMap, HashSet};

const P: u64 = (1 << 61) - 1;

fn mul(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) % P as u128) as u64
}

fn sub(a: u64, b: u64) -> u64 {
    if a >= b { a - b } else { a + P - b }
}

fn inverse(a: u64) -> u64 {
    // Fermat: a^(P-2).
    let (mut base, mut exp, mut out) = (a, P - 2, 1u64);
    while exp > 0 {
        if exp & 1 == 1 {
            out = mul(out, base);
        }
        base = mul(base, base);
        exp >>= 1;
    }
    out
}

/// Most work (rows × columns × rank) one audit may do; larger families are not audited.
pub(crate) const MAX_WORK: u64 = 2_000_000_000;

/// The units whose values the populations determine, or `None` when the family is too
/// large to audit within [`MAX_WORK`].
pub(crate) fn determinable(populations: &[&[u64]]) -> Option<HashSet<u64>> {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut units = Vec::new();
    for population in populations {
        for &u in *population {
            index.entry(u).or_insert_with(|| {
                units.push(u);
                units.len() - 1
            });
        }
    }
    let (m, n) = (populations.len() as u64, units.len() as u64);
    if m.saturating_mul(n).saturating_mul(m.min(n)) > MAX_WORK {
        return None;
    }
    let n = units.len();
    let mut rows: Vec<Vec<u64>> = populations
        .iter()
        .map(|population| {
            let mut row = vec![0u64; n];
            for u in *population {
                row[index[u]] = 1;
            }
            row
        })
        .collect();
    // Reduced row echelon form.
    let mut pivots: Vec<(usize, usize)> = Vec::new(); // (row, column)
    let mut next = 0;
    for column in 0..n {
        let Some(found) = (next..rows.len()).find(|&r| rows[r][column] != 0) else {
            continue;
        };
        rows.swap(next, found);
        let scale = inverse(rows[next][column]);
        for v in rows[next].iter_mut() {
            *v = mul(*v, scale);
        }
        let pivot = rows[next].clone();
        for (r, row) in rows.iter_mut().enumerate() {
            if r != next && row[column] != 0 {
                let factor = row[column];
                for (v, p) in row.iter_mut().zip(&pivot) {
                    if *p != 0 {
                        *v = sub(*v, mul(factor, *p));
                    }
                }
            }
        }
        pivots.push((next, column));
        next += 1;
        if next == rows.len() {
            break;
        }
    }
    let pivot_columns: HashSet<usize> = pivots.iter().map(|&(_, c)| c).collect();
    // e_u is in the row space exactly when u is a pivot column whose row is zero on every
    // free column.
    Some(
        pivots
            .iter()
            .filter(|&&(r, _)| {
                rows[r]
                    .iter()
                    .enumerate()
                    .all(|(c, v)| *v == 0 || pivot_columns.contains(&c))
            })
            .map(|&(_, c)| units[c])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solve(sets: &[&[u64]]) -> HashSet<u64> {
        determinable(sets).expect("small")
    }

    #[test]
    fn differences_and_systems_determine_people() {
        let all: Vec<u64> = (1..=10).collect();
        let but_one: Vec<u64> = (2..=10).collect();
        assert_eq!(solve(&[&all, &but_one]), HashSet::from([1]));
        // Overlapping pairs: {1,2}, {2,3}, {1,3} solve all three.
        assert_eq!(
            solve(&[&[1, 2], &[2, 3], &[1, 3]]),
            HashSet::from([1, 2, 3])
        );
        // A chain {1,2}, {2,3} solves nobody.
        assert!(solve(&[&[1, 2], &[2, 3]]).is_empty());
        // Two disjoint halves and the whole: nobody.
        assert!(solve(&[&[1, 2, 3], &[4, 5, 6], &[1, 2, 3, 4, 5, 6]]).is_empty());
    }
}
