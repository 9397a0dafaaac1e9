//! The outbox store: every camera's events on disk (`super::disk`), in the
//! order they happened, until the broker has acknowledged them.
//!
//! Owns the store and an index of what it holds (per camera: sequence number
//! and size, a few bytes per event; the events themselves stay on disk). It
//! enforces the bounds (`outbox.max_events`, `outbox.max_bytes`) by dropping
//! the oldest events, counted. When the disk refuses a write or a removal (full,
//! read-only) the store stops writing: new events are held in memory, at most
//! [`OUTBOX_MEMORY_EVENTS`] of them, events delivered meanwhile leave only the
//! index, and the camera's health says so. [`Outbox::heal`] (called every
//! [`HEAL_EVERY`] by [`keep_disk`], off the async runtime) checks whether the
//! disk has room again; once it does, it reopens the store (a failed write
//! leaves `fjall` refusing every later one), makes the disk hold exactly what
//! the index holds (removes what is on disk and no longer in the index: delivered
//! or dropped meanwhile; writes back what was held, in order) and resumes
//! writing. A store whose index was never read from it (it could not be opened
//! at start) is never healed: its events are not touched. It never fails an
//! append and never panics on what it reads back: an unreadable store is set
//! aside and a fresh one used.
//!
//! No global lock: each camera's index has its own, so one camera's publisher
//! never waits for another's, nor for the writer's sync (its removals are
//! queued for the writer: fjall's removal takes the journal lock a sync
//! holds; its reads take no journal lock). The locks, always
//! taken in this order and never two cameras' at once: `writing` (one batch at
//! a time), `healing`, `disk` (read for every read, insert and removal; write
//! only to close the store and put a reopened one in its place), one camera's
//! `entries`; the rest (the camera map, attachments, the disk error, the log
//! limits) are leaves, held for a copy or an update and nothing else.
//!
//! The sequence is daemon-wide and never reused while the store exists. A
//! clean close writes a marker (how many events, the last sequence); opening
//! without it, or with fewer events than it says, is reported.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, TryLockError};
use std::time::{Duration, Instant};

use fjall::PersistMode;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::disk::{
    Disk, DiskKeys, MAX_UNFLUSHED_BYTES, disk_keys, key, now_ms, open_disk, probe_room,
    set_aside_path, split_key,
};
use super::writer::Queue;
use crate::config::{OUTBOX_MEMORY_EVENTS, OutboxConfig};
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::status::OutboxStatus;

/// Longest one append waits for fjall's flushes.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// The clean-close marker's key in the `meta` keyspace.
const CLEAN_KEY: &[u8] = b"clean";
/// While the disk refuses writes, how often [`keep_disk`] checks for room.
pub const HEAL_EVERY: Duration = Duration::from_secs(1);
/// Room a heal asks for beyond the held events (journal and table overhead).
const HEAL_MARGIN_BYTES: u64 = 256 * 1024;

/// One event as stored: where it goes, what it says, when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub topic: String,
    /// Unix milliseconds when it was appended.
    pub produced_ms: u64,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// An event appended and not yet written.
struct Pending {
    camera: String,
    record: Record,
}

/// Marks the writer stopped when its thread ends, however it ends.
struct WriterStopped<'a>(&'a Queue<Pending>);

impl Drop for WriterStopped<'_> {
    fn drop(&mut self) {
        self.0.mark_stopped();
    }
}

/// What a clean close leaves for the next open to check.
#[derive(Debug, Serialize, Deserialize)]
struct CleanMarker {
    events: u64,
    last_seq: u64,
}

/// An event in the index.
#[derive(Debug)]
struct Entry {
    seq: u64,
    bytes: u64,
    /// Held here (not on disk) because the disk refused it.
    held: Option<Arc<Record>>,
}

/// A camera of this run: where its figures go.
struct Attached {
    metrics: Arc<Metrics>,
    status: watch::Sender<OutboxStatus>,
}

/// One camera's part of the outbox.
struct CameraQueue {
    /// Its events in sequence order.
    entries: Mutex<VecDeque<Entry>>,
    /// Present for the cameras of this run (absent: events of a camera no
    /// longer configured, kept until it comes back or the bounds drop them).
    attached: RwLock<Option<Attached>>,
    notify: Arc<Notify>,
}

impl CameraQueue {
    fn new(entries: VecDeque<Entry>) -> Self {
        Self {
            entries: Mutex::new(entries),
            attached: RwLock::new(None),
            notify: Arc::new(Notify::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with the camera's attachment, if it is attached.
    fn with_attached(&self, f: impl FnOnce(&Attached)) {
        if let Some(a) = &*self.attached.read().unwrap_or_else(PoisonError::into_inner) {
            f(a);
        }
    }

    fn update_gauge(&self, queued: usize) {
        self.with_attached(|a| a.metrics.outbox_queued.set(queued as f64));
    }

    fn count_dropped(&self, n: u64) {
        self.with_attached(|a| {
            a.metrics.outbox_dropped.add(n);
            a.status.send_modify(|s| s.dropped += n);
        });
    }
}

/// The whole outbox's figures, for the bounds.
#[derive(Default)]
struct Totals {
    count: AtomicU64,
    bytes: AtomicU64,
    /// Events held in memory (the disk refused them), and their bytes.
    held: AtomicU64,
    held_bytes: AtomicU64,
}

impl Totals {
    fn add(&self, bytes: u64, held: bool) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if held {
            self.held.fetch_add(1, Ordering::Relaxed);
            self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn sub(&self, bytes: u64, held: bool) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        if held {
            self.held.fetch_sub(1, Ordering::Relaxed);
            self.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    fn get(n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }
}

/// What opening found, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// A new, empty store.
    New,
    /// Closed cleanly last time, everything there.
    Clean,
    /// Not closed cleanly (killed, crashed, power cut, file cut short): the
    /// readable events are kept; a write cut short is discarded.
    Unclean,
    /// Closed cleanly, but fewer events are readable than it held.
    Damaged { expected: u64 },
    /// The store could not be opened: it was moved to this path and a fresh
    /// one started.
    SetAside(PathBuf),
    /// No store on disk at all (events in memory only).
    MemoryOnly,
}

/// The daemon's outbox. Cheap to share (`Arc`).
pub struct Outbox {
    cameras: RwLock<BTreeMap<String, Arc<CameraQueue>>>,
    /// The store; after a failed write it is kept for reading only, and
    /// `None` while it cannot be opened (or is being reopened).
    disk: RwLock<Option<Disk>>,
    /// Why the disk refused a write or a removal; while set, nothing is
    /// written (events are held) until [`Outbox::heal`] succeeds.
    disk_error: Mutex<Option<String>>,
    /// The index was read from the store: healing may make the disk hold
    /// what the index holds. False when the store could not be opened at
    /// start: its events were never read, so they are never touched (memory
    /// only until a restart).
    loaded: bool,
    totals: Totals,
    next_seq: AtomicU64,
    /// Events appended and not yet written, for the writer thread
    /// ([`Outbox::start_writer`]); without it appends are written at once.
    queue: Queue<Pending>,
    /// One batch written at a time (sequence numbers in order per camera).
    writing: Mutex<()>,
    /// One heal at a time (the keeper's, or the last one at close).
    healing: Mutex<()>,
    /// Keys of removed events still on disk: a publisher found the store's
    /// lock taken (a heal) and left the removal to the next batch or heal.
    removals: Mutex<Vec<Vec<u8>>>,
    full_log: Mutex<RateLimit>,
    disk_log: Mutex<RateLimit>,
    settings: OutboxConfig,
    /// What opening found.
    pub recovery: Recovery,
}

/// The index as read from the store at open.
#[derive(Default)]
struct Loaded {
    cameras: BTreeMap<String, VecDeque<Entry>>,
    totals: Totals,
    next_seq: u64,
    marker: Option<CleanMarker>,
    unreadable: u64,
    /// Reading stopped at an error: events after it may be on disk, unknown.
    cut_short: bool,
}

/// Reads the index from disk: every event's camera, sequence and size, and
/// the clean-close marker; removes the entries that cannot be read.
fn load(disk: &Disk) -> Loaded {
    let mut loaded = Loaded {
        next_seq: 1,
        ..Loaded::default()
    };
    let mut unreadable = Vec::new();
    for item in disk.events.iter() {
        let (k, v) = match item.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                tracing::error!(error = ?e, read = Totals::get(&loaded.totals.count), "outbox: reading the store stopped at an error; the events after it are not known to this run");
                loaded.cut_short = true;
                break;
            }
        };
        let Some((camera, seq)) = split_key(&k) else {
            unreadable.push(k.to_vec());
            continue;
        };
        if rmp_serde::from_slice::<Record>(&v).is_err() {
            unreadable.push(k.to_vec());
            continue;
        }
        let bytes = v.len() as u64;
        // Keys sort by camera, then sequence: each queue is in order.
        loaded
            .cameras
            .entry(camera.to_string())
            .or_default()
            .push_back(Entry {
                seq,
                bytes,
                held: None,
            });
        loaded.totals.add(bytes, false);
        loaded.next_seq = loaded.next_seq.max(seq + 1);
    }
    for k in &unreadable {
        let _ = disk.events.remove(k.as_slice());
    }
    loaded.unreadable = unreadable.len() as u64;
    loaded.marker = disk
        .meta
        .get(CLEAN_KEY)
        .ok()
        .flatten()
        .and_then(|v| rmp_serde::from_slice::<CleanMarker>(&v).ok());
    if let Some(m) = &loaded.marker {
        loaded.next_seq = loaded.next_seq.max(m.last_seq + 1);
    }
    if loaded.cut_short {
        // Unread events may hold any sequence so far: new ones start past
        // every sequence given until now (microseconds since 1970), so that
        // none is written over.
        loaded.next_seq = loaded.next_seq.max(now_ms().saturating_mul(1000));
    }
    loaded
}

/// Heals the outbox's store while the disk refuses writes (every
/// [`HEAL_EVERY`], off the async runtime), until `cancel`.
pub async fn keep_disk(outbox: Arc<Outbox>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HEAL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if outbox.failing() {
            let outbox = outbox.clone();
            let _ = tokio::task::spawn_blocking(move || outbox.heal()).await;
        }
    }
}

/// The store directory is used by another process.
#[derive(Debug, thiserror::Error)]
#[error(
    "outbox.path {0} is in use by another process (another oriond?); give each daemon its own directory"
)]
pub struct Locked(pub String);

/// Opens the store at `path`, or sets an unreadable one aside and starts a
/// new one: the store (None: memory only, and why), and what happened.
fn open_or_set_aside(path: &Path) -> Result<(Option<Disk>, Recovery, Option<String>), Locked> {
    if let Err(e) = std::fs::create_dir_all(path) {
        let why = format!("cannot create {}: {e}", path.display());
        return Ok((None, Recovery::MemoryOnly, Some(why)));
    }
    let e = match open_disk(path) {
        Ok(d) => return Ok((Some(d), Recovery::New, None)),
        Err(fjall::Error::Locked) => return Err(Locked(path.display().to_string())),
        Err(e) => e,
    };
    let aside = set_aside_path(path);
    tracing::error!(
        path = %path.display(),
        error = ?e,
        set_aside = %aside.display(),
        "outbox cannot be read; it is set aside (kept for inspection) and a new one started: its events will not be delivered"
    );
    let reopened = std::fs::rename(path, &aside)
        .map_err(|e| e.to_string())
        .and_then(|()| open_disk(path).map_err(|e| format!("{e:?}")));
    Ok(match reopened {
        Ok(d) => (Some(d), Recovery::SetAside(aside), None),
        Err(e) => {
            let why = format!("cannot open {}: {e}", path.display());
            (None, Recovery::MemoryOnly, Some(why))
        }
    })
}

/// Says what opening found.
fn log_recovery(recovery: &Recovery, path: &Path, waiting: u64) {
    match recovery {
        Recovery::Unclean => tracing::warn!(
            path = %path.display(),
            events = waiting,
            "outbox was not closed cleanly (daemon killed or crashed, power cut, or the file cut short): the readable events are kept and will be delivered; a write cut short is discarded"
        ),
        Recovery::Damaged { expected } => tracing::warn!(
            path = %path.display(),
            expected,
            found = waiting,
            "outbox is damaged: fewer events are readable than it held at the last clean stop; the readable ones are kept and will be delivered"
        ),
        _ if waiting > 0 => tracing::info!(
            events = waiting,
            "outbox: events from the previous run are waiting for the broker"
        ),
        _ => {}
    }
}

impl Outbox {
    /// Opens (or creates) the store at `settings.path` and reads its index.
    /// The only error is a store in use by another process; anything else is
    /// reported and worked around (set aside, or memory only).
    pub fn open(settings: &OutboxConfig) -> Result<Self, Locked> {
        let path = &settings.path;
        let existed = path.join("version").exists();
        let (disk, mut recovery, disk_error) = open_or_set_aside(path)?;
        if let Some(e) = &disk_error {
            tracing::error!("outbox: {e}; events are kept in memory only");
        }
        let mut index = Loaded {
            next_seq: 1,
            ..Loaded::default()
        };
        if let Some(disk) = &disk {
            index = load(disk);
            if recovery == Recovery::New && existed {
                let found = Totals::get(&index.totals.count);
                recovery = match &index.marker {
                    None => Recovery::Unclean,
                    Some(m) if m.events > found || index.cut_short => {
                        Recovery::Damaged { expected: m.events }
                    }
                    Some(_) => Recovery::Clean,
                };
            }
            if index.unreadable > 0 {
                tracing::warn!(
                    unreadable = index.unreadable,
                    "outbox: unreadable events removed"
                );
            }
            // From now on a missing marker means this run did not close.
            let removed = disk
                .meta
                .remove(CLEAN_KEY)
                .and_then(|()| disk.db.persist(PersistMode::SyncAll));
            if let Err(e) = removed {
                tracing::warn!(error = ?e, "outbox: cannot clear the clean-close marker");
            }
        }
        log_recovery(&recovery, path, Totals::get(&index.totals.count));
        let cameras = index
            .cameras
            .into_iter()
            .map(|(camera, entries)| (camera, Arc::new(CameraQueue::new(entries))))
            .collect();
        Ok(Self {
            cameras: RwLock::new(cameras),
            loaded: disk.is_some(),
            disk: RwLock::new(disk),
            disk_error: Mutex::new(disk_error),
            totals: index.totals,
            next_seq: AtomicU64::new(index.next_seq),
            queue: Queue::default(),
            writing: Mutex::new(()),
            healing: Mutex::new(()),
            removals: Mutex::new(Vec::new()),
            full_log: Mutex::new(RateLimit::new(Duration::from_secs(10))),
            disk_log: Mutex::new(RateLimit::new(Duration::from_secs(10))),
            settings: settings.clone(),
            recovery,
        })
    }

    fn disk(&self) -> RwLockReadGuard<'_, Option<Disk>> {
        self.disk.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store for a publisher's removal, which must not wait: `None` while
    /// the writer runs (the removal is queued for it: fjall's removal takes
    /// the journal lock the writer's sync holds) or a heal has the store.
    fn removal_disk(&self) -> Option<RwLockReadGuard<'_, Option<Disk>>> {
        if self.queue.running() {
            return None;
        }
        self.try_disk()
    }

    /// The store for a publisher on the async runtime: `None` rather than a
    /// wait while a heal has it.
    fn try_disk(&self) -> Option<RwLockReadGuard<'_, Option<Disk>>> {
        match self.disk.try_read() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn wake_all(&self) {
        for (_, q) in self.all_cameras() {
            q.notify.notify_one();
        }
    }

    fn camera(&self, camera: &str) -> Option<Arc<CameraQueue>> {
        let cameras = self.cameras.read().unwrap_or_else(PoisonError::into_inner);
        cameras.get(camera).cloned()
    }

    fn camera_or_new(&self, camera: &str) -> Arc<CameraQueue> {
        if let Some(q) = self.camera(camera) {
            return q;
        }
        let mut cameras = self.cameras.write().unwrap_or_else(PoisonError::into_inner);
        cameras
            .entry(camera.to_string())
            .or_insert_with(|| Arc::new(CameraQueue::new(VecDeque::new())))
            .clone()
    }

    fn all_cameras(&self) -> Vec<(String, Arc<CameraQueue>)> {
        let cameras = self.cameras.read().unwrap_or_else(PoisonError::into_inner);
        cameras
            .iter()
            .map(|(c, q)| (c.clone(), q.clone()))
            .collect()
    }

    fn disk_error(&self) -> Option<String> {
        self.disk_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts the writer thread: from now on appends only queue their events
    /// (`super::writer`).
    pub fn start_writer(self: &Arc<Self>) -> std::io::Result<()> {
        if self.queue.running() {
            return Ok(());
        }
        let outbox = self.clone();
        let thread = std::thread::Builder::new()
            .name("orion-outbox".into())
            .spawn(move || {
                // However the thread ends, appends then write at once.
                let _stopped = WriterStopped(&outbox.queue);
                while let Some((batch, dropped)) = outbox.queue.take() {
                    let cameras: Vec<String> = batch.iter().map(|p| p.camera.clone()).collect();
                    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        outbox.write_batch(batch, &dropped)
                    }));
                    outbox.queue.written();
                    match written {
                        Ok(woken) => woken.into_iter().for_each(|n| n.notify_one()),
                        // A bug: say so, count what is lost, and go on writing.
                        Err(_) => {
                            tracing::error!(
                                events = cameras.len(),
                                "outbox: writing a batch failed; its events are dropped"
                            );
                            for camera in cameras {
                                outbox.camera_or_new(&camera).count_dropped(1);
                            }
                        }
                    }
                }
            })?;
        self.queue.started(thread);
        Ok(())
    }

    /// Lets the writer write what is queued, waits for it to stop, and writes
    /// what a failed writer left.
    fn stop_writer(&self) {
        if let Some(thread) = self.queue.stop()
            && thread.join().is_err()
        {
            tracing::error!("outbox writer failed; what it had queued is written now");
        }
        let (left, dropped) = self.queue.stopped();
        if !left.is_empty() || !dropped.is_empty() {
            for notify in self.write_batch(left, &dropped) {
                notify.notify_one();
            }
        }
    }

    /// Registers a camera of this run: its metrics and status, and reports
    /// what is already waiting for it.
    pub fn attach(&self, camera: &str, metrics: Arc<Metrics>, status: watch::Sender<OutboxStatus>) {
        let q = self.camera_or_new(camera);
        let error = self.disk_error();
        status.send_modify(|s| s.disk_error = error);
        *q.attached.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Attached { metrics, status });
        let queued = q.entries().len();
        q.update_gauge(queued);
    }

    /// `camera` leaves this run (its events stay, kept like an orphan's until
    /// it comes back).
    pub fn detach(&self, camera: &str) {
        if let Some(q) = self.camera(camera) {
            *q.attached.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Reports `camera`'s current event flood (0: none) in its status.
    pub fn report_flood(&self, camera: &str, suppressed: u64) {
        if let Some(q) = self.camera(camera) {
            q.with_attached(|a| {
                a.status.send_if_modified(|s| {
                    std::mem::replace(&mut s.suppressed, suppressed) != suppressed
                });
            });
        }
    }

    /// Cameras with events waiting that are not attached (not in this run).
    pub fn orphans(&self) -> Vec<(String, usize)> {
        self.all_cameras()
            .into_iter()
            .filter(|(_, q)| {
                q.attached
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_none()
            })
            .map(|(c, q)| (c, q.entries().len()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Woken whenever an event is appended for `camera`.
    pub fn notifier(&self, camera: &str) -> Arc<Notify> {
        self.camera_or_new(camera).notify.clone()
    }

    /// Stores an event for `camera` (on disk, or in memory if the disk refuses
    /// it), drops the oldest events beyond the bounds, and wakes the camera's
    /// publisher. Never fails. With the writer running it only queues the
    /// event; without it the event is written and synced before this returns.
    pub fn append(&self, camera: &str, topic: String, payload: Vec<u8>) {
        let event = Pending {
            camera: camera.to_string(),
            record: Record {
                topic,
                produced_ms: now_ms(),
                payload,
            },
        };
        if let Some(event) = self.queue.push(camera, event) {
            for notify in self.write_batch(vec![event], &[]) {
                notify.notify_one();
            }
        }
    }

    /// Writes `batch` in order with one sync (group commit), then indexes it,
    /// drops the oldest events beyond the bounds and wakes the publishers.
    /// `dropped`: the cameras of queued events the writer's queue let go.
    /// Returns the publishers to wake (once the events are no longer counted
    /// as queued).
    #[must_use]
    fn write_batch(&self, batch: Vec<Pending>, dropped: &[String]) -> Vec<Arc<Notify>> {
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        if !dropped.is_empty() {
            tracing::error!(
                events = dropped.len(),
                "outbox: the disk is too slow for the events; the oldest queued ones were dropped"
            );
        }
        for camera in dropped {
            self.camera_or_new(camera).count_dropped(1);
        }
        // Held for the whole batch: a heal cannot come between an event's
        // write and its place in the index.
        let disk = self.disk();
        let mut written = Vec::with_capacity(batch.len());
        for Pending { camera, record } in batch {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            match rmp_serde::to_vec(&record) {
                Ok(encoded) => {
                    let bytes = encoded.len() as u64;
                    let on_disk = self.insert(&disk, &key(&camera, seq), encoded).is_ok();
                    written.push((camera, seq, bytes, on_disk, record));
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot encode an event; it is dropped");
                }
            }
        }
        self.apply_removals(&disk);
        let synced = written.is_empty() || self.persist(&disk).is_ok();
        let mut woken = Vec::new();
        for (camera, seq, bytes, on_disk, record) in written {
            // A batch whose sync failed is held in memory, all of it.
            let held = (!on_disk || !synced).then(|| Arc::new(record));
            self.totals.add(bytes, held.is_some());
            let q = self.camera_or_new(&camera);
            let queued = {
                let mut entries = q.entries();
                entries.push_back(Entry { seq, bytes, held });
                entries.len()
            };
            q.update_gauge(queued);
            woken.push(q.notify.clone());
        }
        self.enforce_bounds(&disk);
        drop(disk);
        self.wait_for_flushes();
        woken
    }

    /// Backpressure (only `writing` held: the writer waits, nobody else): while fjall holds more than
    /// [`MAX_UNFLUSHED_BYTES`] not yet written to table files, waits for its
    /// workers, at most [`FLUSH_WAIT`].
    fn wait_for_flushes(&self) {
        let until = Instant::now() + FLUSH_WAIT;
        let unflushed = || self.disk().as_ref().map_or(0, |d| d.db.write_buffer_size());
        while unflushed() > MAX_UNFLUSHED_BYTES && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Up to `max` of `camera`'s events after sequence `after` (all from the
    /// oldest with `None`), oldest first. Events that cannot be read back are
    /// removed and counted.
    pub fn next(&self, camera: &str, after: Option<u64>, max: usize) -> Vec<(u64, Arc<Record>)> {
        let Some(q) = self.camera(camera) else {
            return Vec::new();
        };
        let wanted: Vec<(u64, Option<Arc<Record>>)> = {
            let entries = q.entries();
            let start = after.map_or(0, |a| entries.partition_point(|e| e.seq <= a));
            entries
                .range(start..)
                .take(max)
                .map(|e| (e.seq, e.held.clone()))
                .collect()
        };
        // A heal has the store: woken when it is done.
        let Some(disk) = self.try_disk() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(wanted.len());
        let mut unreadable = Vec::new();
        for (seq, held) in wanted {
            let record = match (held, &*disk) {
                (Some(r), _) => Ok(Some(r)),
                // On a disk that is closed until it heals: wait for it (in
                // order), never drop it.
                (None, None) => break,
                (None, Some(d)) => read(d, camera, seq).map(|r| r.map(Arc::new)),
            };
            match record {
                Ok(Some(r)) => out.push((seq, r)),
                Ok(None) => unreadable.push(seq),
                // The disk failed to read it: in order, so stop here and
                // try again later.
                Err(e) => {
                    tracing::warn!(camera, seq, error = ?e, "outbox: cannot read an event now; tried again later");
                    break;
                }
            }
        }
        drop(disk);
        for seq in unreadable {
            tracing::warn!(
                camera,
                seq,
                "outbox: an event is missing or cannot be decoded; dropped"
            );
            self.drop_event(camera, seq);
        }
        out
    }

    /// Drops an event that can never be delivered (counted as dropped).
    pub fn drop_event(&self, camera: &str, seq: u64) {
        self.drop_one(self.removal_disk().as_deref(), camera, seq);
    }

    /// Removes an event the broker acknowledged. Once a camera's backlog is
    /// empty its "dropped" health reason clears.
    pub fn remove(&self, camera: &str, seq: u64) {
        let Some(left) = self.take(self.removal_disk().as_deref(), camera, seq) else {
            return;
        };
        if let Some(q) = self.camera(camera) {
            q.with_attached(|a| {
                a.metrics.outbox_delivered.inc();
                if left == 0 {
                    a.status
                        .send_if_modified(|s| std::mem::take(&mut s.dropped) > 0);
                }
            });
        }
    }

    /// Whether `camera` has events after sequence `after` (any with `None`).
    pub fn waiting_after(&self, camera: &str, after: Option<u64>) -> bool {
        // Queued for the writer: not in the index yet, but older than anything
        // that comes after.
        if self.queue.holds(camera) {
            return true;
        }
        self.camera(camera).is_some_and(|q| {
            q.entries()
                .back()
                .is_some_and(|e| after.is_none_or(|a| e.seq > a))
        })
    }

    /// Events waiting for `camera`.
    pub fn pending(&self, camera: &str) -> usize {
        self.camera(camera).map_or(0, |q| q.entries().len())
    }

    /// Whether the disk refuses writes (new events are held in memory until
    /// [`Outbox::heal`] succeeds).
    pub fn failing(&self) -> bool {
        self.loaded && self.disk_error().is_some()
    }

    /// While the disk refuses writes: if it has room for what is held (a
    /// probe file written and synced), reopens the store, makes the disk hold
    /// exactly what the index holds and resumes writing. True when the disk
    /// takes writes. Blocking disk I/O: call it off the async runtime.
    pub fn heal(&self) -> bool {
        let _one = self.healing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.disk_error().is_none() {
            return true;
        }
        if !self.loaded {
            return false;
        }
        // Without a lock held: appends go on (held), deliveries of what is on
        // disk wait, while the probe writes and the store is reopened (fjall
        // refuses every write after a failed one) and its keys read.
        let need = Totals::get(&self.totals.held_bytes) + HEAL_MARGIN_BYTES;
        let path = &self.settings.path;
        if probe_room(path, need).is_err() {
            return false;
        }
        let refusing = self
            .disk
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(refusing); // joins fjall's threads: not under a lock
        let reopened = std::fs::create_dir_all(path)
            .map_err(|e| e.to_string())
            .and_then(|()| open_disk(path).map_err(|e| format!("{e:?}")));
        let disk = match reopened {
            Ok(d) => d,
            Err(why) => {
                self.fail(why);
                // Publishers that found the store busy look again (held
                // events are readable without it).
                self.wake_all();
                return false;
            }
        };
        let on_disk = disk_keys(&disk);
        self.put_healed(disk, on_disk)
    }

    /// With the reopened store and the keys it holds: makes it hold what the
    /// index holds: events delivered or dropped while the disk was failing are
    /// removed, the held ones written, in order, and synced; only then are
    /// they let go of in memory. Events the index had on disk that the
    /// reopened store lacks are dropped, counted and logged.
    fn put_healed(&self, disk: Disk, on_disk: Result<DiskKeys, fjall::Error>) -> bool {
        let mut slot = self.disk.write().unwrap_or_else(PoisonError::into_inner);
        let result = on_disk.and_then(|on_disk| self.rewrite(&disk, on_disk));
        *slot = Some(disk);
        let cameras = self.all_cameras();
        // Publishers stopped at events on the closed disk: readable again.
        for (_, q) in &cameras {
            q.notify.notify_one();
        }
        let lost = match result {
            Ok(lost) => lost,
            Err(e) => {
                self.fail(format!("{e:?}"));
                return false;
            }
        };
        let written = self.totals.held.swap(0, Ordering::Relaxed);
        self.totals.held_bytes.store(0, Ordering::Relaxed);
        for (_, q) in &cameras {
            q.entries().iter_mut().for_each(|e| e.held = None);
        }
        self.drop_lost(&slot, lost);
        *self
            .disk_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.apply_removals(&slot);
        self.publish_disk_error(None);
        tracing::info!(
            written,
            "outbox: the disk takes events again; the events held in memory are on disk"
        );
        true
    }

    /// Removes from `disk` what the index does not hold, writes what is held,
    /// and syncs. Returns the index's on-disk events that `disk` lacks.
    fn rewrite(
        &self,
        disk: &Disk,
        mut on_disk: DiskKeys,
    ) -> Result<Vec<(String, u64)>, fjall::Error> {
        let mut lost = Vec::new();
        let mut held = Vec::new();
        for (camera, q) in self.all_cameras() {
            for e in q.entries().iter() {
                let k = key(&camera, e.seq);
                let was_there = on_disk.remove(&k);
                match &e.held {
                    Some(record) => held.push((e.seq, k, record.clone())),
                    None if !was_there => lost.push((camera.clone(), e.seq)),
                    None => {}
                }
            }
        }
        for k in on_disk {
            disk.events.remove(k)?;
        }
        held.sort_by_key(|(seq, ..)| *seq);
        for (_, k, record) in held {
            match rmp_serde::to_vec(&*record) {
                Ok(v) => disk.events.insert(k, v)?,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot encode a held event; it will be dropped as unreadable")
                }
            }
        }
        disk.db.persist(PersistMode::SyncAll)?;
        Ok(lost)
    }

    /// Drops events the reopened disk lacks (counted, logged).
    fn drop_lost(&self, disk: &Option<Disk>, lost: Vec<(String, u64)>) {
        if lost.is_empty() {
            return;
        }
        tracing::error!(
            events = lost.len(),
            "outbox: events the disk had taken are missing from it after it was reopened; they are dropped"
        );
        for (camera, seq) in lost {
            self.drop_one(Some(disk), &camera, seq);
        }
    }

    /// Events and bytes in the whole outbox.
    pub fn totals(&self) -> (u64, u64) {
        (
            Totals::get(&self.totals.count),
            Totals::get(&self.totals.bytes),
        )
    }

    /// Writes the clean-close marker and flushes everything to disk, after
    /// one more try to write back what is held in memory. What is still held
    /// then is lost (logged).
    pub fn close(&self) {
        self.stop_writer();
        if self.failing() {
            self.heal();
        }
        self.write_marker();
        // Closed now, not when the last holder of the outbox lets go: a new
        // outbox on the same directory can open at once (a full reload).
        let closing = self
            .disk
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(closing);
    }

    fn write_marker(&self) {
        let disk = self.disk();
        self.apply_removals(&disk);
        let held = Totals::get(&self.totals.held);
        if held > 0 {
            tracing::error!(
                events = held,
                "outbox: events held in memory (the disk refused them) are lost at this stop"
            );
        }
        let Some(disk) = &*disk else {
            return;
        };
        let marker = CleanMarker {
            events: Totals::get(&self.totals.count) - held,
            last_seq: self.next_seq.load(Ordering::Relaxed) - 1,
        };
        let written = rmp_serde::to_vec(&marker)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                disk.meta
                    .insert(CLEAN_KEY, m)
                    .and_then(|()| disk.db.persist(PersistMode::SyncAll))
                    .map_err(|e| format!("{e:?}"))
            });
        match written {
            Ok(()) => tracing::info!(waiting = marker.events, "outbox closed"),
            Err(e) => tracing::warn!(error = %e, "outbox: cannot write the clean-close marker"),
        }
    }

    /// Writes an event to disk (not yet synced: [`Outbox::persist`]); on
    /// failure records why (health) and logs. While the disk is failing
    /// nothing is written (held events would otherwise be overtaken on disk
    /// by newer ones): [`Outbox::heal`] first.
    fn insert(&self, disk: &Option<Disk>, key: &[u8], value: Vec<u8>) -> Result<(), ()> {
        if self.disk_error().is_some() {
            return Err(());
        }
        let Some(disk) = disk else {
            return Err(());
        };
        let result = disk.events.insert(key, value);
        result.map_err(|e| self.fail(format!("{e:?}")))
    }

    /// Makes what was inserted durable (synced with `fsync`, else handed to
    /// the OS).
    fn persist(&self, disk: &Option<Disk>) -> Result<(), ()> {
        if self.disk_error().is_some() {
            return Err(());
        }
        let Some(disk) = disk else {
            return Err(());
        };
        let mode = if self.settings.fsync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        let result = disk.db.persist(mode);
        result.map_err(|e| self.fail(format!("{e:?}")))
    }

    /// The disk refused a write or a removal: stop writing until it heals.
    fn fail(&self, why: String) {
        {
            let mut log = self.disk_log.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(held_back) = log.allow(Instant::now()) {
                tracing::error!(
                    error = %why,
                    "outbox cannot write to disk: new events are kept in memory (at most {OUTBOX_MEMORY_EVENTS}) and written to disk when it has room again; they are lost if the daemon stops before{}",
                    log.and_more(held_back)
                );
            }
        }
        let first = {
            let mut error = self
                .disk_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let first = error.is_none();
            if first {
                *error = Some(why.clone());
            }
            first
        };
        if first {
            self.publish_disk_error(Some(why));
        }
    }

    fn publish_disk_error(&self, error: Option<String>) {
        for (_, q) in self.all_cameras() {
            q.with_attached(|a| {
                a.status.send_if_modified(|s| {
                    let changed = s.disk_error != error;
                    s.disk_error = error.clone();
                    changed
                });
            });
        }
    }

    /// Drops an event (counted in the camera's dropped events).
    fn drop_one(&self, disk: Option<&Option<Disk>>, camera: &str, seq: u64) {
        if self.take(disk, camera, seq).is_some()
            && let Some(q) = self.camera(camera)
        {
            q.count_dropped(1);
        }
    }

    /// Removes an event from the index and the disk (`disk`: the store, its
    /// lock held; None: the removal waits in `removals` for the writer, or
    /// while no writer runs, for the next write or heal): how many of the
    /// camera's events are left, or None if it was not there.
    fn take(&self, disk: Option<&Option<Disk>>, camera: &str, seq: u64) -> Option<usize> {
        let q = self.camera(camera)?;
        let (e, left) = {
            let mut entries = q.entries();
            let at = entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
            let e = entries.remove(at)?;
            (e, entries.len())
        };
        q.update_gauge(left);
        self.totals.sub(e.bytes, e.held.is_some());
        if e.held.is_some() {
            return Some(left);
        }
        let Some(disk) = disk else {
            self.removals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(key(camera, seq));
            self.queue.wake();
            return Some(left);
        };
        // While failing the disk is left alone: healing removes what the
        // index no longer holds.
        if self.disk_error().is_none()
            && let Some(disk) = disk
            && let Err(err) = disk.events.remove(key(camera, seq))
        {
            self.fail(format!("{err:?}"));
        }
        Some(left)
    }

    /// Removes from disk the keys whose removal waited (kept while the disk
    /// is failing: the heal that follows removes them).
    fn apply_removals(&self, disk: &Option<Disk>) {
        let (Some(disk), None) = (disk, self.disk_error()) else {
            return;
        };
        let keys =
            std::mem::take(&mut *self.removals.lock().unwrap_or_else(PoisonError::into_inner));
        for k in keys {
            if let Err(err) = disk.events.remove(k) {
                self.fail(format!("{err:?}"));
                return;
            }
        }
    }

    /// The oldest event (of any camera; only those held in memory with
    /// `held_only`): its sequence and camera.
    fn oldest(&self, held_only: bool) -> Option<(u64, String)> {
        self.all_cameras()
            .into_iter()
            .filter_map(|(camera, q)| {
                let entries = q.entries();
                let first = entries.iter().find(|e| !held_only || e.held.is_some());
                first.map(|e| (e.seq, camera))
            })
            .min()
    }

    /// Drops the oldest events (of any camera) while the outbox is beyond its
    /// bounds, and the oldest held in memory beyond theirs.
    fn enforce_bounds(&self, disk: &Option<Disk>) {
        let settings = &self.settings;
        let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            let over = Totals::get(&self.totals.count) > settings.max_events
                || Totals::get(&self.totals.bytes) > settings.max_bytes;
            let held_over = Totals::get(&self.totals.held) > OUTBOX_MEMORY_EVENTS;
            if !over && !held_over {
                break;
            }
            let Some((seq, camera)) = self.oldest(held_over) else {
                break;
            };
            // None: its publisher removed it meanwhile; look again.
            if self.take(Some(disk), &camera, seq).is_some() {
                *dropped.entry(camera).or_default() += 1;
            }
        }
        for (camera, n) in dropped {
            if let Some(q) = self.camera(&camera) {
                q.count_dropped(n);
            }
            let mut log = self.full_log.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(held_back) = log.allow(Instant::now()) {
                tracing::warn!(
                    camera,
                    dropped = n,
                    max_events = settings.max_events,
                    max_bytes = settings.max_bytes,
                    "outbox full: the oldest events are dropped (counted in orion_outbox_dropped_total){}",
                    log.and_more(held_back)
                );
            }
        }
    }

    /// Events held in memory (for the tests).
    #[cfg(test)]
    fn held(&self) -> u64 {
        Totals::get(&self.totals.held)
    }
}

/// An event from disk: `Ok(None)` when it is not there or cannot be
/// decoded (it never will be), `Err` when the disk failed to read it (it may
/// later).
fn read(disk: &Disk, camera: &str, seq: u64) -> Result<Option<Record>, fjall::Error> {
    let Some(v) = disk.events.get(key(camera, seq))? else {
        return Ok(None);
    };
    Ok(rmp_serde::from_slice(&v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(path: &Path, max_events: u64) -> OutboxConfig {
        OutboxConfig {
            path: path.to_path_buf(),
            max_events,
            max_bytes: 64 * 1024 * 1024,
            fsync: false,
            ..OutboxConfig::default()
        }
    }

    fn attached(outbox: &Outbox, camera: &str) -> (Arc<Metrics>, watch::Receiver<OutboxStatus>) {
        let metrics = Arc::new(Metrics::for_camera(camera));
        let (tx, rx) = watch::channel(OutboxStatus::default());
        outbox.attach(camera, metrics.clone(), tx);
        (metrics, rx)
    }

    fn event(i: usize) -> Vec<u8> {
        format!("{{\"event_id\":\"e-{i}\",\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes()
    }

    fn ids(records: &[(u64, Arc<Record>)]) -> Vec<String> {
        records
            .iter()
            .map(|(_, r)| {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
                v["event_id"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    #[test]
    fn events_wait_in_order_per_camera_until_removed_and_survive_a_clean_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox");
        let outbox = Outbox::open(&settings(&path, 1000)).expect("open");
        assert_eq!(outbox.recovery, Recovery::New);
        let (m, _) = attached(&outbox, "a");
        for i in 0..5 {
            outbox.append("a", "care/events/a".into(), event(i));
            outbox.append("b", "care/events/b".into(), event(100 + i));
        }
        let a = outbox.next("a", None, 10);
        assert_eq!(ids(&a), ["e-0", "e-1", "e-2", "e-3", "e-4"]);
        assert_eq!(a[0].1.topic, "care/events/a");
        // After a cursor: only what follows it.
        assert_eq!(ids(&outbox.next("a", Some(a[1].0), 2)), ["e-2", "e-3"]);
        outbox.remove("a", a[0].0);
        outbox.remove("a", a[1].0);
        assert_eq!(m.outbox_delivered.get(), 2);
        assert_eq!(m.outbox_queued.get(), 3.0);
        outbox.close();
        drop(outbox);

        let outbox = Outbox::open(&settings(&path, 1000)).expect("reopen");
        assert_eq!(outbox.recovery, Recovery::Clean);
        assert_eq!(ids(&outbox.next("a", None, 10)), ["e-2", "e-3", "e-4"]);
        assert_eq!(outbox.next("b", None, 10).len(), 5);
        assert_eq!(
            outbox.orphans(),
            [("a".to_string(), 3), ("b".to_string(), 5)]
        );
        // New events come after the old ones.
        outbox.append("a", "care/events/a".into(), event(5));
        let all = outbox.next("a", None, 10);
        assert_eq!(ids(&all).last().map(String::as_str), Some("e-5"));
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// An outbox in `dir` with fsync on and its writer thread started.
    fn with_writer(dir: &Path) -> (OutboxConfig, Arc<Outbox>) {
        let mut s = settings(&dir.join("outbox"), 100_000);
        s.fsync = true;
        let outbox = Arc::new(Outbox::open(&s).expect("open"));
        outbox.start_writer().expect("writer");
        (s, outbox)
    }

    #[test]
    fn the_writer_keeps_each_cameras_order_and_close_writes_what_is_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, outbox) = with_writer(dir.path());
        let cameras = ["a", "b", "c", "d"];
        std::thread::scope(|scope| {
            for camera in cameras {
                let outbox = outbox.clone();
                scope.spawn(move || {
                    for i in 0..300 {
                        outbox.append(camera, format!("care/events/{camera}"), event(i));
                    }
                });
            }
        });
        // Queued, maybe not written yet: the close writes them all.
        outbox.close();
        let count = outbox.totals().0;
        assert_eq!(count, 1200, "every event written");
        drop(outbox);
        let reopened = Outbox::open(&s).expect("reopen");
        assert_eq!(reopened.recovery, Recovery::Clean);
        let expected: Vec<String> = (0..300).map(|i| format!("e-{i}")).collect();
        for camera in cameras {
            assert_eq!(
                ids(&reopened.next(camera, None, 1000)),
                expected,
                "{camera}"
            );
        }
    }

    /// While a heal has the store, a publisher's `next` and `remove` do not
    /// wait for it: `next` gives nothing for now, and the removal is done
    /// later: after a clean reopen the event is gone, and the others are there.
    #[test]
    fn a_publisher_never_waits_for_a_heal_and_its_removals_are_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox");
        let s = settings(&path, 1000);
        let outbox = Arc::new(Outbox::open(&s).expect("open"));
        for i in 0..3 {
            outbox.append("a", "t".into(), event(i));
        }
        let first = outbox.next("a", None, 1)[0].0;
        let heal = outbox.disk.write().expect("disk lock");
        let (done, finished) = std::sync::mpsc::channel();
        let publisher = {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                let got = outbox.next("a", None, 10).len();
                outbox.remove("a", first);
                let _ = done.send(got);
            })
        };
        let got = finished.recv_timeout(Duration::from_secs(10));
        assert_eq!(got, Ok(0), "nothing for now, and no wait");
        drop(heal);
        publisher.join().expect("publisher");
        assert_eq!(ids(&outbox.next("a", None, 10)), ["e-1", "e-2"]);
        outbox.append("a", "t".into(), event(3));
        outbox.close();
        drop(outbox);
        let reopened = Outbox::open(&s).expect("reopen");
        assert_eq!(ids(&reopened.next("a", None, 10)), ["e-1", "e-2", "e-3"]);
    }

    /// Each camera's publisher reads and removes while the writer writes
    /// every camera's events with a sync per batch: each gets its own events,
    /// all of them, in order, once; nothing is left behind, and the disk
    /// holds nothing after the last removal.
    #[test]
    fn publishers_deliver_while_the_writer_writes_each_camera_in_order_once() {
        const EVENTS: usize = 400;
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, outbox) = with_writer(dir.path());
        let cameras = ["a", "b", "c", "d"];
        let delivered: Vec<Vec<String>> = std::thread::scope(|scope| {
            for camera in cameras {
                let outbox = outbox.clone();
                scope.spawn(move || {
                    for i in 0..EVENTS {
                        outbox.append(camera, format!("care/events/{camera}"), event(i));
                    }
                });
            }
            let publishers: Vec<_> = cameras
                .iter()
                .map(|camera| {
                    let outbox = outbox.clone();
                    scope.spawn(move || {
                        let until = Instant::now() + Duration::from_secs(60);
                        let mut got = Vec::new();
                        while got.len() < EVENTS {
                            assert!(
                                Instant::now() < until,
                                "{camera}: {} of {EVENTS}",
                                got.len()
                            );
                            let batch = outbox.next(camera, None, 16);
                            if batch.is_empty() {
                                std::thread::yield_now();
                            }
                            for (seq, record) in &batch {
                                assert_eq!(record.topic, format!("care/events/{camera}"));
                                outbox.remove(camera, *seq);
                            }
                            got.extend(ids(&batch));
                        }
                        got
                    })
                })
                .collect();
            publishers
                .into_iter()
                .map(|p| p.join().expect("publisher"))
                .collect()
        });
        let expected: Vec<String> = (0..EVENTS).map(|i| format!("e-{i}")).collect();
        for (camera, got) in cameras.iter().zip(&delivered) {
            assert_eq!(got, &expected, "{camera}");
        }
        assert_eq!(outbox.totals(), (0, 0));
        outbox.close();
        drop(outbox);
        let reopened = Outbox::open(&s).expect("reopen");
        assert_eq!(reopened.recovery, Recovery::Clean);
        assert_eq!(reopened.totals(), (0, 0), "removed from disk too");
    }

    /// A removal shares fjall's journal lock with the writer's sync: with the
    /// writer running, a publisher's removal only queues (it returns while
    /// the writer is busy, the event still on disk), and the writer removes
    /// it from disk as soon as it is free, with no close or later append.
    #[test]
    fn a_publishers_removal_is_done_by_the_writer_not_on_its_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, outbox) = with_writer(dir.path());
        outbox.append("a", "t".into(), event(0));
        let until = Instant::now() + Duration::from_secs(10);
        let seq = loop {
            if let Some((seq, _)) = outbox.next("a", None, 1).first() {
                break *seq;
            }
            assert!(Instant::now() < until, "the event was never written");
            std::thread::sleep(Duration::from_millis(5));
        };
        let on_disk = |outbox: &Outbox| {
            let disk = outbox.disk();
            let disk = disk.as_ref().expect("store open");
            disk.events.contains_key(key("a", seq)).expect("read")
        };
        let busy = outbox.writing.lock().expect("writing");
        let (done, returned) = std::sync::mpsc::channel();
        let publisher = {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                outbox.remove("a", seq);
                let _ = done.send(());
            })
        };
        assert_eq!(returned.recv_timeout(Duration::from_secs(10)), Ok(()));
        assert_eq!(outbox.pending("a"), 0, "gone from the index at once");
        assert!(
            on_disk(&outbox),
            "the disk is the writer's: not removed yet"
        );
        drop(busy);
        publisher.join().expect("publisher");
        let until = Instant::now() + Duration::from_secs(10);
        while on_disk(&outbox) {
            assert!(Instant::now() < until, "the writer never removed it");
            std::thread::sleep(Duration::from_millis(5));
        }
        outbox.close();
    }

    #[test]
    fn beyond_max_events_the_oldest_are_dropped_and_counted_until_the_backlog_drains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(&settings(dir.path(), 100)).expect("open");
        let (m, status) = attached(&outbox, "a");
        for i in 0..250 {
            outbox.append("a", "t".into(), event(i));
        }
        assert_eq!(outbox.totals().0, 100);
        assert_eq!(m.outbox_dropped.get(), 150);
        assert_eq!(status.borrow().dropped, 150);
        let left = outbox.next("a", None, 1000);
        assert_eq!(ids(&left).first().map(String::as_str), Some("e-150"));
        for (seq, _) in &left {
            outbox.remove("a", *seq);
        }
        assert_eq!(
            status.borrow().dropped,
            0,
            "a drained backlog clears the reason"
        );
        assert_eq!(outbox.totals(), (0, 0));
    }

    #[test]
    fn max_bytes_bounds_the_outbox_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = settings(dir.path(), 1_000_000);
        s.max_bytes = 10_000;
        let outbox = Outbox::open(&s).expect("open");
        for i in 0..500 {
            outbox.append("a", "t".into(), event(i));
        }
        let (count, bytes) = outbox.totals();
        assert!(bytes <= 10_000, "{bytes} bytes");
        assert!(count > 10 && count < 100, "{count} events");
    }

    /// The last byte that is not zero in `file` (journals are preallocated).
    fn data_end(file: &Path) -> u64 {
        let bytes = std::fs::read(file).expect("read journal");
        bytes
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |p| p as u64 + 1)
    }

    #[test]
    fn a_journal_cut_short_after_a_kill_keeps_the_readable_events_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox");
        {
            let outbox = Outbox::open(&settings(&path, 1000)).expect("open");
            for i in 0..60 {
                outbox.append("a", "t".into(), event(i));
            }
            // Dropped without close: a kill.
        }
        let journals: Vec<PathBuf> = std::fs::read_dir(&path)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
            .collect();
        assert_eq!(journals.len(), 1, "{journals:?}");
        let end = data_end(&journals[0]);
        assert!(end > 60 * 200, "journal holds the events: {end}");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&journals[0])
            .expect("open journal");
        file.set_len(end * 2 / 3 + 7).expect("truncate");
        drop(file);

        let outbox = Outbox::open(&settings(&path, 1000)).expect("reopen");
        assert_eq!(outbox.recovery, Recovery::Unclean);
        let kept = outbox.next("a", None, 1000);
        let expected: Vec<String> = (0..kept.len()).map(|i| format!("e-{i}")).collect();
        assert_eq!(ids(&kept), expected, "the readable prefix, in order");
        assert!(
            kept.len() >= 30 && kept.len() < 60,
            "{} events readable",
            kept.len()
        );
        // It goes on working: new events after the kept ones.
        outbox.append("a", "t".into(), event(1000));
        assert_eq!(outbox.next("a", None, 1000).len(), kept.len() + 1);
    }

    #[test]
    fn an_unreadable_store_is_set_aside_and_a_new_one_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox");
        {
            let outbox = Outbox::open(&settings(&path, 1000)).expect("open");
            outbox.append("a", "t".into(), event(0));
            outbox.close();
        }
        std::fs::write(path.join("version"), b"garbage").expect("spoil");
        let outbox = Outbox::open(&settings(&path, 1000)).expect("reopen");
        let Recovery::SetAside(aside) = &outbox.recovery else {
            panic!("not set aside: {:?}", outbox.recovery);
        };
        assert!(aside.join("version").exists(), "kept for inspection");
        assert_eq!(outbox.totals(), (0, 0));
        outbox.append("a", "t".into(), event(1));
        assert_eq!(ids(&outbox.next("a", None, 10)), ["e-1"]);
    }

    #[test]
    fn a_second_daemon_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Outbox::open(&settings(dir.path(), 1000)).expect("open");
        let second = Outbox::open(&settings(dir.path(), 1000));
        let err = second.err().expect("refused").to_string();
        assert!(err.contains("in use by another process"), "{err}");
    }

    /// A real small tmpfs at `dir` (needs mount rights, which root has),
    /// unmounted when the guard drops; `None` where it cannot be mounted.
    struct Tmpfs<'a>(&'a Path);
    impl Drop for Tmpfs<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
        }
    }
    fn tmpfs<'a>(dir: &'a Path, size: &str) -> Option<Tmpfs<'a>> {
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        }
        mounted.then_some(Tmpfs(dir))
    }

    /// Fills the filesystem of `dir` with one file until it refuses more.
    fn fill(dir: &Path) -> PathBuf {
        use std::io::Write;
        let path = dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![1u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
        path
    }

    /// A real full disk: a 2 MiB tmpfs.
    #[test]
    fn a_full_disk_keeps_events_in_memory_within_a_bound_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(_unmount) = tmpfs(dir.path(), "2m") else {
            return;
        };
        let outbox = Outbox::open(&settings(dir.path(), 1_000_000)).expect("open");
        let (m, status) = attached(&outbox, "a");
        let n = OUTBOX_MEMORY_EVENTS as usize + 20_000;
        for i in 0..n {
            outbox.append("a", "t".into(), event(i));
        }
        let error = status.borrow().disk_error.clone();
        assert!(error.is_some(), "the disk error is reported");
        let (count, _) = outbox.totals();
        let on_disk = count - outbox.held();
        assert_eq!(outbox.held(), OUTBOX_MEMORY_EVENTS, "memory is bounded");
        assert!(
            m.outbox_dropped.get() > 0,
            "beyond the bound: dropped, counted"
        );
        assert_eq!(count as usize + m.outbox_dropped.get() as usize, n);
        // What is held is delivered like the rest, newest last.
        let all = outbox.next("a", None, usize::MAX);
        assert_eq!(all.len() as u64, count);
        assert_eq!(
            ids(&all).last().map(String::as_str),
            Some(format!("e-{}", n - 1).as_str())
        );
        assert!(
            on_disk > 1000,
            "the disk took events until it was full: {on_disk}"
        );
    }

    /// The disk fills while events come and go, then frees: the held events
    /// go to disk in order, the ones delivered meanwhile leave it, and after a
    /// stop without close exactly the undelivered ones are there, once each.
    #[test]
    fn after_a_full_disk_frees_writing_resumes_and_a_restart_finds_exactly_the_undelivered_events()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(_unmount) = tmpfs(dir.path(), "8m") else {
            return;
        };
        let path = dir.path().join("outbox");
        let mut s = settings(&path, 1_000_000);
        s.fsync = true;
        let outbox = Outbox::open(&s).expect("open");
        let (m, status) = attached(&outbox, "a");
        for i in 0..40 {
            outbox.append("a", "t".into(), event(i));
        }
        assert!(!outbox.failing());
        let filler = fill(dir.path());
        let mut i = 40;
        while !outbox.failing() {
            outbox.append("a", "t".into(), event(i));
            i += 1;
            assert!(i < 20_000, "the full disk never refused an event");
        }
        for _ in 0..60 {
            outbox.append("a", "t".into(), event(i));
            i += 1;
        }
        let made = i;
        assert!(status.borrow().disk_error.is_some(), "health says so");
        assert!(outbox.held() >= 60, "held in memory");
        // Delivered while the disk refuses removals: the first 30 (on disk)
        // and every event is still readable, in order.
        let waiting = outbox.next("a", None, usize::MAX);
        assert_eq!(ids(&waiting).len(), made);
        for (seq, _) in &waiting[..30] {
            outbox.remove("a", *seq);
        }
        assert!(!outbox.heal(), "no room yet");
        assert!(outbox.failing());

        std::fs::remove_file(filler).expect("free the disk");
        // As the disk keeper does: tried again until it heals (on a loaded
        // machine the store's own threads may still hold the room a moment).
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !outbox.heal() {
            assert!(
                std::time::Instant::now() < until,
                "room again: never healed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!outbox.failing());
        assert!(status.borrow().disk_error.is_none(), "health clears");
        assert_eq!(outbox.held(), 0, "nothing left in memory");
        // It writes again.
        outbox.append("a", "t".into(), event(made));
        assert!(!outbox.failing());
        assert_eq!(m.outbox_dropped.get(), 0, "nothing dropped");
        drop(outbox); // a stop without close

        let outbox = Outbox::open(&s).expect("reopen");
        assert_eq!(outbox.recovery, Recovery::Unclean);
        let expected: Vec<String> = (30..=made).map(|i| format!("e-{i}")).collect();
        assert_eq!(
            ids(&outbox.next("a", None, usize::MAX)),
            expected,
            "every undelivered event, once, in order; none of the delivered"
        );
    }

    #[tokio::test]
    async fn the_disk_keeper_stops_when_cancelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Arc::new(Outbox::open(&settings(dir.path(), 10)).expect("open"));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(keep_disk(outbox, cancel.clone()));
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}
