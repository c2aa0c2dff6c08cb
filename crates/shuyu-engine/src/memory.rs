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

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, SortMergeJoinExec};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

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

/// A physical optimizer rule for a job's sort-merge rerun: a sort-merge join one of whose
/// sides the planner's statistics put at `max_build_bytes` or less is planned as a hash
/// join again (its small side the build side: `JoinSelection`, which runs later, swaps the
/// inputs when the right is the smaller), so only the joins too large to hold are sorted
/// and spilled. Sorting the large side of a join with a 25-row nation table cost the rerun
/// a sort of tens of millions of rows. Where the statistics know no size, the join stays
/// sort-merge.
///
/// It must run first, before the rules that add each sort-merge join's sorts.
#[derive(Debug)]
pub(crate) struct SmallSidesHashJoined {
    pub(crate) max_build_bytes: usize,
}

impl SmallSidesHashJoined {
    /// Whether `side`'s statistics put it at `max_build_bytes` or less.
    fn small(&self, side: &Arc<dyn ExecutionPlan>) -> bool {
        let statistics = StatisticsContext::new().compute(side.as_ref(), &StatisticsArgs::new());
        statistics.is_ok_and(|statistics| {
            statistics
                .total_byte_size
                .get_value()
                .is_some_and(|&bytes| bytes <= self.max_build_bytes)
        })
    }
}

impl PhysicalOptimizerRule for SmallSidesHashJoined {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<SortMergeJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            let build_small = self.small(join.left())
                || (join.join_type().supports_swap() && self.small(join.right()));
            if !build_small {
                return Ok(Transformed::no(node));
            }
            let hash_join = HashJoinExec::try_new(
                Arc::clone(join.left()),
                Arc::clone(join.right()),
                join.on().to_vec(),
                join.filter().clone(),
                &join.join_type(),
                None,
                PartitionMode::Auto,
                join.null_equality(),
                false,
            )?;
            Ok(Transformed::yes(
                Arc::new(hash_join) as Arc<dyn ExecutionPlan>
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "shuyu_small_sides_hash_joined"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
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

    /// The physical plan of a join of a 100,000-row table with a 25-row one, sort-merge
    /// joins preferred, with `rule` run first; rendered.
    async fn planned(rule: SmallSidesHashJoined, small_on_the_left: bool) -> String {
        use datafusion::arrow::array::{Int64Array, RecordBatch};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::MemTable;
        use datafusion::execution::SessionStateBuilder;
        use datafusion::physical_plan::displayable;
        use datafusion::prelude::{SessionConfig, SessionContext};

        let table = |rows: i64| {
            let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|v| v % 25),
                ))],
            )
            .unwrap();
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
        };
        let mut config = SessionConfig::new().with_target_partitions(2);
        config.options_mut().optimizer.prefer_hash_join = false;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> = vec![Arc::new(rule)];
        rules.extend(state.physical_optimizers().iter().cloned());
        let state = SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_table("facts", table(100_000)).unwrap();
        ctx.register_table("nation", table(25)).unwrap();
        let sql = if small_on_the_left {
            "SELECT count(*) FROM nation n JOIN facts f ON n.k = f.k"
        } else {
            "SELECT count(*) FROM facts f JOIN nation n ON f.k = n.k"
        };
        let frame = ctx.sql(sql).await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        // The plan still answers: every fact matches one nation row.
        let counted = frame.collect().await.unwrap();
        assert_eq!(
            datafusion::arrow::util::display::array_value_to_string(counted[0].column(0), 0)
                .unwrap(),
            "100000"
        );
        displayable(plan.as_ref()).indent(true).to_string()
    }

    #[tokio::test]
    async fn a_join_with_a_small_side_stays_a_hash_join_in_the_rerun() {
        for small_on_the_left in [true, false] {
            let plan = planned(
                SmallSidesHashJoined {
                    max_build_bytes: MIB,
                },
                small_on_the_left,
            )
            .await;
            assert!(plan.contains("HashJoinExec"), "{plan}");
            assert!(!plan.contains("SortMergeJoin"), "{plan}");
            assert!(!plan.contains("SortExec"), "{plan}");
        }
        // Neither side small enough: sort-merge, as before.
        let plan = planned(SmallSidesHashJoined { max_build_bytes: 0 }, true).await;
        assert!(plan.contains("SortMergeJoin"), "{plan}");
        assert!(!plan.contains("HashJoinExec"), "{plan}");
    }
}
