//! The outbox's writer: an append queues its event here and returns; one
//! thread writes what has queued up, in order, with one sync per batch (group
//! commit). No disk I/O runs on the async runtime, and a burst of events from
//! many cameras costs one fsync, not one each.
//!
//! Owns the queue and the thread: [`Outbox::start_writer`] starts it,
//! `Outbox::close` stops it after it wrote everything queued (a daemon killed
//! meanwhile loses what is queued: the few milliseconds of events one batch
//! takes). An append never waits: a disk so slow that [`MAX_QUEUED`] events
//! wait makes the oldest queued event go, counted as dropped (as a full
//! outbox does). Without the thread (before it starts, after it stops or
//! fails) an append is written at once.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::store::{Outbox, Pending};

/// Events waiting for the writer at most (then appends wait for room).
pub const MAX_QUEUED: usize = 4096;
/// Events written with one sync at most.
const MAX_BATCH: usize = 512;

#[derive(Default)]
struct State {
    events: VecDeque<Pending>,
    /// The cameras of the batch being written (taken from `events`, not yet
    /// in the index).
    writing: Vec<String>,
    /// The cameras of queued events dropped for room, to be counted.
    dropped: Vec<String>,
    /// The writer thread takes events (appends queue them).
    running: bool,
    /// The writer writes what is queued, then stops.
    stopping: bool,
    thread: Option<JoinHandle<()>>,
}

/// The events between the appends and the writer thread.
#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    /// Events came, room was made, or the writer is told to stop.
    changed: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("outbox queue poisoned")
    }

    /// Queues `event` for the writer; gives it back when no writer runs (the
    /// caller writes it). Never waits: a full queue lets its oldest go.
    pub(super) fn push(&self, event: Pending) -> Option<Pending> {
        let mut state = self.lock();
        if !state.running {
            return Some(event);
        }
        if state.events.len() >= MAX_QUEUED
            && let Some(oldest) = state.events.pop_front()
        {
            state.dropped.push(oldest.camera);
        }
        state.events.push_back(event);
        self.changed.notify_all();
        None
    }

    /// Whether events of `camera` are queued or being written (not yet in
    /// the index).
    pub(super) fn holds(&self, camera: &str) -> bool {
        let state = self.lock();
        state.writing.iter().any(|c| c == camera) || state.events.iter().any(|e| e.camera == camera)
    }

    /// The next batch, oldest first, and the cameras of events dropped for
    /// room; `None` once told to stop and empty (the writer is then no longer
    /// running: later appends write at once).
    fn take(&self) -> Option<(Vec<Pending>, Vec<String>)> {
        let mut state = self.lock();
        loop {
            if !state.events.is_empty() {
                let n = state.events.len().min(MAX_BATCH);
                let batch: Vec<Pending> = state.events.drain(..n).collect();
                state.writing = batch.iter().map(|e| e.camera.clone()).collect();
                let dropped = std::mem::take(&mut state.dropped);
                return Some((batch, dropped));
            }
            if state.stopping {
                state.running = false;
                return None;
            }
            state = self.changed.wait(state).expect("outbox queue poisoned");
        }
    }

    /// The batch taken last is in the index.
    fn written(&self) {
        self.lock().writing.clear();
    }

    /// The writer is gone (stopped, or failed): what is left is the caller's.
    fn stopped(&self) -> (Vec<Pending>, Vec<String>) {
        let mut state = self.lock();
        state.running = false;
        state.writing.clear();
        (
            state.events.drain(..).collect(),
            std::mem::take(&mut state.dropped),
        )
    }
}

/// Marks the writer stopped when its thread ends, however it ends.
struct Running<'a>(&'a Queue);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().running = false;
    }
}

impl Outbox {
    /// Starts the writer thread: from now on appends only queue their events.
    pub fn start_writer(self: &Arc<Self>) -> std::io::Result<()> {
        let mut state = self.queue().lock();
        if state.running {
            return Ok(());
        }
        let outbox = self.clone();
        let thread = std::thread::Builder::new()
            .name("orion-outbox".into())
            .spawn(move || {
                let _running = Running(outbox.queue());
                while let Some((batch, dropped)) = outbox.queue().take() {
                    let woken = outbox.write_batch(batch, &dropped);
                    outbox.queue().written();
                    for notify in woken {
                        notify.notify_one();
                    }
                }
            })?;
        state.running = true;
        state.stopping = false;
        state.thread = Some(thread);
        Ok(())
    }

    /// Lets the writer write what is queued, waits for it to stop, and writes
    /// what a failed writer left.
    pub(super) fn stop_writer(&self) {
        let thread = {
            let mut state = self.queue().lock();
            state.stopping = true;
            self.queue().changed.notify_all();
            state.thread.take()
        };
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("outbox writer failed; what it had queued is written now");
        }
        let (left, dropped) = self.queue().stopped();
        if !left.is_empty() || !dropped.is_empty() {
            for notify in self.write_batch(left, &dropped) {
                notify.notify_one();
            }
        }
    }
}
