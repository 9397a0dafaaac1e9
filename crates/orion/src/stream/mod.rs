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

use std::sync::Arc;
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

/// Newest-frame slot filled by the appsink; `None` until the first frame.
pub type FrameReceiver = watch::Receiver<Option<CapturedFrame>>;

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
        let thread_cancel = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("orion-stream".into())
            .spawn(move || pipeline::supervise(settings, tx, metrics, alerts, thread_cancel))
            .map_err(|e| StreamError::Init(format!("cannot spawn stream thread: {e}")))?;
        Ok((
            Stream {
                thread: Some(thread),
                cancel,
            },
            rx,
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
