//! The fair job queue: per-tenant FIFO queues, a per-tenant and a domain-wide cap on running
//! workers, and tenants served in turn (the least recently served tenant with a waiting job
//! goes first), so one tenant's burst cannot starve another. It also holds what the store
//! does not: live progress of running jobs and their cancel switches, and a feed of the
//! ids of jobs whose visible state changed ([`Scheduler::subscribe`]) for `WatchJob`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use shuyu_engine::JobProgress;
use shuyu_engine::worker::WorkerUsage;
use tokio::sync::{Notify, broadcast, watch};

/// Capacity of the change feed; a subscriber that falls further behind is told it lagged
/// and re-reads its job.
const CHANGE_FEED_CAPACITY: usize = 1024;

/// What a caller can see of a job that has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveState {
    /// Waiting; `position` 1 is next for its tenant.
    Queued {
        /// Position in the tenant's queue.
        position: usize,
    },
    /// A worker is being started.
    Starting,
    /// The worker reported this.
    Running {
        /// Engine progress.
        progress: JobProgress,
        /// Resource use so far.
        usage: WorkerUsage,
    },
}

/// A job handed to a runner.
#[derive(Debug)]
pub struct Dispatched {
    /// Job id.
    pub job_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Becomes `true` when the job is cancelled.
    pub cancel: watch::Receiver<bool>,
}

/// Why a job could not be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRefusal {
    /// The tenant has too many jobs queued or running.
    TenantFull {
        /// The cap.
        limit: usize,
    },
}

/// The outcome of a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was still queued and is removed: the caller records it as cancelled.
    FromQueue,
    /// Its worker is being stopped: the runner records it as cancelled.
    Running,
    /// The scheduler does not know it (finished, or never queued).
    Unknown,
}

#[derive(Debug, Default)]
struct Queues {
    waiting: BTreeMap<String, VecDeque<String>>,
    running_per_tenant: HashMap<String, usize>,
    running: usize,
    /// Dispatch counter value at each tenant's last dispatch (0: never served).
    served_at: HashMap<String, u64>,
    dispatches: u64,
    /// Running jobs: tenant, live state and cancel switch.
    live: HashMap<String, (String, LiveState, watch::Sender<bool>)>,
}

/// The job queue.
#[derive(Debug)]
pub struct Scheduler {
    queues: Mutex<Queues>,
    wake: Notify,
    changes: broadcast::Sender<Arc<str>>,
    max_running: usize,
    tenant_max_running: usize,
    tenant_max_queued: usize,
}

impl Scheduler {
    /// A scheduler with the given caps (each at least 1).
    pub fn new(max_running: usize, tenant_max_running: usize, tenant_max_queued: usize) -> Self {
        Scheduler {
            queues: Mutex::default(),
            wake: Notify::new(),
            changes: broadcast::channel(CHANGE_FEED_CAPACITY).0,
            max_running: max_running.max(1),
            tenant_max_running: tenant_max_running.max(1),
            tenant_max_queued: tenant_max_queued.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The feed of job ids whose visible state (queue position, live state, record) may have
    /// changed: enqueued, moved up the queue, dispatched, reporting progress, finished. A
    /// subscriber re-reads the jobs it follows when their id comes by.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }

    /// Announces that `job_id` changed, for changes made outside the scheduler (a record
    /// written after a cancel from the queue, for instance).
    pub fn changed(&self, job_id: &str) {
        // No subscriber is not an error.
        let _ = self.changes.send(Arc::from(job_id));
    }

    /// Whether `tenant_id` may queue another job.
    ///
    /// # Errors
    /// [`QueueRefusal::TenantFull`] when it has reached its cap.
    pub fn admit(&self, tenant_id: &str) -> Result<(), QueueRefusal> {
        let q = self.lock();
        let queued = q.waiting.get(tenant_id).map_or(0, VecDeque::len);
        let running = q.running_per_tenant.get(tenant_id).copied().unwrap_or(0);
        if queued + running >= self.tenant_max_queued {
            return Err(QueueRefusal::TenantFull {
                limit: self.tenant_max_queued,
            });
        }
        Ok(())
    }

    /// Appends a job to its tenant's queue.
    pub fn enqueue(&self, tenant_id: &str, job_id: &str) {
        self.lock()
            .waiting
            .entry(tenant_id.to_owned())
            .or_default()
            .push_back(job_id.to_owned());
        self.wake.notify_one();
        self.changed(job_id);
    }

    /// Takes the next job that may run now, if any.
    pub fn try_next(&self) -> Option<Dispatched> {
        let mut q = self.lock();
        if q.running >= self.max_running {
            return None;
        }
        let tenant = q
            .waiting
            .iter()
            .filter(|(tenant, jobs)| {
                !jobs.is_empty()
                    && q.running_per_tenant.get(*tenant).copied().unwrap_or(0)
                        < self.tenant_max_running
            })
            .min_by_key(|(tenant, _)| (q.served_at.get(*tenant).copied().unwrap_or(0), *tenant))
            .map(|(tenant, _)| tenant.clone())?;
        let job_id = q.waiting.get_mut(&tenant)?.pop_front()?;
        if q.waiting.get(&tenant).is_some_and(VecDeque::is_empty) {
            q.waiting.remove(&tenant);
        }
        // It starts; the ones behind it move up.
        self.changed(&job_id);
        for moved in q.waiting.get(&tenant).into_iter().flatten() {
            self.changed(moved);
        }
        q.dispatches += 1;
        let turn = q.dispatches;
        q.served_at.insert(tenant.clone(), turn);
        q.running += 1;
        *q.running_per_tenant.entry(tenant.clone()).or_default() += 1;
        let (tx, rx) = watch::channel(false);
        q.live
            .insert(job_id.clone(), (tenant.clone(), LiveState::Starting, tx));
        Some(Dispatched {
            job_id,
            tenant_id: tenant,
            cancel: rx,
        })
    }

    /// Waits until a job may run and takes it.
    ///
    /// # Cancel safety
    /// Cancel safe: a job is taken only when this returns.
    pub async fn next(&self) -> Dispatched {
        loop {
            let notified = self.wake.notified();
            if let Some(job) = self.try_next() {
                return job;
            }
            notified.await;
        }
    }

    /// Records a running job's progress.
    pub fn report(&self, job_id: &str, progress: JobProgress, usage: WorkerUsage) {
        if let Some(entry) = self.lock().live.get_mut(job_id) {
            entry.1 = LiveState::Running { progress, usage };
        }
        self.changed(job_id);
    }

    /// Releases a dispatched job's slot (when its runner is done, whatever the outcome).
    pub fn finished(&self, job_id: &str) {
        let mut q = self.lock();
        if let Some((tenant, _, _)) = q.live.remove(job_id) {
            q.running = q.running.saturating_sub(1);
            if let Some(n) = q.running_per_tenant.get_mut(&tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    q.running_per_tenant.remove(&tenant);
                }
            }
        }
        drop(q);
        self.wake.notify_one();
        self.changed(job_id);
    }

    /// Cancels a job of `tenant_id`.
    pub fn cancel(&self, tenant_id: &str, job_id: &str) -> Cancelled {
        let mut q = self.lock();
        if let Some(jobs) = q.waiting.get_mut(tenant_id)
            && let Some(index) = jobs.iter().position(|j| j == job_id)
        {
            jobs.remove(index);
            for moved in jobs.iter().skip(index) {
                self.changed(moved);
            }
            return Cancelled::FromQueue;
        }
        match q.live.get(job_id) {
            Some((tenant, _, switch)) if tenant == tenant_id => {
                let _ = switch.send(true);
                Cancelled::Running
            }
            _ => Cancelled::Unknown,
        }
    }

    /// Cancels every queued and running job of a tenant; returns the queued ones removed.
    pub fn cancel_tenant(&self, tenant_id: &str) -> Vec<String> {
        let mut q = self.lock();
        let removed: Vec<String> = q
            .waiting
            .remove(tenant_id)
            .map(Vec::from)
            .unwrap_or_default();
        for (tenant, _, switch) in q.live.values() {
            if tenant == tenant_id {
                let _ = switch.send(true);
            }
        }
        removed
    }

    /// The live state of a job the scheduler knows.
    pub fn live_state(&self, job_id: &str) -> Option<LiveState> {
        let q = self.lock();
        if let Some((_, state, _)) = q.live.get(job_id) {
            return Some(state.clone());
        }
        q.waiting.values().find_map(|jobs| {
            jobs.iter()
                .position(|j| j == job_id)
                .map(|i| LiveState::Queued { position: i + 1 })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &Scheduler) -> Vec<String> {
        std::iter::from_fn(|| s.try_next().map(|d| d.job_id)).collect()
    }

    #[test]
    fn tenants_are_served_in_turn_not_in_arrival_order() {
        let s = Scheduler::new(1, 1, 100);
        for i in 0..3 {
            s.enqueue("a", &format!("a{i}"));
        }
        s.enqueue("b", "b0");
        s.enqueue("c", "c0");
        let mut order = Vec::new();
        while let Some(d) = s.try_next() {
            order.push(d.job_id.clone());
            s.finished(&d.job_id);
        }
        assert_eq!(order, ["a0", "b0", "c0", "a1", "a2"]);
    }

    #[test]
    fn caps_hold_per_tenant_and_domain_wide() {
        let s = Scheduler::new(3, 2, 100);
        for i in 0..4 {
            s.enqueue("a", &format!("a{i}"));
        }
        s.enqueue("b", "b0");
        // a0, b0, a1: a is capped at 2, the domain at 3.
        assert_eq!(drain(&s), ["a0", "b0", "a1"]);
        s.finished("b0");
        // b has nothing left; a is still at its cap.
        assert!(s.try_next().is_none());
        s.finished("a0");
        assert_eq!(drain(&s), ["a2"]);
    }

    #[test]
    fn queue_positions_cancellation_and_admission() {
        let s = Scheduler::new(1, 1, 3);
        s.enqueue("a", "a0");
        s.enqueue("a", "a1");
        s.enqueue("a", "a2");
        assert_eq!(
            s.admit("a"),
            Err(QueueRefusal::TenantFull { limit: 3 }),
            "three jobs queued is the cap"
        );
        assert_eq!(s.admit("b"), Ok(()));
        assert_eq!(s.live_state("a2"), Some(LiveState::Queued { position: 3 }));
        let first = s.try_next().expect("a0 runs");
        assert_eq!(s.live_state("a0"), Some(LiveState::Starting));
        assert_eq!(s.live_state("a2"), Some(LiveState::Queued { position: 2 }));
        // Another tenant cannot cancel it; its own tenant can, from the queue or running.
        assert_eq!(s.cancel("b", "a1"), Cancelled::Unknown);
        assert_eq!(s.cancel("a", "a1"), Cancelled::FromQueue);
        assert_eq!(s.live_state("a1"), None);
        assert!(!*first.cancel.borrow());
        assert_eq!(s.cancel("b", "a0"), Cancelled::Unknown);
        assert_eq!(s.cancel("a", "a0"), Cancelled::Running);
        assert!(*first.cancel.borrow());
        s.finished("a0");
        assert_eq!(s.cancel("a", "a0"), Cancelled::Unknown);
        assert_eq!(drain(&s), ["a2"]);
    }

    #[test]
    fn cancelling_a_tenant_empties_its_queue_and_stops_its_workers() {
        let s = Scheduler::new(2, 1, 10);
        s.enqueue("a", "a0");
        s.enqueue("a", "a1");
        s.enqueue("b", "b0");
        let running = s.try_next().expect("a0");
        assert_eq!(running.job_id, "a0");
        assert_eq!(s.cancel_tenant("a"), ["a1"]);
        assert!(*running.cancel.borrow());
        assert_eq!(drain(&s), ["b0"]);
    }

    #[tokio::test]
    async fn next_waits_for_a_slot() {
        let s = std::sync::Arc::new(Scheduler::new(1, 1, 10));
        s.enqueue("a", "a0");
        s.enqueue("b", "b0");
        let first = s.next().await;
        let waiter = {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move { s.next().await.job_id })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.finished(&first.job_id);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("dispatched after the slot frees")
            .expect("task");
        assert_eq!(second, "b0");
    }

    #[test]
    fn the_change_feed_names_every_job_whose_view_moved() {
        let s = Scheduler::new(1, 1, 10);
        let mut feed = s.subscribe();
        let mut seen = || {
            std::iter::from_fn(|| feed.try_recv().ok())
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
        };
        s.enqueue("a", "a0");
        s.enqueue("a", "a1");
        s.enqueue("a", "a2");
        s.enqueue("b", "b0");
        assert_eq!(seen(), ["a0", "a1", "a2", "b0"]);
        // a0 starts and a1, a2 move up; b0's position is unchanged.
        let a0 = s.try_next().expect("a0");
        assert_eq!(seen(), ["a0", "a1", "a2"]);
        let progress = JobProgress {
            stage: shuyu_engine::JobStage::Running,
            rows: 0,
            bytes_scanned: 0,
        };
        s.report(&a0.job_id, progress, WorkerUsage::default());
        assert_eq!(seen(), ["a0"]);
        // Cancelling a1 from the queue moves a2; a1's own record is the service's to announce.
        assert_eq!(s.cancel("a", "a1"), Cancelled::FromQueue);
        assert_eq!(seen(), ["a2"]);
        s.finished("a0");
        assert_eq!(seen(), ["a0"]);
        s.changed("a1");
        assert_eq!(seen(), ["a1"]);
    }
}
