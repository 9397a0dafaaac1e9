//! The outbox under a flood (its own test process, so that its memory is this
//! test's alone): three times `max_events` events into the real on-disk store.
//! The oldest are dropped and counted, memory stays flat, the disk bounded.

use std::path::Path;
use std::sync::Arc;

use orion::config::OutboxConfig;
use orion::metrics::Metrics;
use orion::outbox::Outbox;
use orion::status::OutboxStatus;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes the directory's files really occupy (journals are sparse).
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += disk_bytes(&e.path());
        } else {
            total += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        }
    }
    total
}

#[test]
fn a_flood_beyond_max_events_drops_the_oldest_with_memory_flat_and_disk_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max_events = 100_000u64;
    let settings = OutboxConfig {
        path: dir.path().to_path_buf(),
        max_events,
        max_bytes: 64 * 1024 * 1024,
        fsync: false,
        ..OutboxConfig::default()
    };
    let outbox = Outbox::open(&settings).expect("open");
    let metrics = Arc::new(Metrics::for_camera("flood"));
    let (tx, status) = tokio::sync::watch::channel(OutboxStatus::default());
    outbox.attach("flood", metrics.clone(), tx);
    // An event as the daemon writes one (about 330 bytes of JSON).
    let event = |i: u64| {
        format!(
            r#"{{"type":"zone_left","instance_id":"flood","room_id":"r","event_id":"flood-1-{i}","timestamp":"2026-11-28T03:12:00.000Z","track_id":{i},"zone":"bed","reason":"walked_out","position":{{"x":0.5,"y":0.9}},"first_seen":"2026-11-28T03:00:00.000Z","last_seen":"2026-11-28T03:12:00.000Z","duration_s":720.0}}"#
        )
        .into_bytes()
    };
    let mut i = 0;
    let mut flood_to = |until: u64| {
        while i < until {
            outbox.append("flood", "care/events/flood".into(), event(i));
            i += 1;
        }
        (rss_kb(), disk_bytes(dir.path()))
    };
    let full = flood_to(max_events);
    let twice = flood_to(2 * max_events);
    let thrice = flood_to(3 * max_events);
    eprintln!("rss KiB, disk bytes: full {full:?}, 2x {twice:?}, 3x {thrice:?}");
    assert_eq!(outbox.totals().0, max_events);
    assert_eq!(metrics.outbox_dropped.get(), 2 * max_events);
    assert_eq!(status.borrow().dropped, 2 * max_events, "health says so");
    // The oldest went: the first left is the first of the last max_events.
    let first = outbox.next("flood", None, 1);
    let v: serde_json::Value = serde_json::from_slice(&first[0].1.payload).expect("json");
    assert_eq!(v["event_id"], format!("flood-1-{}", 2 * max_events));
    // The store settles in the first overflow; from then on nothing grows
    // with the flood.
    assert!(
        thrice.0 < twice.0 + 8 * 1024,
        "memory flat: {} KiB at 2x max_events, {} KiB at 3x",
        twice.0,
        thrice.0
    );
    // Events (about 35 MB) + one journal (64 MiB) + what compaction has not
    // reclaimed yet: bounded, not growing with the flood (100 MB more went in).
    let bound = settings.max_bytes + 2 * 64 * 1024 * 1024;
    assert!(
        thrice.1 < bound,
        "disk bounded: {} B (bound {bound})",
        thrice.1
    );
    outbox.close();
}
