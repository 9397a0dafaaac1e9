//! Stream providers: a camera (RTSP, USB), a video file or a test source, through
//! GStreamer to frames of the configured size, converted to RGB only when inferred.
//!
//! Owns the GStreamer pipeline and its supervisor thread. The appsink callback runs
//! on a GStreamer streaming thread and must never block it: it only wraps the buffer
//! (a reference, no copy), counts it and replaces the newest-frame slot. Frames stay
//! in the decoder's format (I420 for H.264) through scaling; only the frames the
//! rate gate lets through are converted to RGB ([`RgbConverter`]), so a 15 fps
//! camera inferred at 2 Hz pays 2 conversions a second, not 15.
//! This module never decides what to do with a frame.

mod pipeline;
pub mod warmup;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer_video as gst_video;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::Alerts;
use crate::metrics::Metrics;

pub use pipeline::StreamError;

/// A frame as it leaves the appsink: the GStreamer buffer (reference-counted, not
/// copied) and when it was captured.
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// 1-based, counted by the stream since start (across reconnects).
    pub seq: u64,
    pub buffer: gst::Buffer,
    /// The buffer's format and size; `None`: packed RGB of the configured size.
    pub caps: Option<gst::Caps>,
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

    /// Converts (if needed) and maps a captured frame: the decoder's format goes
    /// through `converter` to packed RGB of `width` x `height`; RGB frames are
    /// mapped as they are.
    pub fn convert(
        captured: CapturedFrame,
        width: u32,
        height: u32,
        converter: &mut RgbConverter,
    ) -> Result<Arc<Frame>, String> {
        let Some(caps) = captured.caps.clone() else {
            return Self::map(captured, width, height);
        };
        let Some(rgb) = converter.convert(&caps, captured.buffer.clone(), width, height)? else {
            return Self::map(captured, width, height);
        };
        Self::map(
            CapturedFrame {
                buffer: rgb,
                caps: None,
                ..captured
            },
            width,
            height,
        )
    }

    /// Packed RGB24 pixels, row-major.
    pub fn data(&self) -> &[u8] {
        self.pixels.as_slice()
    }
}

/// Converts frames from the decoder's format to packed RGB with GStreamer's own
/// (SIMD) converter, kept between frames as long as the input format stays.
/// Owned by the frame consumer; used only for frames that are inferred.
#[derive(Default)]
pub struct RgbConverter {
    current: Option<(
        gst::Caps,
        gst_video::VideoInfo,
        gst_video::VideoInfo,
        gst_video::VideoConverter,
    )>,
}

impl RgbConverter {
    /// The RGB buffer for `buffer` of `caps`; `None` when it already is packed RGB
    /// of that size.
    fn convert(
        &mut self,
        caps: &gst::Caps,
        buffer: gst::Buffer,
        width: u32,
        height: u32,
    ) -> Result<Option<gst::Buffer>, String> {
        if self.current.as_ref().is_none_or(|(c, ..)| c != caps) {
            let input = gst_video::VideoInfo::from_caps(caps)
                .map_err(|e| format!("frame caps {caps} are not raw video: {e}"))?;
            let output = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
                .fps(input.fps())
                .interlace_mode(input.interlace_mode())
                .build()
                .map_err(|e| format!("no RGB {width}x{height} layout: {e}"))?;
            let converter = gst_video::VideoConverter::new(&input, &output, None)
                .map_err(|e| format!("cannot convert {caps} to RGB: {e}"))?;
            self.current = Some((caps.clone(), input, output, converter));
        }
        let Some((_, input, output, converter)) = &self.current else {
            return Err("no converter".into());
        };
        if input.format() == gst_video::VideoFormat::Rgb
            && input.width() == width
            && input.height() == height
            && input.stride()[0] as usize == width as usize * 3
        {
            return Ok(None);
        }
        let src = gst_video::VideoFrame::from_buffer_readable(buffer, input)
            .map_err(|_| "frame cannot be mapped for reading".to_string())?;
        let out = gst::Buffer::with_size(output.size())
            .map_err(|e| format!("cannot allocate an RGB frame: {e}"))?;
        let mut dst = gst_video::VideoFrame::from_buffer_writable(out, output)
            .map_err(|_| "RGB frame cannot be mapped for writing".to_string())?;
        converter.frame(&src, &mut dst);
        Ok(Some(dst.into_buffer()))
    }
}

/// Demand-driven delivery for paced sources (a file with `realtime: false`):
/// the appsink callback waits until the consumer asks for the next frame, so the
/// file is decoded exactly as fast as the workers take frames (nothing decoded
/// for nothing, and never a frame replaced unread however slow the workers
/// are, e.g. while they load their model). Live sources are never paced: their
/// callback never waits.
#[derive(Debug, Default)]
pub struct Pacer {
    wanted: Mutex<bool>,
    changed: Condvar,
    /// The streaming thread waits for demand: the source is not stalled.
    holding: AtomicBool,
}

impl Pacer {
    fn new() -> Self {
        Self {
            wanted: Mutex::new(true),
            changed: Condvar::new(),
            holding: AtomicBool::new(false),
        }
    }

    /// Called on the streaming thread before handing over a frame: waits until a
    /// frame is wanted, or until `stop` (the pipeline's run ends: its teardown
    /// needs the streaming thread back).
    fn wait_wanted(&self, stop: &CancellationToken) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        self.holding.store(!*wanted, Ordering::Relaxed);
        while !*wanted && !stop.is_cancelled() {
            wanted = self
                .changed
                .wait_timeout(wanted, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *wanted = false;
    }

    /// Ends the hold when dropped: once the frame the streaming thread held is
    /// out (its arrival counted), silence counts again.
    pub(crate) fn release_on_drop(&self) -> impl Drop + '_ {
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        Release(&self.holding)
    }

    /// Whether the streaming thread is waiting for the consumer to want a
    /// frame (silence then is the consumer's pace, not a stall).
    pub fn holding(&self) -> bool {
        self.holding.load(Ordering::Relaxed)
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

    /// Another reader of the same stream (the live view): it sees the newest
    /// frame and never paces the source.
    pub fn viewer(&self) -> FrameReceiver {
        FrameReceiver {
            rx: self.rx.clone(),
            pacer: None,
        }
    }

    /// The newest frame now, without waiting (cloning copies a reference).
    pub fn current(&mut self) -> Option<CapturedFrame> {
        self.rx.borrow_and_update().clone()
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
        owner: crate::status::StreamOwner,
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
                pipeline::supervise(
                    settings,
                    tx,
                    thread_pacer,
                    metrics,
                    owner,
                    alerts,
                    thread_cancel,
                )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn i420(width: u32, height: u32, (y, u, v): (u8, u8, u8)) -> (gst::Buffer, gst::Caps) {
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
            .fps(gst::Fraction::new(15, 1))
            .build()
            .expect("I420 info");
        let mut data = vec![y; info.size()];
        let (u_at, v_at) = (info.offset()[1], info.offset()[2]);
        let chroma = (width as usize / 2) * (height as usize / 2);
        data[u_at..u_at + chroma].fill(u);
        data[v_at..v_at + chroma].fill(v);
        (gst::Buffer::from_slice(data), info.to_caps().expect("caps"))
    }

    fn captured(buffer: gst::Buffer, caps: Option<gst::Caps>) -> CapturedFrame {
        CapturedFrame {
            seq: 1,
            buffer,
            caps,
            captured_at: SystemTime::now(),
            captured_instant: Instant::now(),
        }
    }

    #[test]
    fn decoder_frames_become_packed_rgb_only_when_converted() {
        gst::init().expect("gstreamer");
        let mut converter = RgbConverter::default();
        // BT.601 limited range: Y 81, U 90, V 240 is pure red.
        let (buffer, caps) = i420(64, 48, (81, 90, 240));
        assert_eq!(
            buffer.size(),
            64 * 48 * 3 / 2,
            "I420 is half the size of RGB"
        );
        let frame = Frame::convert(captured(buffer, Some(caps.clone())), 64, 48, &mut converter)
            .expect("converted");
        assert_eq!(frame.data().len(), 64 * 48 * 3);
        for px in frame.data().chunks(3) {
            assert!(px[0] >= 250 && px[1] <= 5 && px[2] <= 5, "not red: {px:?}");
        }
        // The converter is kept for the next frame of the same format.
        let (buffer, _) = i420(64, 48, (235, 128, 128));
        let frame = Frame::convert(captured(buffer, Some(caps)), 64, 48, &mut converter)
            .expect("converted");
        assert!(frame.data().iter().all(|&c| c >= 250), "white");
        // Packed RGB passes through untouched.
        let rgb = gst::Buffer::from_slice(vec![7u8; 64 * 48 * 3]);
        let frame = Frame::convert(captured(rgb, None), 64, 48, &mut converter).expect("mapped");
        assert!(frame.data().iter().all(|&c| c == 7));
        // Caps that are not raw video are an error, not a panic.
        let bad = gst::Caps::builder("image/jpeg").build();
        let (buffer, _) = i420(64, 48, (0, 0, 0));
        assert!(Frame::convert(captured(buffer, Some(bad)), 64, 48, &mut converter).is_err());
    }
}
