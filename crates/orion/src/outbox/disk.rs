//! The outbox's store on disk: a `fjall` database with an `events` keyspace
//! (key `instance_id 0x00 sequence`, big-endian, so each camera's events are
//! one ordered prefix) and a `meta` keyspace for the clean-close marker.
//!
//! Owns the opening of the store, its keys and the probe for free room; knows
//! nothing of cameras, bounds or the index (`super::store`). `fjall`'s handles
//! are safe to share between threads: the store's callers read, insert and
//! remove concurrently.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

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
pub const MAX_UNFLUSHED_BYTES: u64 = 3 * MEMTABLE_BYTES;
/// The file [`probe_room`] writes to check for room.
const PROBE_FILE: &str = "space-probe";

/// The keys found on a reopened disk.
pub type DiskKeys = std::collections::HashSet<Vec<u8>>;

pub struct Disk {
    pub db: Database,
    pub events: Keyspace,
    pub meta: Keyspace,
}

pub fn key(camera: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(camera.len() + 9);
    k.extend_from_slice(camera.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn split_key(k: &[u8]) -> Option<(&str, u64)> {
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

pub fn open_disk(path: &Path) -> Result<Disk, fjall::Error> {
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
pub fn set_aside_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".unreadable-{}", now_ms() / 1000));
    path.with_file_name(name)
}

/// Whether the disk at `dir` takes `bytes` more: written to a probe file,
/// synced, and removed again.
pub fn probe_room(dir: &Path, bytes: u64) -> std::io::Result<()> {
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
pub fn disk_keys(disk: &Disk) -> Result<DiskKeys, fjall::Error> {
    disk.events
        .iter()
        .map(|item| item.key().map(|k| k.to_vec()))
        .collect()
}
