//! Stream providers: a camera (RTSP), a video file or a test source, through
//! GStreamer to RGB frames of the configured size.
//!
//! Owns the GStreamer pipeline and its supervisor thread. The appsink callback runs
//! on a GStreamer streaming thread and must never block it: it only wraps the buffer
//! (a reference, no copy), counts it and replaces the newest-frame slot. Pixels are
//! mapped later, and only for frames the rate gate lets through.
//! This module never decides what to do with a frame.

mod pipeline;
pub mod warmup;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::Alerts;
use crate::health::metrics::Metrics;

pub use pipeline::StreamError;

/// A frame as it leaves the appsink: the GStreamer buffer (reference-counted, not
/// copied) and when it was captured.
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// 1-based, counted by the stream since start (across reconnects).
    pub seq: u64,
    pub buffer: gst::Buffer,
    pub captured_at: SystemTime,
    pub captured_instant: Instant,
}

/// A frame accepted for inference: pixels mapped once, shared by every worker.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    pub captured_at: SystemTime,
    pub captured_instant: Instant,
    pixels: gst::MappedBuffer<gst::buffer::Readable>,
}

impl Frame {
    /// Maps a captured frame; fails when the buffer does not hold exactly
    /// `width * height * 3` bytes (caps the pipeline should have enforced).
    pub fn map(captured: CapturedFrame, width: u32, height: u32) -> Result<Arc<Frame>, String> {
        let expected = width as usize * height as usize * 3;
        let pixels = captured
            .buffer
            .into_mapped_buffer_readable()
            .map_err(|_| "buffer cannot be mapped for reading".to_string())?;
        if pixels.len() != expected {
            return Err(format!(
                "buffer has {} bytes, expected {expected} for {width}x{height} RGB",
                pixels.len()
            ));
        }
        Ok(Arc::new(Frame {
            seq: captured.seq,
            width,
            height,
            captured_at: captured.captured_at,
            captured_instant: captured.captured_instant,
            pixels,
        }))
    }

    /// Packed RGB24 pixels, row-major.
    pub fn data(&self) -> &[u8] {
        self.pixels.as_slice()
    }
}

/// Demand-driven delivery for paced sources (a file with `realtime: false`):
/// the appsink callback waits until the consumer asks for the next frame, so the
/// file is decoded exactly as fast as the workers take frames (nothing decoded
/// for nothing). Live sources are never paced: their callback never waits.
#[derive(Debug, Default)]
pub struct Pacer {
    wanted: Mutex<bool>,
    changed: Condvar,
}

impl Pacer {
    fn new() -> Self {
        Self {
            wanted: Mutex::new(true),
            changed: Condvar::new(),
        }
    }

    /// Called on the streaming thread before handing over a frame: waits until a
    /// frame is wanted, at most `max_wait` (then the frame goes anyway, replacing
    /// the unread one), and never past `cancel`.
    fn wait_wanted(&self, cancel: &CancellationToken, max_wait: Duration) {
        let until = Instant::now() + max_wait;
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        while !*wanted && !cancel.is_cancelled() && Instant::now() < until {
            wanted = self
                .changed
                .wait_timeout(wanted, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *wanted = false;
    }

    fn want(&self) {
        *self.wanted.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_one();
    }
}

/// The consumer's side of the stream: the newest-frame slot filled by the appsink
/// (`None` until the first frame), and the pacer for paced sources.
pub struct FrameReceiver {
    rx: watch::Receiver<Option<CapturedFrame>>,
    pacer: Option<Arc<Pacer>>,
}

impl FrameReceiver {
    /// The next (newest) frame; `None` once the stream has stopped for good.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<CapturedFrame> {
        loop {
            self.rx.changed().await.ok()?;
            // Cloning copies a buffer reference, not pixels.
            if let Some(frame) = self.rx.borrow_and_update().clone() {
                return Some(frame);
            }
        }
    }

    /// Sequence number of the newest frame seen so far (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.rx.borrow().as_ref().map_or(0, |f| f.seq)
    }

    /// Whether the source is paced by demand (see [`Pacer`]).
    pub fn paced(&self) -> bool {
        self.pacer.is_some()
    }

    /// Asks a paced source for the next frame; nothing for live sources.
    pub fn want_next(&self) {
        if let Some(p) = &self.pacer {
            p.want();
        }
    }
}

/// The running stream: its supervisor thread and the frame slot.
pub struct Stream {
    thread: Option<std::thread::JoinHandle<()>>,
    cancel: CancellationToken,
}

impl Stream {
    /// Checks that GStreamer and the elements the source needs are available, then
    /// starts the supervisor thread, which builds the pipeline, restarts it after
    /// errors with backoff, and loops file sources.
    pub fn start(
        config: &Config,
        metrics: Arc<Metrics>,
        alerts: Option<Alerts>,
        cancel: CancellationToken,
    ) -> Result<(Stream, FrameReceiver), StreamError> {
        gst::init().map_err(|e| StreamError::Init(e.to_string()))?;
        let settings = pipeline::Settings::from_config(config);
        // Build once up front so that a missing plugin or file fails the start
        // instead of looping in the supervisor.
        pipeline::check(&settings)?;
        let (tx, rx) = watch::channel(None);
        let pacer = settings.paced().then(|| Arc::new(Pacer::new()));
        let thread_cancel = cancel.clone();
        let thread_pacer = pacer.clone();
        let thread = std::thread::Builder::new()
            .name("orion-stream".into())
            .spawn(move || {
                pipeline::supervise(settings, tx, thread_pacer, metrics, alerts, thread_cancel)
            })
            .map_err(|e| StreamError::Init(format!("cannot spawn stream thread: {e}")))?;
        Ok((
            Stream {
                thread: Some(thread),
                cancel,
            },
            FrameReceiver { rx, pacer },
        ))
    }

    /// Stops the pipeline (state `Null`) and waits for the supervisor thread, at
    /// most `timeout`. Returns false if the thread did not finish in time.
    pub async fn stop(mut self, timeout: Duration) -> bool {
        self.cancel.cancel();
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let join = tokio::task::spawn_blocking(move || thread.join());
        matches!(tokio::time::timeout(timeout, join).await, Ok(Ok(Ok(()))))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
