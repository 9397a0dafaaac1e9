//! One camera's live feed for the UI: its newest frame as JPEG, at most
//! `ui.max_fps`, its result messages, and its room (the occupancy with the
//! people seen and unseen, and the recent events), to every viewer.
//!
//! Owns the encoder task of the camera and the viewer count. The task idles on
//! the count (no timer, no work) while nobody watches; while someone does it
//! takes the stream's newest frame at most `max_fps` times a second, converts
//! and encodes it off the async runtime, and keeps only the newest result for
//! viewers to take. In privacy mode (`ui.show_video: false`, or turned on at
//! run time) nothing is encoded: viewers get the frame's sequence number and
//! `privacy: true` only. Frames never touch
//! the disk.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::stream::{CapturedFrame, Frame, FrameReceiver, RgbConverter};

/// JPEG quality of the live view (a set-up view, not a recording).
const QUALITY: u8 = 75;
/// Viewers of one camera at most (each holds a connection and a task).
pub const MAX_VIEWERS: usize = 8;
/// Result messages kept for a slow viewer; beyond it it skips (and the page
/// draws the newer ones).
const RESULTS_KEPT: usize = 16;
/// Recent events a viewer gets with the room.
const EVENTS_KEPT: usize = 12;

/// A frame as viewers get it.
#[derive(Debug)]
pub struct LiveFrame {
    /// The stream's sequence number (results name it as `frame_seq`).
    pub seq: u64,
    /// Base64 JPEG; absent in privacy mode (the frame says `privacy: true`).
    pub jpeg: Option<String>,
}

pub struct LiveFeed {
    pub instance_id: String,
    width: u32,
    height: u32,
    /// Privacy mode, as the camera's control plane sets it.
    privacy: watch::Receiver<bool>,
    max_fps: f64,
    metrics: Arc<Metrics>,
    viewers: watch::Sender<usize>,
    latest: watch::Sender<Option<Arc<LiveFrame>>>,
    results: broadcast::Sender<Arc<str>>,
    /// The room as the page shows it (JSON: `occupancy`, `events` newest
    /// last); a new viewer gets it at once.
    room: watch::Sender<Option<Arc<str>>>,
    /// What `room` is made of.
    room_parts: std::sync::Mutex<RoomParts>,
    /// Cancelled when the camera stops: its viewers' streams end.
    closed: CancellationToken,
}

#[derive(Default)]
struct RoomParts {
    occupancy: serde_json::Value,
    events: std::collections::VecDeque<serde_json::Value>,
}

/// One viewer: counted while it lives.
pub struct Viewer {
    feed: Arc<LiveFeed>,
    pub frames: watch::Receiver<Option<Arc<LiveFrame>>>,
    pub results: broadcast::Receiver<Arc<str>>,
    pub room: watch::Receiver<Option<Arc<str>>>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.feed.viewers.send_modify(|n| *n = n.saturating_sub(1));
        self.feed
            .metrics
            .ui_viewers
            .set(*self.feed.viewers.borrow() as f64);
    }
}

impl LiveFeed {
    pub fn new(
        instance_id: &str,
        width: u32,
        height: u32,
        privacy: watch::Receiver<bool>,
        max_fps: f64,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            instance_id: instance_id.to_string(),
            width,
            height,
            privacy,
            max_fps,
            metrics,
            viewers: watch::channel(0).0,
            latest: watch::channel(None).0,
            results: broadcast::channel(RESULTS_KEPT).0,
            room: watch::channel(None).0,
            room_parts: std::sync::Mutex::new(RoomParts::default()),
            closed: CancellationToken::new(),
        })
    }

    /// Privacy mode is on now: no picture may leave.
    pub fn private(&self) -> bool {
        *self.privacy.borrow()
    }

    /// Viewers now.
    pub fn viewers(&self) -> usize {
        *self.viewers.borrow()
    }

    /// A new viewer (the encoder runs while there is one), unless
    /// [`MAX_VIEWERS`] already watch (checked and counted at once).
    pub fn watch(self: &Arc<Self>) -> Option<Viewer> {
        let admitted = self.viewers.send_if_modified(|n| {
            let room = *n < MAX_VIEWERS;
            if room {
                *n += 1;
            }
            room
        });
        if !admitted {
            return None;
        }
        self.metrics.ui_viewers.set(*self.viewers.borrow() as f64);
        let mut room = self.room.subscribe();
        room.mark_changed();
        Some(Viewer {
            feed: self.clone(),
            frames: self.latest.subscribe(),
            results: self.results.subscribe(),
            room,
        })
    }

    /// The camera stops: every viewer's stream ends.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves once the camera has stopped.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// A result message (JSON) of this camera, for the viewers if any.
    pub fn offer_result(&self, json: &[u8]) {
        if self.results.receiver_count() > 0
            && let Ok(text) = std::str::from_utf8(json)
        {
            let _ = self.results.send(Arc::from(text));
        }
    }

    /// The room changed: a new occupancy (JSON) and/or new events (JSON each).
    pub fn offer_room(&self, occupancy: Option<&[u8]>, events: &[Vec<u8>]) {
        if occupancy.is_none() && events.is_empty() {
            return;
        }
        let mut parts = self.room_parts.lock().expect("live room poisoned");
        if let Some(o) = occupancy.and_then(|o| serde_json::from_slice(o).ok()) {
            parts.occupancy = o;
        }
        for e in events {
            if let Ok(v) = serde_json::from_slice(e) {
                parts.events.push_back(v);
            }
        }
        while parts.events.len() > EVENTS_KEPT {
            parts.events.pop_front();
        }
        let json = serde_json::json!({"occupancy": parts.occupancy, "events": parts.events});
        self.room.send_replace(Some(Arc::from(json.to_string())));
    }

    /// The encoder: idle while nobody watches; stops on `cancel`.
    pub async fn run(self: Arc<Self>, mut frames: FrameReceiver, cancel: CancellationToken) {
        let mut count = self.viewers.subscribe();
        let mut rgb = Some(RgbConverter::default());
        let period = Duration::from_secs_f64(1.0 / self.max_fps);
        let mut last_seq = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = count.wait_for(|n| *n > 0) => if r.is_err() { return },
            }
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while *count.borrow_and_update() > 0 {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                    _ = count.changed() => continue,
                }
                let Some(captured) = frames.current() else {
                    continue;
                };
                if captured.seq == last_seq {
                    continue;
                }
                last_seq = captured.seq;
                let jpeg = if !self.private() {
                    let Some(converter) = rgb.take() else { return };
                    let (w, h) = (self.width, self.height);
                    let done = tokio::task::spawn_blocking(move || {
                        let mut converter = converter;
                        let jpeg = encode(captured, w, h, &mut converter);
                        (converter, jpeg)
                    })
                    .await;
                    let Ok((converter, jpeg)) = done else { return };
                    rgb = Some(converter);
                    match jpeg {
                        Ok(j) => {
                            self.metrics.ui_frames_encoded.inc();
                            Some(j)
                        }
                        Err(e) => {
                            tracing::debug!(camera = %self.instance_id, error = %e, "live frame not encoded");
                            continue;
                        }
                    }
                } else {
                    None
                };
                self.latest.send_replace(Some(Arc::new(LiveFrame {
                    seq: last_seq,
                    jpeg,
                })));
            }
        }
    }
}

/// The frame as base64 JPEG.
fn encode(
    captured: CapturedFrame,
    width: u32,
    height: u32,
    rgb: &mut RgbConverter,
) -> Result<String, String> {
    let frame = Frame::convert(captured, width, height, rgb)?;
    let mut out = Vec::with_capacity(64 * 1024);
    let (w, h) = (
        u16::try_from(width).map_err(|e| e.to_string())?,
        u16::try_from(height).map_err(|e| e.to_string())?,
    );
    jpeg_encoder::Encoder::new(&mut out, QUALITY)
        .encode(frame.data(), w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// One frame as the JSON a viewer receives.
pub fn frame_json(f: &LiveFrame) -> String {
    match &f.jpeg {
        Some(j) => format!("{{\"seq\":{},\"jpeg\":\"{j}\"}}", f.seq),
        None => format!("{{\"seq\":{},\"privacy\":true}}", f.seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_viewers_watch_and_a_leaving_one_makes_room() {
        let metrics = Arc::new(Metrics::for_camera("cam-a"));
        let privacy = watch::channel(false).1;
        let feed = LiveFeed::new("cam-a", 320, 240, privacy, 5.0, metrics.clone());
        let mut viewers: Vec<Viewer> = (0..MAX_VIEWERS)
            .map(|_| feed.watch().expect("room"))
            .collect();
        assert!(feed.watch().is_none(), "one more is refused");
        assert_eq!(feed.viewers(), MAX_VIEWERS);
        assert_eq!(metrics.ui_viewers.get(), MAX_VIEWERS as f64);
        viewers.pop();
        assert_eq!(feed.viewers(), MAX_VIEWERS - 1);
        assert!(feed.watch().is_some(), "room again");
    }
}
