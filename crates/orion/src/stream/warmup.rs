//! Warm-up: consume frames without inference for a while and measure the real FPS.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::FrameReceiver;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupStats {
    /// Frames the stream delivered during the warm-up (by sequence number).
    pub frames: u64,
    pub fps_mean: f64,
    /// Standard deviation of the per-interval FPS.
    pub fps_std: f64,
}

/// Measures FPS from the frames' own sequence numbers and capture times, so that a
/// frame this task misses (the slot keeps only the newest) still counts.
/// Returns `None` when fewer than two frames arrived.
pub async fn measure(
    frames: &mut FrameReceiver,
    duration: Duration,
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> Option<WarmupStats> {
    let deadline = tokio::time::Instant::now() + duration;
    let mut first: Option<(u64, Instant)> = None;
    let mut last: Option<(u64, Instant)> = None;
    let mut rates = Vec::new();
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep_until(deadline) => break,
            f = frames.next() => match f {
                Some(f) => f,
                None => break,
            },
        };
        frames.want_next();
        let (seq, t) = (frame.seq, frame.captured_instant);
        metrics.frames_warmup.inc();
        if let Some((prev_seq, prev_t)) = last {
            let dt = t.saturating_duration_since(prev_t).as_secs_f64();
            if seq > prev_seq && dt > 0.0 {
                rates.push((seq - prev_seq) as f64 / dt);
            }
        }
        first.get_or_insert((seq, t));
        last = Some((seq, t));
    }
    let ((s0, t0), (s1, t1)) = (first?, last?);
    let span = t1.saturating_duration_since(t0).as_secs_f64();
    if s1 <= s0 || span <= 0.0 {
        return None;
    }
    let fps_mean = (s1 - s0) as f64 / span;
    let n = rates.len() as f64;
    let avg = rates.iter().sum::<f64>() / n;
    let fps_std = (rates.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / n).sqrt();
    Some(WarmupStats {
        frames: s1 - s0 + 1,
        fps_mean,
        fps_std,
    })
}

/// Effective inference rate: what was asked, but never faster than the stream.
pub fn effective_rate(configured_hz: f64, warmup: Option<&WarmupStats>) -> f64 {
    match warmup {
        Some(w) if w.fps_mean > 0.0 => configured_hz.min(w.fps_mean),
        _ => configured_hz,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_rate_is_min_of_configured_and_measured() {
        let w = WarmupStats {
            frames: 50,
            fps_mean: 10.0,
            fps_std: 0.1,
        };
        assert_eq!(effective_rate(2.0, Some(&w)), 2.0);
        assert_eq!(effective_rate(30.0, Some(&w)), 10.0);
        assert_eq!(effective_rate(5.0, None), 5.0);
    }
}
