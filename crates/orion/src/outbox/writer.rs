//! The outbox's write queue: an append queues its event here and returns; the
//! outbox's writer thread (`Outbox::start_writer`) takes what queued up and
//! writes it, in order, with one sync per batch (group commit). No disk I/O
//! runs on the async runtime, and a burst of events from many cameras costs
//! one fsync, not one each. Removals of delivered events wait for the writer
//! too ([`Queue::wake`]): a removal shares fjall's journal lock with the sync,
//! so a publisher on the runtime never makes one.
//!
//! Owns the queued events (each labelled with its camera) and the writer
//! thread's handle; knows nothing of the store. A push never waits: while
//! [`MAX_QUEUED`] events wait (a disk far too slow), the oldest queued event
//! goes and its camera is handed on to be counted as dropped. Without a
//! running writer a push gives the event back (the caller writes it).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Events waiting for the writer at most (then the oldest goes).
pub const MAX_QUEUED: usize = 4096;
/// Events written with one sync at most.
const MAX_BATCH: usize = 512;

struct State<T> {
    /// Queued events and their cameras, oldest first.
    events: VecDeque<(String, T)>,
    /// The cameras of the batch being written (taken, not yet in the index).
    writing: Vec<String>,
    /// The cameras of queued events dropped for room, to be counted.
    dropped: Vec<String>,
    /// The writer thread takes events (pushes queue them).
    running: bool,
    /// The writer writes what is queued, then stops.
    stopping: bool,
    /// Removals wait for the writer (it takes a batch, even an empty one).
    tidy: bool,
    thread: Option<JoinHandle<()>>,
}

/// The events between the appends and the writer thread.
pub struct Queue<T> {
    state: Mutex<State<T>>,
    /// Events came, or the writer is told to stop.
    changed: Condvar,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                events: VecDeque::new(),
                writing: Vec::new(),
                dropped: Vec::new(),
                running: false,
                stopping: false,
                tidy: false,
                thread: None,
            }),
            changed: Condvar::new(),
        }
    }
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().expect("outbox queue poisoned")
    }

    /// Queues `event` of `camera` for the writer; gives it back when no
    /// writer runs. Never waits: a full queue lets its oldest go.
    pub fn push(&self, camera: &str, event: T) -> Option<T> {
        let mut state = self.lock();
        if !state.running {
            return Some(event);
        }
        if state.events.len() >= MAX_QUEUED
            && let Some((oldest, _)) = state.events.pop_front()
        {
            state.dropped.push(oldest);
        }
        state.events.push_back((camera.to_string(), event));
        self.changed.notify_all();
        None
    }

    /// Wakes the writer for work other than events (removals to apply).
    /// Never waits.
    pub fn wake(&self) {
        let mut state = self.lock();
        if state.running {
            state.tidy = true;
            self.changed.notify_all();
        }
    }

    /// Whether events of `camera` are queued or being written.
    pub fn holds(&self, camera: &str) -> bool {
        let state = self.lock();
        state.writing.iter().any(|c| c == camera) || state.events.iter().any(|(c, _)| c == camera)
    }

    /// The writer thread runs from now on (pushes queue).
    pub fn started(&self, thread: JoinHandle<()>) {
        let mut state = self.lock();
        (state.running, state.stopping, state.thread) = (true, false, Some(thread));
    }

    pub fn running(&self) -> bool {
        self.lock().running
    }

    /// For the writer: the next batch, oldest first (empty when only woken),
    /// and the cameras of events dropped for room; `None` once told to stop
    /// and empty (the writer is then no longer running: later pushes are
    /// refused).
    pub fn take(&self) -> Option<(Vec<T>, Vec<String>)> {
        let mut state = self.lock();
        loop {
            if !state.events.is_empty() || state.tidy {
                state.tidy = false;
                let n = state.events.len().min(MAX_BATCH);
                let (cameras, batch): (Vec<String>, Vec<T>) = state.events.drain(..n).unzip();
                state.writing = cameras;
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

    /// For the writer: the batch taken last is in the index.
    pub fn written(&self) {
        self.lock().writing.clear();
    }

    /// Tells the writer to stop once the queue is empty; its thread, to join.
    pub fn stop(&self) -> Option<JoinHandle<()>> {
        let mut state = self.lock();
        state.stopping = true;
        self.changed.notify_all();
        state.thread.take()
    }

    /// The writer thread has ended (however it ended): pushes are refused.
    pub fn mark_stopped(&self) {
        self.lock().running = false;
    }

    /// The writer is gone (stopped, or failed): what is left is the caller's.
    pub fn stopped(&self) -> (Vec<T>, Vec<String>) {
        let mut state = self.lock();
        state.running = false;
        state.writing.clear();
        let events = state.events.drain(..).map(|(_, e)| e).collect();
        (events, std::mem::take(&mut state.dropped))
    }
}
