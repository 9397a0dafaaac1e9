//! A set of long-running tasks with one owner and one stop: [`Tasks::stop`]
//! waits for them until a deadline, then aborts those still running, so that
//! nothing a component started runs on after its stop, unowned.
//!
//! Owns the tasks' join tracking and abort handles; it never asks a task to
//! stop (the owner cancels its own token first) and never waits past the
//! limit it is given.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// Tasks spawned by one owner.
#[derive(Default)]
pub struct Tasks {
    tracker: TaskTracker,
    aborts: Mutex<Vec<AbortHandle>>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` on the runtime as one of these, in the current span (a
    /// camera's tasks log with its id).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.tracker.spawn(task.in_current_span());
        let mut aborts = self.aborts.lock().unwrap_or_else(PoisonError::into_inner);
        aborts.retain(|a| !a.is_finished());
        aborts.push(handle.abort_handle());
    }

    /// Waits at most `limit` for every task to end (the owner has told them
    /// to), then aborts those still running. True when all ended in time.
    pub async fn stop(&self, limit: Duration) -> bool {
        self.tracker.close();
        let ended = tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            let mut aborts = self.aborts.lock().unwrap_or_else(PoisonError::into_inner);
            aborts.drain(..).for_each(|a| a.abort());
        }
        ended
    }
}

/// Waits at most `limit` for one task (told to stop by its owner), then
/// aborts it. True when it ended in time.
pub async fn stop_one<T>(task: JoinHandle<T>, limit: Duration) -> bool {
    let abort = task.abort_handle();
    let ended = tokio::time::timeout(limit, task).await.is_ok();
    if !ended {
        abort.abort();
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio_util::sync::CancellationToken;

    /// Sets its flag when dropped: the task's future is gone (ended or aborted).
    struct Gone(Arc<AtomicBool>);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_end_in_time_are_stopped_and_one_that_does_not_is_aborted() {
        let cancel = CancellationToken::new();
        let tasks = Tasks::new();
        let polite = Arc::new(AtomicBool::new(false));
        let stubborn = Arc::new(AtomicBool::new(false));
        {
            let (cancel, gone) = (cancel.clone(), Gone(polite.clone()));
            tasks.spawn(async move {
                let _gone = gone;
                cancel.cancelled().await;
            });
        }
        cancel.cancel();
        assert!(tasks.stop(Duration::from_secs(1)).await, "ended when told");
        assert!(polite.load(Ordering::SeqCst));

        let tasks = Tasks::new();
        let gone = Gone(stubborn.clone());
        tasks.spawn(async move {
            let _gone = gone;
            std::future::pending::<()>().await;
        });
        let started = tokio::time::Instant::now();
        assert!(!tasks.stop(Duration::from_secs(5)).await, "late");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "waited its limit, no more"
        );
        tokio::task::yield_now().await;
        assert!(stubborn.load(Ordering::SeqCst), "aborted: nothing runs on");
    }

    #[tokio::test(start_paused = true)]
    async fn one_task_that_does_not_stop_is_aborted_at_its_limit() {
        let gone = Arc::new(AtomicBool::new(false));
        let flag = Gone(gone.clone());
        let task = tokio::spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        assert!(!stop_one(task, Duration::from_secs(2)).await);
        tokio::task::yield_now().await;
        assert!(gone.load(Ordering::SeqCst));
        assert!(stop_one(tokio::spawn(async {}), Duration::from_secs(2)).await);
    }
}
