//! The stats logger: each camera's stream, frame bus and MQTT counters, and
//! each worker's, in the log every `framebus.stats_interval_s`.
//!
//! Reads counters only; never changes anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::health::Registry;

/// Logs until `cancel`; cameras that come and go are followed.
pub async fn run(registry: Arc<Registry>, interval: Duration, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    // Each camera's frame count and when it was read.
    let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let cameras = registry.cameras();
        last.retain(|id, _| cameras.iter().any(|(m, _)| m.camera == *id));
        for (metrics, _) in &cameras {
            let frames = metrics.frames_captured.get();
            let (last_frames, last_at) = last
                .get(&metrics.camera)
                .copied()
                .unwrap_or((0, metrics.started));
            let fps = frames.saturating_sub(last_frames) as f64 / last_at.elapsed().as_secs_f64();
            last.insert(metrics.camera.clone(), (frames, Instant::now()));
            tracing::info!(
                camera = %metrics.camera,
                frames,
                fps = format_args!("{fps:.1}"),
                gated = metrics.frames_gated.get(),
                paused = metrics.frames_paused.get(),
                published = metrics.mqtt_published.get(),
                mqtt_dropped = metrics.mqtt_dropped.get(),
                "stream stats"
            );
            for g in metrics.groups() {
                tracing::info!(
                    camera = %metrics.camera,
                    pool = %g.name,
                    sent = g.frames_sent.get(),
                    dropped = g.frames_dropped.get(),
                    drop_rate = format_args!("{:.3}", g.drop_rate()),
                    "frame bus stats"
                );
            }
        }
        for w in registry.workers.iter().map(|v| &v.metrics) {
            tracing::info!(
                worker = %w.id,
                frames = w.frames_sent.get(),
                inferences = w.inferences.get(),
                avg_ms = format_args!("{:.1}", w.latency.mean().map_or(0.0, |d| d.as_secs_f64() * 1e3)),
                "worker stats"
            );
        }
    }
}
