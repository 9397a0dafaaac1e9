//! Benchmark helper (bench/outbox.py): appends N events for one camera to an
//! outbox directory with the daemon's own store, and prints the append cost.
//!
//!     outbox_fill DIR CAMERA N fsync|nofsync
//!
//! Prints one JSON line: events, seconds, microseconds per append.

use std::time::Instant;

use orion::config::OutboxConfig;
use orion::outbox::Outbox;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, camera, n, fsync] = args.as_slice() else {
        anyhow::bail!("usage: outbox_fill DIR CAMERA N fsync|nofsync");
    };
    let n: u64 = n.parse()?;
    let settings = OutboxConfig {
        path: dir.into(),
        fsync: fsync == "fsync",
        ..OutboxConfig::default()
    };
    let outbox = Outbox::open(&settings)?;
    let topic = format!("care/events/{camera}");
    let started = Instant::now();
    for i in 0..n {
        // An event as the daemon writes one (a zone_left, about 330 bytes).
        let payload = format!(
            r#"{{"type":"zone_left","instance_id":"{camera}","room_id":"bench","event_id":"bench-fill-{i}","timestamp":"2026-11-28T03:12:00.000Z","track_id":{i},"zone":"bed","reason":"walked_out","position":{{"x":0.5,"y":0.9}},"first_seen":"2026-11-28T03:00:00.000Z","last_seen":"2026-11-28T03:12:00.000Z","duration_s":720.0}}"#
        );
        outbox.append(camera, topic.clone(), payload.into_bytes());
    }
    let took = started.elapsed().as_secs_f64();
    outbox.close();
    println!(
        "{{\"events\": {n}, \"seconds\": {took:.3}, \"us_per_append\": {:.1}}}",
        took * 1e6 / n as f64
    );
    Ok(())
}
