//! The server's budget for handling staged results and packages: at most
//! `[exports] max_concurrent` requests at once (export requests, approving votes, reviews,
//! downloads, Flight fetches), each holding at most `max_request_mib` of a result. The work
//! that needs a whole result runs in worker processes; what remains here is bounded, so the
//! server's memory does not grow with the size of a result or the number of callers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ExportsConfig;
use crate::error::{Refusal, Result, ServerError};

/// Turns to handle results, and the cap of one.
#[derive(Debug)]
pub struct ResultBudget {
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    wait: Duration,
    max_request_bytes: usize,
}

impl ResultBudget {
    /// The budget `config` sets.
    pub fn new(config: &ExportsConfig) -> ResultBudget {
        ResultBudget {
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            max_concurrent: config.max_concurrent.max(1),
            wait: Duration::from_secs(config.wait_secs),
            max_request_bytes: config.max_request_bytes(),
        }
    }

    /// A turn for `what`, held until the permit is dropped (a download's stream holds it
    /// until it ends).
    ///
    /// # Errors
    /// [`ServerError::Busy`] (UNAVAILABLE) when no turn came within the wait.
    pub async fn turn(&self, what: &str) -> Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(ServerError::Busy(format!(
                "the server is handling {} exports, reviews and deliveries at once and {what} \
                 waited {} s for its turn: try again shortly",
                self.max_concurrent,
                self.wait.as_secs()
            ))),
        }
    }

    /// Most bytes of a result one request may hold.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// Refuses `what` of `bytes` bytes beyond the per-request cap.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED ([`Refusal::ResultTooLarge`]) naming the cap.
    pub fn check(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.max_request_bytes as u64 {
            return Err(Refusal::ResultTooLarge(format!(
                "{what} is {} MiB, more than the {} MiB the server holds for one request \
                 ([exports] max_request_mib)",
                bytes.div_ceil(1 << 20),
                self.max_request_bytes >> 20
            ))
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_run_out_and_come_back() {
        let budget = ResultBudget::new(&ExportsConfig {
            max_concurrent: 1,
            wait_secs: 0,
            ..ExportsConfig::default()
        });
        let held = budget.turn("a download").await.unwrap();
        let refused = budget.turn("a review").await.unwrap_err();
        assert_eq!(refused.into_status().code(), tonic::Code::Unavailable);
        drop(held);
        assert!(budget.turn("a review").await.is_ok());
        let too_big = budget.check(65 << 20, "the answer").unwrap_err();
        assert_eq!(too_big.into_status().code(), tonic::Code::ResourceExhausted);
        assert!(budget.check(64 << 20, "the answer").is_ok());
    }
}
