//! One camera's frame path: the frame consumer reads the camera's newest-frame
//! slot, gates by the camera's rate, skips while paused, converts accepted
//! frames, picks the crop, and publishes on the camera's port of the frame bus.
//!
//! It owns nothing shared: its gate, its ROI attention (shared with its control
//! plane and the result handler's auto-focus feedback) and its counters are the
//! camera's own. It never waits for a worker (a paced file waits for its own
//! frame to be taken, never for another camera's).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::attention::{RateGate, RoiAttention};
use crate::framebus::{CameraPort, Job};
use crate::metrics::Metrics;
use crate::stream::{CapturedFrame, Frame, FrameReceiver, RgbConverter};
use crate::tracking::zones::LookAreas;

/// Reads the newest-frame slot of one camera and feeds the frame bus.
pub struct FrameConsumer {
    pub instance_id: Arc<str>,
    pub room_id: Arc<str>,
    pub gate: RateGate,
    pub roi: Arc<Mutex<RoiAttention>>,
    pub port: CameraPort,
    pub metrics: Arc<Metrics>,
    pub width: u32,
    pub height: u32,
    pub rate_hz: watch::Receiver<f64>,
    /// The camera's pause state (owned by its control plane).
    pub paused: watch::Receiver<bool>,
    /// Converts the frames that are inferred (and only those) to RGB.
    pub rgb: RgbConverter,
    /// Where the workers look besides the crop (set with the zones).
    pub looks: watch::Receiver<Arc<LookAreas>>,
}

/// Whether an RGB frame has no colour: nearly every sampled pixel has equal
/// channels (an infrared camera at night; a colour scene never does).
pub fn grayscale(rgb: &[u8]) -> bool {
    // About 2,000 pixels, spread over the frame.
    let pixels = rgb.len() / 3;
    let step = (pixels / 2048).max(1);
    let (mut sampled, mut colourful) = (0usize, 0usize);
    for i in (0..pixels).step_by(step) {
        let p = &rgb[i * 3..i * 3 + 3];
        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        sampled += 1;
        if (r - g).abs() + (g - b).abs() > 12 {
            colourful += 1;
        }
    }
    sampled > 0 && colourful * 100 <= sampled
}

impl FrameConsumer {
    pub async fn run(mut self, mut frames: FrameReceiver, cancel: CancellationToken) {
        let mut last_seq = frames.last_seq();
        loop {
            let captured = tokio::select! {
                _ = cancel.cancelled() => break,
                f = frames.next() => match f {
                    Some(f) => f,
                    None => break,
                },
            };
            if self.rate_hz.has_changed().unwrap_or(false) {
                let hz = *self.rate_hz.borrow_and_update();
                self.gate.set_rate(hz);
            }
            // Frames replaced in the slot before this task saw them were skipped
            // by the same rule as gated ones: not due for inference.
            let skipped = captured.seq.saturating_sub(last_seq + 1);
            last_seq = captured.seq;
            let published = self.consider(captured, skipped, frames.paced()).await;
            if frames.paced() && published {
                // A paced file goes exactly as fast as the workers take frames.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.port.wait_taken() => {}
                }
            }
            frames.want_next();
        }
        tracing::info!("frame consumer stopped");
    }

    /// Gate, map, crop and publish one frame; true if it went to the bus. A
    /// paced source is never gated: it decodes the next frame only when a
    /// worker took the last one, so every frame is inferred (two workers take
    /// frames decoded well under a millisecond apart, which a time gate would
    /// drop). The conversion (CPU work) runs off the async runtime.
    async fn consider(&mut self, captured: CapturedFrame, skipped: u64, paced: bool) -> bool {
        if *self.paused.borrow() {
            self.metrics.frames_paused.add(skipped + 1);
            return false;
        }
        if !paced && !self.gate.accept(captured.captured_instant) {
            self.metrics.frames_gated.add(skipped + 1);
            return false;
        }
        self.metrics.frames_gated.add(skipped);
        let mut rgb = std::mem::take(&mut self.rgb);
        let (width, height) = (self.width, self.height);
        let converted = tokio::task::spawn_blocking(move || {
            let frame = Frame::convert(captured, width, height, &mut rgb);
            let gray = frame.as_ref().is_ok_and(|f| grayscale(f.data()));
            (rgb, frame, gray)
        })
        .await;
        let (rgb, frame, gray) = match converted {
            Ok(c) => c,
            Err(e) => {
                // A bug in the conversion: this frame is lost, a fresh converter
                // (taken above) takes the next.
                tracing::error!(error = %e, "frame conversion failed");
                return false;
            }
        };
        self.rgb = rgb;
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                self.metrics.frames_invalid.inc();
                tracing::warn!(error = %e, "frame discarded");
                return false;
            }
        };
        let roi = self.roi.lock().expect("roi attention poisoned").process();
        let job = Job {
            camera: self.port.key(),
            instance_id: self.instance_id.clone(),
            room_id: self.room_id.clone(),
            rate_hz: *self.rate_hz.borrow(),
            trace_id: format!("{}-{}", self.instance_id, frame.seq),
            roi,
            looks: self.looks.borrow().clone(),
            grayscale: gray,
            frame,
        };
        self.port.publish(Arc::new(job));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::grayscale;

    #[test]
    fn grayscale_frames_are_told_from_colour_ones() {
        let gray: Vec<u8> = (0..64 * 48).flat_map(|i| [(i % 251) as u8; 3]).collect();
        assert!(grayscale(&gray));
        // Noise of a few levels between channels is still gray.
        let noisy: Vec<u8> = (0..64 * 48)
            .flat_map(|i| {
                let v = (i % 200) as u8 + 20;
                [v, v + 3, v - 2]
            })
            .collect();
        assert!(grayscale(&noisy));
        // A beige wall and a blue shirt are colour.
        let colour: Vec<u8> = (0..64 * 48)
            .flat_map(|i| {
                if i % 3 == 0 {
                    [205, 200, 185]
                } else {
                    [40, 60, 160]
                }
            })
            .collect();
        assert!(!grayscale(&colour));
    }
}
