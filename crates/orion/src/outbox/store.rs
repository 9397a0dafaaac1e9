//! The outbox store: every camera's events on disk (a `fjall` keyspace), in the
//! order they happened, until the broker has acknowledged them.
//!
//! Owns the store directory and an index of what it holds (per camera: sequence
//! number and size, a few bytes per event; the events themselves stay on disk).
//! It enforces the bounds (`outbox.max_events`, `outbox.max_bytes`) by dropping
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
//! at start) is never healed: its events are not touched. It never fails an append and never panics on what it reads
//! back: an unreadable store is set aside and a fresh one used.
//!
//! Keys are `instance_id 0x00 sequence` (big-endian), so each camera's events
//! are one ordered prefix; the sequence is daemon-wide and never reused while
//! the store exists. A clean close writes a marker (how many events, the last
//! sequence); opening without it, or with fewer events than it says, is reported.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::writer::Queue;
use crate::config::{OUTBOX_MEMORY_EVENTS, OutboxConfig};
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::status::OutboxStatus;

/// Largest memtable before it is written to a table file (bounds the memory
/// the store itself uses).
const MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;
/// Journals are rotated (and old ones deleted) beyond this (fjall's minimum).
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
/// Block cache.
const CACHE_BYTES: u64 = 1024 * 1024;
/// Memtables not yet written to table files, at most: a flood of appends waits
/// for fjall's workers instead of piling memtables up in memory (fjall itself
/// never stalls a writer). Reached only far beyond the event rate limit, or
/// with a CPU too busy to flush.
const MAX_UNFLUSHED_BYTES: u64 = 3 * MEMTABLE_BYTES;
/// Longest one append waits for that.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// The clean-close marker's key in the `meta` keyspace.
const CLEAN_KEY: &[u8] = b"clean";
/// While the disk refuses writes, how often [`keep_disk`] checks for room.
pub const HEAL_EVERY: Duration = Duration::from_secs(1);
/// Room the disk must have beyond what is held in memory before the store is
/// reopened (journal and table overhead).
const HEAL_MARGIN_BYTES: u64 = 256 * 1024;
/// The file [`probe_room`] writes to check for room.
const PROBE_FILE: &str = "space-probe";
/// The keys [`Inner::heal`] found on the reopened disk.
type DiskKeys = std::collections::HashSet<Vec<u8>>;

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

/// One camera's part of the outbox.
struct CameraQueue {
    entries: VecDeque<Entry>,
    /// Present for the cameras of this run (absent: events of a camera no
    /// longer configured, kept until it comes back or the bounds drop them).
    metrics: Option<Arc<Metrics>>,
    status: Option<watch::Sender<OutboxStatus>>,
    notify: Arc<Notify>,
}

impl CameraQueue {
    fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            metrics: None,
            status: None,
            notify: Arc::new(Notify::new()),
        }
    }

    fn update_gauge(&self) {
        if let Some(m) = &self.metrics {
            m.outbox_queued.set(self.entries.len() as f64);
        }
    }

    fn count_dropped(&self, n: u64) {
        if let Some(m) = &self.metrics {
            m.outbox_dropped.add(n);
        }
        if let Some(s) = &self.status {
            s.send_modify(|s| s.dropped += n);
        }
    }
}

struct Disk {
    db: Database,
    events: Keyspace,
    meta: Keyspace,
}

struct Inner {
    /// The store; after a failed write it is kept for reading only, and
    /// `None` while it cannot be opened.
    disk: Option<Disk>,
    /// Why the disk refused a write or a removal; while set, nothing is
    /// written (events are held) until [`Inner::heal`] succeeds.
    disk_error: Option<String>,
    /// Bytes of the events held in memory.
    held_bytes: u64,
    /// The index was read from the store: healing may make the disk hold
    /// what the index holds. False when the store could not be opened at
    /// start: its events were never read, so they are never touched (memory
    /// only until a restart).
    loaded: bool,
    cameras: BTreeMap<String, CameraQueue>,
    count: u64,
    bytes: u64,
    /// Events held in memory (the disk refused them).
    held: u64,
    next_seq: u64,
    full_log: RateLimit,
    disk_log: RateLimit,
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
    inner: Mutex<Inner>,
    /// Events appended and not yet written, for the writer thread
    /// ([`Outbox::start_writer`]); without it appends are written at once.
    queue: Queue<Pending>,
    /// One heal at a time (the keeper's, or the last one at close).
    healing: Mutex<()>,
    settings: OutboxConfig,
    /// What opening found.
    pub recovery: Recovery,
}

fn key(camera: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(camera.len() + 9);
    k.extend_from_slice(camera.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn split_key(k: &[u8]) -> Option<(&str, u64)> {
    let at = k.iter().position(|b| *b == 0)?;
    let camera = std::str::from_utf8(&k[..at]).ok()?;
    let seq: [u8; 8] = k.get(at + 1..)?.try_into().ok()?;
    Some((camera, u64::from_be_bytes(seq)))
}

/// Wall-clock Unix milliseconds (when an event was stored, and delivered).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn open_disk(path: &Path) -> Result<Disk, fjall::Error> {
    let db = Database::builder(path)
        // Two: with one, a flush can wait behind a compaction while memtables
        // pile up (measured: memory growing with every event in a flood).
        .worker_threads(2)
        .cache_size(CACHE_BYTES)
        .max_journaling_size(JOURNAL_BYTES)
        .open()?;
    let events = db.keyspace("events", || {
        KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
    })?;
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
    Ok(Disk { db, events, meta })
}

/// Where an unreadable store is moved to.
fn set_aside_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".unreadable-{}", now_ms() / 1000));
    path.with_file_name(name)
}

/// Whether the disk at `dir` takes `bytes` more: written to a probe file,
/// synced, and removed again.
fn probe_room(dir: &Path, bytes: u64) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path).and_then(|mut f| {
        let chunk = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    written
}

/// Every event key on `disk`.
fn disk_keys(disk: &Disk) -> Result<DiskKeys, fjall::Error> {
    disk.events
        .iter()
        .map(|item| item.key().map(|k| k.to_vec()))
        .collect()
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

impl Outbox {
    /// Opens (or creates) the store at `settings.path` and reads its index.
    /// The only error is a store in use by another process; anything else is
    /// reported and worked around (set aside, or memory only).
    pub fn open(settings: &OutboxConfig) -> Result<Self, Locked> {
        let path = &settings.path;
        let existed = path.join("version").exists();
        let mut disk_error = None;
        let (disk, mut recovery) = match std::fs::create_dir_all(path) {
            Err(e) => {
                disk_error = Some(format!("cannot create {}: {e}", path.display()));
                (None, Recovery::MemoryOnly)
            }
            Ok(()) => match open_disk(path) {
                Ok(d) => (Some(d), Recovery::New),
                Err(fjall::Error::Locked) => {
                    return Err(Locked(path.display().to_string()));
                }
                Err(e) => {
                    let aside = set_aside_path(path);
                    tracing::error!(
                        path = %path.display(),
                        error = ?e,
                        set_aside = %aside.display(),
                        "outbox cannot be read; it is set aside (kept for inspection) and a new one started: its events will not be delivered"
                    );
                    match std::fs::rename(path, &aside)
                        .map_err(|e| e.to_string())
                        .and_then(|()| open_disk(path).map_err(|e| format!("{e:?}")))
                    {
                        Ok(d) => (Some(d), Recovery::SetAside(aside)),
                        Err(e) => {
                            disk_error = Some(format!("cannot open {}: {e}", path.display()));
                            (None, Recovery::MemoryOnly)
                        }
                    }
                }
            },
        };
        let mut inner = Inner {
            disk,
            disk_error,
            held_bytes: 0,
            loaded: false,
            cameras: BTreeMap::new(),
            count: 0,
            bytes: 0,
            held: 0,
            next_seq: 1,
            full_log: RateLimit::new(Duration::from_secs(10)),
            disk_log: RateLimit::new(Duration::from_secs(10)),
        };
        if let Some(e) = &inner.disk_error {
            tracing::error!("outbox: {e}; events are kept in memory only");
        }
        if let Some(disk) = inner.disk.take() {
            let (marker, unreadable) = inner.load(&disk);
            inner.loaded = true;
            if recovery == Recovery::New && existed {
                recovery = match marker {
                    None => Recovery::Unclean,
                    Some(m) if m.events > inner.count => Recovery::Damaged { expected: m.events },
                    Some(_) => Recovery::Clean,
                };
            }
            if unreadable > 0 {
                tracing::warn!(unreadable, "outbox: unreadable events removed");
            }
            // From now on a missing marker means this run did not close.
            let removed = disk
                .meta
                .remove(CLEAN_KEY)
                .and_then(|()| disk.db.persist(PersistMode::SyncAll));
            if let Err(e) = removed {
                tracing::warn!(error = ?e, "outbox: cannot clear the clean-close marker");
            }
            inner.disk = Some(disk);
        }
        let waiting = inner.count;
        match &recovery {
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
        Ok(Self {
            inner: Mutex::new(inner),
            queue: Queue::default(),
            healing: Mutex::new(()),
            settings: settings.clone(),
            recovery,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("outbox poisoned")
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
                    let woken = outbox.write_batch(batch, &dropped);
                    outbox.queue.written();
                    for notify in woken {
                        notify.notify_one();
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
        let mut inner = self.lock();
        let error = inner.disk_error.clone();
        let q = inner
            .cameras
            .entry(camera.to_string())
            .or_insert_with(CameraQueue::new);
        status.send_modify(|s| s.disk_error = error);
        q.metrics = Some(metrics);
        q.status = Some(status);
        q.update_gauge();
    }

    /// `camera` leaves this run (its events stay, kept like an orphan's until
    /// it comes back).
    pub fn detach(&self, camera: &str) {
        if let Some(q) = self.lock().cameras.get_mut(camera) {
            q.metrics = None;
            q.status = None;
        }
    }

    /// Reports `camera`'s current event flood (0: none) in its status.
    pub fn report_flood(&self, camera: &str, suppressed: u64) {
        if let Some(s) = self
            .lock()
            .cameras
            .get(camera)
            .and_then(|q| q.status.as_ref())
        {
            s.send_if_modified(|s| std::mem::replace(&mut s.suppressed, suppressed) != suppressed);
        }
    }

    /// Cameras with events waiting that are not attached (not in this run).
    pub fn orphans(&self) -> Vec<(String, usize)> {
        self.lock()
            .cameras
            .iter()
            .filter(|(_, q)| q.metrics.is_none() && !q.entries.is_empty())
            .map(|(c, q)| (c.clone(), q.entries.len()))
            .collect()
    }

    /// Woken whenever an event is appended for `camera`.
    pub fn notifier(&self, camera: &str) -> Arc<Notify> {
        self.lock()
            .cameras
            .entry(camera.to_string())
            .or_insert_with(CameraQueue::new)
            .notify
            .clone()
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
        let mut inner = self.lock();
        if !dropped.is_empty() {
            tracing::error!(
                events = dropped.len(),
                "outbox: the disk is too slow for the events; the oldest queued ones were dropped"
            );
        }
        for camera in dropped {
            if let Some(q) = inner.cameras.get(camera) {
                q.count_dropped(1);
            }
        }
        let mut written = Vec::with_capacity(batch.len());
        for Pending { camera, record } in batch {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            match rmp_serde::to_vec(&record) {
                Ok(encoded) => {
                    let bytes = encoded.len() as u64;
                    let on_disk = inner.insert(&key(&camera, seq), encoded).is_ok();
                    written.push((camera, seq, bytes, on_disk, record));
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot encode an event; it is dropped");
                }
            }
        }
        let synced = written.is_empty() || inner.persist(self.settings.fsync).is_ok();
        let mut woken = Vec::new();
        for (camera, seq, bytes, on_disk, record) in written {
            // A batch whose sync failed is held in memory, all of it.
            let held = (!on_disk || !synced).then(|| Arc::new(record));
            if held.is_some() {
                inner.held += 1;
                inner.held_bytes += bytes;
            }
            let q = inner.cameras.entry(camera).or_insert_with(CameraQueue::new);
            q.entries.push_back(Entry { seq, bytes, held });
            q.update_gauge();
            woken.push(q.notify.clone());
            inner.count += 1;
            inner.bytes += bytes;
        }
        inner.enforce_bounds(&self.settings);
        drop(inner);
        self.wait_for_flushes();
        woken
    }

    /// Backpressure (without the lock): while fjall holds more than
    /// [`MAX_UNFLUSHED_BYTES`] not yet written to table files, waits for its
    /// workers, at most [`FLUSH_WAIT`].
    fn wait_for_flushes(&self) {
        let until = Instant::now() + FLUSH_WAIT;
        let unflushed = || {
            self.lock()
                .disk
                .as_ref()
                .map_or(0, |d| d.db.write_buffer_size())
        };
        while unflushed() > MAX_UNFLUSHED_BYTES && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Up to `max` of `camera`'s events after sequence `after` (all from the
    /// oldest with `None`), oldest first. Events that cannot be read back are
    /// removed and counted.
    pub fn next(&self, camera: &str, after: Option<u64>, max: usize) -> Vec<(u64, Arc<Record>)> {
        let mut inner = self.lock();
        let Some(q) = inner.cameras.get(camera) else {
            return Vec::new();
        };
        let start = match after {
            None => 0,
            Some(a) => q.entries.partition_point(|e| e.seq <= a),
        };
        let wanted: Vec<(u64, Option<Arc<Record>>)> = q
            .entries
            .range(start..)
            .take(max)
            .map(|e| (e.seq, e.held.clone()))
            .collect();
        let mut out = Vec::with_capacity(wanted.len());
        let mut unreadable = Vec::new();
        for (seq, held) in wanted {
            let record = match held {
                Some(r) => Some(r),
                // On a disk that is closed until it heals: wait for it (in
                // order), never drop it.
                None if inner.disk.is_none() => break,
                None => inner.read(camera, seq).map(Arc::new),
            };
            match record {
                Some(r) => out.push((seq, r)),
                None => unreadable.push(seq),
            }
        }
        for seq in unreadable {
            tracing::warn!(
                camera,
                seq,
                "outbox: an event could not be read back; dropped"
            );
            inner.drop_one(camera, seq);
        }
        out
    }

    /// Drops an event that can never be delivered (counted as dropped).
    pub fn drop_event(&self, camera: &str, seq: u64) {
        self.lock().drop_one(camera, seq);
    }

    /// Removes an event the broker acknowledged. Once a camera's backlog is
    /// empty its "dropped" health reason clears.
    pub fn remove(&self, camera: &str, seq: u64) {
        let mut inner = self.lock();
        if inner.take(camera, seq)
            && let Some(q) = inner.cameras.get(camera)
        {
            if let Some(m) = &q.metrics {
                m.outbox_delivered.inc();
            }
            if q.entries.is_empty()
                && let Some(s) = &q.status
            {
                s.send_if_modified(|s| std::mem::take(&mut s.dropped) > 0);
            }
        }
    }

    /// Whether `camera` has events after sequence `after` (any with `None`).
    pub fn waiting_after(&self, camera: &str, after: Option<u64>) -> bool {
        // Queued for the writer: not in the index yet, but older than anything
        // that comes after.
        if self.queue.holds(camera) {
            return true;
        }
        self.lock().cameras.get(camera).is_some_and(|q| {
            q.entries
                .back()
                .is_some_and(|e| after.is_none_or(|a| e.seq > a))
        })
    }

    /// Events waiting for `camera`.
    pub fn pending(&self, camera: &str) -> usize {
        self.lock()
            .cameras
            .get(camera)
            .map_or(0, |q| q.entries.len())
    }

    /// Whether the disk refuses writes (new events are held in memory until
    /// [`Outbox::heal`] succeeds).
    pub fn failing(&self) -> bool {
        let inner = self.lock();
        inner.disk_error.is_some() && inner.loaded
    }

    /// While the disk refuses writes: if it has room for what is held (a
    /// probe file written and synced), reopens the store, makes the disk hold
    /// exactly what the index holds and resumes writing. True when the disk
    /// takes writes. Blocking disk I/O: call it off the async runtime.
    pub fn heal(&self) -> bool {
        let _one = self.healing.lock().unwrap_or_else(|e| e.into_inner());
        let need = {
            let inner = self.lock();
            if inner.disk_error.is_none() {
                return true;
            }
            if !inner.loaded {
                return false;
            }
            inner.held_bytes + HEAL_MARGIN_BYTES
        };
        // Without the lock: appends go on (held), deliveries of what is on
        // disk wait, while the probe writes and the store is reopened (fjall
        // refuses every write after a failed one) and its keys read.
        let path = &self.settings.path;
        if probe_room(path, need).is_err() {
            return false;
        }
        let refusing = self.lock().disk.take();
        drop(refusing); // joins fjall's threads: not under the lock
        let reopened = std::fs::create_dir_all(path)
            .map_err(|e| e.to_string())
            .and_then(|()| open_disk(path).map_err(|e| format!("{e:?}")));
        let disk = match reopened {
            Ok(d) => d,
            Err(why) => {
                self.lock().fail(why);
                return false;
            }
        };
        let on_disk = disk_keys(&disk);
        self.lock().heal(disk, on_disk)
    }

    /// Events and bytes in the whole outbox.
    pub fn totals(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.count, inner.bytes)
    }

    /// Writes the clean-close marker and flushes everything to disk, after
    /// one more try to write back what is held in memory. What is still held
    /// then is lost (logged).
    pub fn close(&self) {
        self.stop_writer();
        if self.failing() {
            self.heal();
        }
        let inner = self.lock();
        if inner.held > 0 {
            tracing::error!(
                events = inner.held,
                "outbox: events held in memory (the disk refused them) are lost at this stop"
            );
        }
        let Some(disk) = &inner.disk else {
            return;
        };
        let marker = CleanMarker {
            events: inner.count - inner.held,
            last_seq: inner.next_seq - 1,
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
}

impl Inner {
    /// Reads the index from disk: every event's camera, sequence and size.
    /// Returns the clean-close marker and how many entries were unreadable
    /// (removed).
    fn load(&mut self, disk: &Disk) -> (Option<CleanMarker>, u64) {
        let mut unreadable = Vec::new();
        for item in disk.events.iter() {
            let Ok((k, v)) = item.into_inner() else {
                break;
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
            self.cameras
                .entry(camera.to_string())
                .or_insert_with(CameraQueue::new)
                .entries
                .push_back(Entry {
                    seq,
                    bytes,
                    held: None,
                });
            self.count += 1;
            self.bytes += bytes;
            self.next_seq = self.next_seq.max(seq + 1);
        }
        // Keys sort by camera, then sequence: each queue is in order already.
        for k in &unreadable {
            let _ = disk.events.remove(k.as_slice());
        }
        let marker = disk
            .meta
            .get(CLEAN_KEY)
            .ok()
            .flatten()
            .and_then(|v| rmp_serde::from_slice::<CleanMarker>(&v).ok());
        if let Some(m) = &marker {
            self.next_seq = self.next_seq.max(m.last_seq + 1);
        }
        (marker, unreadable.len() as u64)
    }

    /// Writes an event to disk; on failure records why (health) and logs.
    /// While the disk is failing nothing is written (held events would
    /// otherwise be overtaken on disk by newer ones): [`Inner::heal`] first.
    /// Writes one event (not yet synced: [`Inner::persist`]).
    fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), ()> {
        if self.disk_error.is_some() {
            return Err(());
        }
        let Some(disk) = &self.disk else {
            return Err(());
        };
        let result = disk.events.insert(key, value);
        result.map_err(|e| self.fail(format!("{e:?}")))
    }

    /// Makes what was inserted durable (synced with `fsync`, else handed to
    /// the OS).
    fn persist(&mut self, fsync: bool) -> Result<(), ()> {
        if self.disk_error.is_some() {
            return Err(());
        }
        let Some(disk) = &self.disk else {
            return Err(());
        };
        let mode = if fsync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        let result = disk.db.persist(mode);
        result.map_err(|e| self.fail(format!("{e:?}")))
    }

    /// The disk refused a write or a removal: stop writing until it heals.
    fn fail(&mut self, why: String) {
        if let Some(held_back) = self.disk_log.allow(Instant::now()) {
            tracing::error!(
                error = %why,
                "outbox cannot write to disk: new events are kept in memory (at most {OUTBOX_MEMORY_EVENTS}) and written to disk when it has room again; they are lost if the daemon stops before{}",
                self.disk_log.and_more(held_back)
            );
        }
        if self.disk_error.is_none() {
            self.disk_error = Some(why);
            self.publish_disk_error();
        }
    }

    /// With the reopened store and the keys it holds: makes it hold what the
    /// index holds: events delivered or dropped while
    /// the disk was failing are removed, the held ones written, in order, and
    /// synced; only then are they let go of in memory. Events the index had on
    /// disk that the reopened store lacks are dropped, counted and logged.
    fn heal(&mut self, disk: Disk, on_disk: Result<DiskKeys, fjall::Error>) -> bool {
        let result = on_disk.and_then(|on_disk| self.rewrite(&disk, on_disk));
        self.disk = Some(disk);
        // Publishers stopped at events on the closed disk: readable again.
        for q in self.cameras.values() {
            q.notify.notify_one();
        }
        match result {
            Ok(lost) => {
                let written = std::mem::take(&mut self.held);
                self.held_bytes = 0;
                for q in self.cameras.values_mut() {
                    q.entries.iter_mut().for_each(|e| e.held = None);
                }
                self.drop_lost(lost);
                self.disk_error = None;
                self.publish_disk_error();
                tracing::info!(
                    written,
                    "outbox: the disk takes events again; the events held in memory are on disk"
                );
                true
            }
            Err(e) => {
                self.fail(format!("{e:?}"));
                false
            }
        }
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
        for (camera, q) in &self.cameras {
            for e in &q.entries {
                let k = key(camera, e.seq);
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
    fn drop_lost(&mut self, lost: Vec<(String, u64)>) {
        if lost.is_empty() {
            return;
        }
        tracing::error!(
            events = lost.len(),
            "outbox: events the disk had taken are missing from it after it was reopened; they are dropped"
        );
        for (camera, seq) in lost {
            self.drop_one(&camera, seq);
        }
    }

    fn publish_disk_error(&self) {
        for s in self.cameras.values().filter_map(|q| q.status.as_ref()) {
            let e = self.disk_error.clone();
            s.send_if_modified(|s| {
                let changed = s.disk_error != e;
                s.disk_error = e;
                changed
            });
        }
    }

    fn read(&self, camera: &str, seq: u64) -> Option<Record> {
        let disk = self.disk.as_ref()?;
        let v = disk.events.get(key(camera, seq)).ok()??;
        rmp_serde::from_slice(&v).ok()
    }

    /// Drops an event (counted in the camera's dropped events).
    fn drop_one(&mut self, camera: &str, seq: u64) {
        if self.take(camera, seq)
            && let Some(q) = self.cameras.get(camera)
        {
            q.count_dropped(1);
        }
    }

    /// Removes an event from the index and the disk; false if it was not there.
    fn take(&mut self, camera: &str, seq: u64) -> bool {
        let Some(q) = self.cameras.get_mut(camera) else {
            return false;
        };
        let Ok(at) = q.entries.binary_search_by_key(&seq, |e| e.seq) else {
            return false;
        };
        let Some(e) = q.entries.remove(at) else {
            return false;
        };
        q.update_gauge();
        self.count -= 1;
        self.bytes -= e.bytes;
        if e.held.is_some() {
            self.held -= 1;
            self.held_bytes -= e.bytes;
            return true;
        }
        // While failing the disk is left alone: healing removes what the
        // index no longer holds.
        if self.disk_error.is_none()
            && let Some(disk) = &self.disk
            && let Err(err) = disk.events.remove(key(camera, seq))
        {
            self.fail(format!("{err:?}"));
        }
        true
    }

    /// Drops the oldest events (of any camera) while the outbox is beyond its
    /// bounds, and the oldest held in memory beyond theirs.
    fn enforce_bounds(&mut self, settings: &OutboxConfig) {
        let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            let over = self.count > settings.max_events || self.bytes > settings.max_bytes;
            let held_over = self.held > OUTBOX_MEMORY_EVENTS;
            if !over && !held_over {
                break;
            }
            let oldest = self
                .cameras
                .iter()
                .filter_map(|(c, q)| {
                    q.entries
                        .iter()
                        .find(|e| !held_over || e.held.is_some())
                        .map(|e| (e.seq, c.clone()))
                })
                .min();
            let Some((seq, camera)) = oldest else {
                break;
            };
            if !self.take(&camera, seq) {
                break;
            }
            *dropped.entry(camera).or_default() += 1;
        }
        for (camera, n) in dropped {
            if let Some(q) = self.cameras.get(&camera) {
                q.count_dropped(n);
            }
            if let Some(held_back) = self.full_log.allow(Instant::now()) {
                tracing::warn!(
                    camera,
                    dropped = n,
                    max_events = settings.max_events,
                    max_bytes = settings.max_bytes,
                    "outbox full: the oldest events are dropped (counted in orion_outbox_dropped_total){}",
                    self.full_log.and_more(held_back)
                );
            }
        }
    }
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

    #[test]
    fn the_writer_keeps_each_cameras_order_and_close_writes_what_is_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox");
        let mut s = settings(&path, 100_000);
        s.fsync = true;
        let outbox = Arc::new(Outbox::open(&s).expect("open"));
        outbox.start_writer().expect("writer");
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
        let on_disk = count - outbox.lock().held;
        assert_eq!(
            outbox.lock().held,
            OUTBOX_MEMORY_EVENTS,
            "memory is bounded"
        );
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
        assert!(outbox.lock().held >= 60, "held in memory");
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
        assert!(outbox.heal(), "room again: healed");
        assert!(!outbox.failing());
        assert!(status.borrow().disk_error.is_none(), "health clears");
        assert_eq!(outbox.lock().held, 0, "nothing left in memory");
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
