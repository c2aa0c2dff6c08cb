//! A job's memory pool: DataFusion's pools, with an overdraft for the batches in flight
//! between partitions.
//!
//! DataFusion 55's `RepartitionExec` writes a batch it cannot reserve memory for to a spill
//! pool, and its reader waits on the oldest file of that pool. When two input tasks spill to
//! one output at once, the pool holds two open files; the reader waits on the older while
//! the batch it needs is in the newer, the channels' gate closes, and every task waits:
//! the job neither finishes nor fails (apache/datafusion#24883, fixed after 55.2.0). A job
//! of ours hit it under a 48 MiB pool (a join's both sides, 300,000 rows each).
//!
//! So a repartition's in-flight batches are never refused while the pool is overdrawn by
//! less than half its size: they still count against the pool, so the operators that can
//! spill (sorts, aggregates, sort-merge joins) see less room and spill, while the batches
//! in flight reach their consumer instead of a spill file. Past the overdraft, the
//! repartition is refused (and spills) as before.

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The name DataFusion gives a repartition's reservations (`RepartitionExec[<partition>]`).
const REPARTITION_CONSUMER: &str = "RepartitionExec[";

/// `inner`, letting repartitions' reservations overdraw its limit by up to `overdraft` bytes.
#[derive(Debug)]
pub(crate) struct InFlightOverdraft<P> {
    inner: P,
    limit: usize,
    overdraft: usize,
}

impl<P: MemoryPool> InFlightOverdraft<P> {
    /// `inner` of `limit` bytes, repartitions overdrawing it by up to half of it.
    pub(crate) fn new(inner: P, limit: usize) -> InFlightOverdraft<P> {
        InFlightOverdraft {
            inner,
            limit,
            overdraft: limit / 2,
        }
    }
}

impl<P: MemoryPool> std::fmt::Display for InFlightOverdraft<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As the pool it wraps: the memory log reads "greedy(used: …)" or "fair(…)".
        std::fmt::Display::fmt(&self.inner, f)
    }
}

impl<P: MemoryPool> MemoryPool for InFlightOverdraft<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        match self.inner.try_grow(reservation, additional) {
            Ok(()) => Ok(()),
            Err(refused) => {
                let in_flight = reservation
                    .consumer()
                    .name()
                    .starts_with(REPARTITION_CONSUMER);
                let within = self
                    .inner
                    .reserved()
                    .checked_add(additional)
                    .is_some_and(|total| total <= self.limit.saturating_add(self.overdraft));
                if in_flight && within {
                    self.inner.grow(reservation, additional);
                    Ok(())
                } else {
                    Err(refused)
                }
            }
        }
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::execution::memory_pool::{FairSpillPool, GreedyMemoryPool};

    use super::*;

    const MIB: usize = 1 << 20;

    fn pools() -> Vec<Arc<dyn MemoryPool>> {
        vec![
            Arc::new(InFlightOverdraft::new(
                GreedyMemoryPool::new(100 * MIB),
                100 * MIB,
            )),
            Arc::new(InFlightOverdraft::new(
                FairSpillPool::new(100 * MIB),
                100 * MIB,
            )),
        ]
    }

    #[test]
    fn batches_in_flight_overdraw_the_pool_by_half_and_no_more() {
        for pool in pools() {
            let sort = MemoryConsumer::new("ExternalSorter[0]")
                .with_can_spill(true)
                .register(&pool);
            let repartition = MemoryConsumer::new("RepartitionExec[1]")
                .with_can_spill(true)
                .register(&pool);
            // Within a fair pool's share for each of two.
            sort.try_grow(45 * MIB).unwrap();
            // The repartition goes past its share and the limit, up to half the pool over.
            repartition.try_grow(55 * MIB).unwrap();
            repartition.try_grow(50 * MIB).unwrap();
            assert_eq!(pool.reserved(), 150 * MIB);
            assert!(repartition.try_grow(MIB).is_err(), "{}", pool.name());
            assert_eq!(repartition.size(), 105 * MIB);
            // A first-come pool holds the others to its limit, which the overdraft has used
            // up; a fair one to their share of it, as before.
            if pool.name() == "greedy" {
                assert!(sort.try_grow(MIB).is_err());
            } else {
                sort.try_grow(5 * MIB).unwrap();
                assert!(sort.try_grow(1).is_err());
                sort.shrink(5 * MIB);
            }
            // What the repartition hands on returns to the pool.
            repartition.shrink(105 * MIB);
            sort.free();
            assert_eq!(pool.reserved(), 0);
            sort.try_grow(45 * MIB).unwrap();
        }
    }

    #[test]
    fn other_operators_get_no_overdraft() {
        for pool in pools() {
            let join = MemoryConsumer::new("HashJoinInput[0]").register(&pool);
            join.try_grow(100 * MIB).unwrap();
            assert!(join.try_grow(1).is_err(), "{}", pool.name());
            // Not a repartition, though it starts alike.
            let named = MemoryConsumer::new("RepartitionExecutor").register(&pool);
            assert!(named.try_grow(1).is_err());
        }
    }
}
