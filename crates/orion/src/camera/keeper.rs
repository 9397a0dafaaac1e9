//! The presence keeper of one camera: saves the camera's present people (a
//! [`Snapshot`] from its result handler) to `<presence.path>/<instance_id>.json`
//! whenever they change, and reads them back at the camera's start, so that a
//! restart (or a crash) neither forgets a sleeping resident nor leaves a
//! visit open.
//!
//! Owns that file. Writes go through a temporary file of this keeper's own,
//! flushed to the disk, and a rename (a crash or a power cut leaves the old or
//! the new snapshot, never half of one), off the async runtime. It stops after the result handler, saving what it last handed
//! over; a file it cannot read or write is logged and never stops the camera.

use std::path::{Path, PathBuf};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::tracking::snapshot::Snapshot;

/// The largest snapshot file read back (a full one is far smaller).
const MAX_BYTES: u64 = 1024 * 1024;

/// One camera's snapshot file.
#[derive(Debug, Clone)]
pub struct PresenceFile {
    path: PathBuf,
    /// This keeper's temporary file (two keepers of one camera, as across a
    /// reload, never write the same one).
    tmp: PathBuf,
}

impl PresenceFile {
    pub fn new(dir: &Path, instance_id: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            path: dir.join(format!("{instance_id}.json")),
            tmp: dir.join(format!(".{instance_id}.{}-{n}.tmp", std::process::id())),
        }
    }

    /// The snapshot saved by an earlier run, if there is a readable one.
    pub async fn load(&self) -> Option<Snapshot> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
            use std::io::Read as _;
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut bytes = Vec::new();
            file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        })
        .await;
        let shown = self.path.display();
        let bytes = match read {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::warn!(file = %shown, error = %e, "cannot read the present people of the last run; starting without them");
                return None;
            }
            Err(e) => {
                tracing::warn!(file = %shown, error = %e, "reading the present people failed");
                return None;
            }
        };
        if bytes.len() as u64 > MAX_BYTES {
            tracing::warn!(file = %shown, "the present people file is over 1 MiB; starting without it");
            return None;
        }
        match Snapshot::from_json(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(file = %shown, error = %e, "the present people file is not valid; starting without it");
                None
            }
        }
    }

    /// Writes `snapshot` (temporary file, synced, then rename and a sync of
    /// the directory).
    async fn save(&self, snapshot: &Snapshot) {
        let bytes = match serde_json::to_vec(snapshot) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize the present people");
                return;
            }
        };
        let (path, tmp) = (self.path.clone(), self.tmp.clone());
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot save the present people (a restart will not know them)")
            }
            Err(e) => tracing::warn!(error = %e, "saving the present people failed"),
        }
    }

    /// Saves every snapshot handed over until `cancel`, then the last one if
    /// it is not saved yet.
    pub async fn run(
        self,
        mut snapshots: watch::Receiver<Option<Snapshot>>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
            let latest = snapshots.borrow_and_update().clone();
            if let Some(s) = latest {
                self.save(&s).await;
            }
        }
        if snapshots.has_changed().unwrap_or(false) {
            let latest = snapshots.borrow_and_update().clone();
            if let Some(s) = latest {
                self.save(&s).await;
            }
        }
        tracing::debug!("presence keeper stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(people: usize) -> Snapshot {
        let json = format!(
            r#"{{"saved_at": "2026-11-30T08:00:00Z", "next_track_id": 9, "people": [{}]}}"#,
            (0..people)
                .map(|i| format!(
                    r#"{{"track_id": {}, "bbox": {{"x": 1, "y": 2, "width": 30, "height": 40}}, "first_seen": "2026-11-30T07:00:00Z", "last_seen": "2026-11-30T07:59:00Z", "seen": false, "unseen_for_s": 60, "zones": ["bed"]}}"#,
                    i + 1
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        Snapshot::from_json(json.as_bytes()).expect("a valid snapshot")
    }

    #[tokio::test]
    async fn what_is_handed_over_is_read_back_and_the_last_one_is_saved_at_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PresenceFile::new(dir.path(), "cam-1");
        assert!(file.load().await.is_none(), "nothing saved yet");
        let (tx, rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let keeper = tokio::spawn(file.clone().run(rx, cancel.clone()));
        tx.send_replace(Some(snapshot(1)));
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while file.load().await.is_none() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("saved");
        // Handed over just before the stop: saved by the stop.
        tx.send_replace(Some(snapshot(2)));
        cancel.cancel();
        keeper.await.expect("keeper ends");
        assert_eq!(file.load().await, Some(snapshot(2)));
    }

    #[tokio::test]
    async fn a_broken_file_is_no_snapshot_and_no_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PresenceFile::new(dir.path(), "cam-1");
        for junk in [
            &b"{not json"[..],
            br#"{"saved_at": "yesterday", "next_track_id": 1, "people": []}"#,
            br#"{"saved_at": "2026-11-30T08:00:00Z", "next_track_id": 1, "people": [{"track_id": 5, "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "first_seen": "", "last_seen": "", "seen": true, "unseen_for_s": 0, "zones": []}]}"#,
            // Durations and ids that would overflow, times that are not.
            br#"{"saved_at": "2026-11-30T08:00:00Z", "next_track_id": 9, "people": [{"track_id": 5, "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "first_seen": "2026-11-30T07:00:00Z", "last_seen": "2026-11-30T07:00:00Z", "seen": false, "unseen_for_s": 1e20, "zones": []}]}"#,
            br#"{"saved_at": "2026-11-30T08:00:00Z", "next_track_id": 18446744073709551615, "people": []}"#,
            br#"{"saved_at": "2026-11-30T08:00:00Z", "next_track_id": 9, "occupied_since": "then", "people": []}"#,
            br#"{"saved_at": "2026-11-30T08:00:00Z", "next_track_id": 9, "people": [{"track_id": 5, "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "first_seen": "2026-11-30T07:00:00Z", "last_seen": "2026-11-30T07:00:00Z", "seen": true, "unseen_for_s": 0, "zones": []}, {"track_id": 5, "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "first_seen": "2026-11-30T07:00:00Z", "last_seen": "2026-11-30T07:00:00Z", "seen": true, "unseen_for_s": 0, "zones": []}]}"#,
        ] {
            std::fs::write(dir.path().join("cam-1.json"), junk).expect("write");
            assert!(file.load().await.is_none(), "{}", String::from_utf8_lossy(junk));
        }
    }
}
