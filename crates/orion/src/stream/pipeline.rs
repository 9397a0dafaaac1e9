//! The camera's GStreamer pipeline (test, file, RTSP, USB source -> decoder ->
//! scale -> appsink) and the supervisor thread that runs it: rebuilds it after
//! a failure or a stall with back-off, loops files, counts input bytes.
//!
//! Owns the pipeline and its bus loop. It never blocks the appsink callback
//! (a file paced to demand waits there, bounded by the run's cancellation),
//! and never lets a camera credential into a GStreamer property that errors
//! quote, a log line or a status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{CapturedFrame, Pacer};
use crate::backoff::Backoff;
use crate::config::{Config, SourceKind, V4l2Format, redact_url};
use crate::health::{Alert, Alerts};
use crate::metrics::Metrics;
use crate::status::{FrameClock, StreamOwner, StreamStatus};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot initialize GStreamer: {0}")]
    Init(String),
    #[error("cannot build the {source_kind} pipeline: {message}")]
    Build {
        source_kind: &'static str,
        message: String,
    },
    #[error("no frame for {0:.1?} while connected (stalled)")]
    Stalled(Duration),
    #[error("device {} not found", .0.display())]
    DeviceMissing(PathBuf),
    #[error("pipeline error from {element}: {message} ({debug})")]
    Pipeline {
        element: String,
        message: String,
        debug: String,
    },
}

const BUS_POLL: Duration = Duration::from_millis(100);

impl StreamError {
    /// What went wrong in a few words, for status replies and health reasons:
    /// `connection refused`, `401 unauthorized`, `timeout`, `404 not found`,
    /// `device /dev/video0 not found`, ... rather than GStreamer's text over
    /// several lines. Never carries credentials (the pipeline never has them in a
    /// location).
    pub fn reason(&self) -> String {
        match self {
            StreamError::Stalled(d) => format!("stalled (no frame for {:.0} s)", d.as_secs_f64()),
            StreamError::DeviceMissing(p) => format!("device {} not found", p.display()),
            StreamError::Init(m) | StreamError::Build { message: m, .. } => one_line(m),
            StreamError::Pipeline { message, debug, .. } => {
                let text = format!("{message} {debug}").to_lowercase();
                let known = [
                    (
                        &["401", "unauthorized", "authenticat"][..],
                        "401 unauthorized",
                    ),
                    (&["403", "forbidden"][..], "403 forbidden"),
                    (&["404", "not found"][..], "404 not found"),
                    (&["connection refused"][..], "connection refused"),
                    (&["failed to connect"][..], CANNOT_CONNECT),
                    (&["timeout", "timed out"][..], "timeout"),
                    (
                        &["could not resolve", "name or service not known", "resolve"][..],
                        "host not found",
                    ),
                    (&["no route", "unreachable"][..], "host unreachable"),
                    (
                        &["connection reset", "connection closed", "broken pipe"][..],
                        "connection lost",
                    ),
                    (&["busy"][..], "device busy"),
                    (&["end of stream"][..], "end of stream"),
                    (
                        &["not-negotiated", "not negotiated", "negotiat"][..],
                        "format not supported",
                    ),
                ];
                known
                    .iter()
                    .find(|(needles, _)| needles.iter().any(|n| text.contains(n)))
                    .map(|(_, words)| words.to_string())
                    .unwrap_or_else(|| one_line(message))
            }
        }
    }
}

/// rtspsrc's words for any failed connection; refined by [`probe_tcp`].
const CANNOT_CONNECT: &str = "cannot connect";

/// Why a TCP connection to the host and port of `url` fails, in a few words:
/// `connection refused`, `timeout`, `host not found`, `host unreachable`; or
/// `cannot connect` when the port answers (the camera refused the session).
fn probe_tcp(url: &str, default_port: u16) -> String {
    use std::net::ToSocketAddrs as _;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().unwrap_or(default_port)),
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(mut addrs) = (host, port).to_socket_addrs() else {
        return "host not found".into();
    };
    let Some(addr) = addrs.next() else {
        return "host not found".into();
    };
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => CANNOT_CONNECT.into(),
        Err(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout".into(),
            std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                "host unreachable".into()
            }
            _ => format!("cannot connect ({})", one_line(&e.to_string())),
        },
    }
}

/// The first line of `text`, cut to 120 characters.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

/// What the supervisor needs to build pipelines, kept apart from runtime state.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: SourceKind,
    pub path: Option<PathBuf>,
    pub rtsp_url: Option<String>,
    pub realtime: bool,
    pub test_pattern: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Connected but no frame this long: stalled, treated like a disconnect.
    pub stall_timeout: Duration,
    /// Consecutive failed runs before giving up; 0 = never.
    pub max_reconnect_attempts: u32,
    pub backoff_cap: Duration,
    pub rtsp_latency_ms: u32,
    pub decoder_threads: u32,
    pub device: PathBuf,
    pub v4l2_format: V4l2Format,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Self {
            source: c.camera.source,
            path: c.camera.path.clone(),
            rtsp_url: c.camera.rtsp_url.clone(),
            realtime: c.camera.realtime,
            test_pattern: c.camera.test_pattern.clone(),
            width: c.stream.width,
            height: c.stream.height,
            fps: c.stream.fps,
            stall_timeout: Duration::from_secs_f64(c.stream.stall_timeout_s),
            max_reconnect_attempts: c.camera.max_reconnect_attempts,
            backoff_cap: Duration::from_secs_f64(c.camera.reconnect_backoff_max_s),
            rtsp_latency_ms: c.camera.rtsp_latency_ms,
            decoder_threads: c.stream.decoder_threads,
            device: c.camera.device.clone(),
            v4l2_format: c.camera.v4l2_format,
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.source {
            SourceKind::Test => "test",
            SourceKind::File => "file",
            SourceKind::Rtsp => "rtsp",
            SourceKind::V4l2 => "v4l2",
        }
    }

    /// A file replayed as fast as it is consumed: delivery is paced by demand.
    pub fn paced(&self) -> bool {
        self.source == SourceKind::File && !self.realtime
    }

    /// A description safe for logs (credentials redacted).
    pub fn describe(&self) -> String {
        match self.source {
            SourceKind::Test => format!("test source `{}`", self.test_pattern),
            SourceKind::File => format!(
                "file {}",
                self.path
                    .as_deref()
                    .unwrap_or_else(|| "?".as_ref())
                    .display()
            ),
            SourceKind::Rtsp => format!(
                "rtsp {}",
                redact_url(self.rtsp_url.as_deref().unwrap_or("?"))
            ),
            SourceKind::V4l2 => format!("v4l2 {}", self.device.display()),
        }
    }
}

fn build_err(settings: &Settings, message: impl std::fmt::Display) -> StreamError {
    StreamError::Build {
        source_kind: settings.kind_name(),
        message: message.to_string(),
    }
}

fn make(settings: &Settings, factory: &str) -> Result<gst::Element, StreamError> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        build_err(
            settings,
            format!("GStreamer element `{factory}` is missing (install its plugin package)"),
        )
    })
}

/// Builds the pipeline: the source for `settings.source`, then the common
/// tail (convert, scale, caps, appsink); returns the pipeline and its appsink.
fn build(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> Result<(gst::Pipeline, gst_app::AppSink), StreamError> {
    let pipeline = gst::Pipeline::with_name("orion-stream");
    // Any raw format: frames stay in the decoder's (I420 for H.264, scaled
    // cheaply in it) and only inferred ones are converted to RGB (RgbConverter).
    let caps = gst::Caps::builder("video/x-raw")
        .field("width", settings.width as i32)
        .field("height", settings.height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let sync = match settings.source {
        SourceKind::File => settings.realtime,
        // Live sources are paced by the camera / test clock already.
        _ => false,
    };
    let appsink = gst_app::AppSink::builder()
        .name("sink")
        .caps(&caps)
        .max_buffers(1)
        .drop(true)
        .sync(sync)
        .build();
    let convert = make(settings, "videoconvert")?;
    let scale = make(settings, "videoscale")?;
    let capsfilter = make(settings, "capsfilter")?;
    capsfilter.set_property("caps", &caps);
    let tail = [&convert, &scale, &capsfilter, appsink.upcast_ref()];
    pipeline
        .add_many(tail)
        .and_then(|_| gst::Element::link_many(tail))
        .map_err(|e| build_err(settings, e))?;
    match settings.source {
        SourceKind::Test => add_test_source(&pipeline, settings, &convert)?,
        SourceKind::V4l2 => add_v4l2_source(&pipeline, settings, metrics, &convert)?,
        SourceKind::File | SourceKind::Rtsp => {
            add_encoded_source(&pipeline, settings, metrics, &convert)?;
        }
    }
    Ok((pipeline, appsink))
}

/// `videotestsrc` at the configured size and rate, linked to `convert`.
fn add_test_source(
    pipeline: &gst::Pipeline,
    settings: &Settings,
    convert: &gst::Element,
) -> Result<(), StreamError> {
    let src = make(settings, "videotestsrc")?;
    src.set_property("is-live", true);
    src.set_property_from_str("pattern", &settings.test_pattern);
    let rate = make(settings, "capsfilter")?;
    rate.set_property(
        "caps",
        gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::I420)
            .framerate(gst::Fraction::new(settings.fps as i32, 1))
            .width(settings.width as i32)
            .height(settings.height as i32)
            .build(),
    );
    pipeline
        .add_many([&src, &rate])
        .and_then(|_| gst::Element::link_many([&src, &rate, convert]))
        .map_err(|e| build_err(settings, e))
}

/// A V4L2 camera asked for MJPEG or raw video, decoded, linked to `convert`.
fn add_v4l2_source(
    pipeline: &gst::Pipeline,
    settings: &Settings,
    metrics: &Arc<Metrics>,
    convert: &gst::Element,
) -> Result<(), StreamError> {
    let src = make(settings, "v4l2src")?;
    src.set_property("device", settings.device.to_string_lossy().as_ref());
    let wanted = make(settings, "capsfilter")?;
    let caps: gst::Caps = v4l2_caps(settings.v4l2_format)
        .parse()
        .map_err(|e| build_err(settings, format!("bad camera caps: {e}")))?;
    wanted.set_property("caps", &caps);
    let decode = make(settings, "decodebin")?;
    pipeline
        .add_many([&src, &wanted, &decode])
        .and_then(|_| gst::Element::link_many([&src, &wanted, &decode]))
        .map_err(|e| build_err(settings, e))?;
    if let Some(sink) = decode.static_pad("sink") {
        count_input_bytes(&sink, metrics.clone());
    }
    link_decoded_video(&decode, convert);
    Ok(())
}

/// A video file or an RTSP camera, decoded, linked to `convert`.
fn add_encoded_source(
    pipeline: &gst::Pipeline,
    settings: &Settings,
    metrics: &Arc<Metrics>,
    convert: &gst::Element,
) -> Result<(), StreamError> {
    let src = if settings.source == SourceKind::File {
        file_source(settings)?
    } else {
        rtsp_source(settings)?
    };
    let decode = make(settings, "decodebin")?;
    // libav decoders thread by frames by default; at camera resolutions
    // one thread costs clearly less CPU (stream.decoder_threads, 0 = auto).
    let threads = settings.decoder_threads;
    if let Some(bin) = decode.downcast_ref::<gst::Bin>() {
        bin.connect_element_added(move |_, element| {
            if element.find_property("max-threads").is_some() {
                element.set_property("max-threads", threads as i32);
            }
        });
    }
    pipeline
        .add_many([&src, &decode])
        .map_err(|e| build_err(settings, e))?;
    if settings.source == SourceKind::File {
        src.link(&decode).map_err(|e| build_err(settings, e))?;
    } else {
        link_rtsp_video(&src, &decode);
    }
    if let Some(sink) = decode.static_pad("sink") {
        count_input_bytes(&sink, metrics.clone());
    }
    link_decoded_video(&decode, convert);
    Ok(())
}

fn file_source(settings: &Settings) -> Result<gst::Element, StreamError> {
    let src = make(settings, "filesrc")?;
    let path = settings
        .path
        .as_ref()
        .ok_or_else(|| build_err(settings, "camera.path is not set"))?;
    src.set_property("location", path.to_string_lossy().as_ref());
    Ok(src)
}

fn rtsp_source(settings: &Settings) -> Result<gst::Element, StreamError> {
    let src = make(settings, "rtspsrc")?;
    let url = settings
        .rtsp_url
        .as_ref()
        .ok_or_else(|| build_err(settings, "camera.rtsp_url is not set"))?;
    // Credentials go in their own properties, so that no GStreamer
    // message (errors quote the location) ever carries them.
    let (location, credentials) = split_credentials(url);
    src.set_property("location", location.as_str());
    if let Some((user, password)) = credentials {
        src.set_property("user-id", user.as_str());
        src.set_property("user-pw", password.as_str());
    }
    src.set_property_from_str("protocols", "tcp");
    src.set_property("latency", settings.rtsp_latency_ms);
    Ok(src)
}

/// rtspsrc adds one pad per media of the session: the video one goes to
/// `decode`.
fn link_rtsp_video(src: &gst::Element, decode: &gst::Element) {
    let decode_weak = decode.downgrade();
    src.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| {
                c.structure(0)
                    .and_then(|s| s.get::<&str>("media").ok().map(|m| m == "video"))
            })
            .unwrap_or(false);
        if is_video
            && let Some(decode) = decode_weak.upgrade()
            && let Some(sink) = decode.static_pad("sink")
            && !sink.is_linked()
            && let Err(e) = pad.link(&sink)
        {
            tracing::error!(error = ?e, "cannot link the camera's video");
        }
    });
}

/// The caps asked of a V4L2 camera, in order of preference (decodebin then
/// decodes MJPEG or passes raw video on).
pub fn v4l2_caps(format: V4l2Format) -> &'static str {
    match format {
        V4l2Format::Auto => "image/jpeg; video/x-raw",
        V4l2Format::Mjpeg => "image/jpeg",
        V4l2Format::Raw => "video/x-raw",
    }
}

/// decodebin exposes its pads once it knows the stream: link the first video pad
/// to `convert`, ignore audio and others.
fn link_decoded_video(decode: &gst::Element, convert: &gst::Element) {
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if !is_video {
            return;
        }
        if let Some(convert) = convert_weak.upgrade()
            && let Some(sink) = convert.static_pad("sink")
            && !sink.is_linked()
            && let Err(e) = pad.link(&sink)
        {
            tracing::error!(error = ?e, "cannot link decoded video");
        }
    });
}

/// Splits `rtsp://user:pass@host/path` into `rtsp://host/path` and the
/// (percent-decoded) user and password.
pub fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let (user, password) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
    let location = format!("{}://{}", &url[..scheme_end], &rest[at + 1..]);
    (
        location,
        Some((percent_decode(user), percent_decode(password))),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` (a GStreamer message, which may quote the location) without the
/// camera URL's query, where some cameras take their credentials.
fn without_query(settings: &Settings, text: String) -> String {
    match settings.rtsp_url.as_deref().and_then(|u| u.split_once('?')) {
        Some((_, query)) if !query.is_empty() => text.replace(query, "***"),
        _ => text,
    }
}

/// Counts the encoded bytes entering the decoder (a probe: no copy, no wait).
fn count_input_bytes(pad: &gst::Pad, metrics: Arc<Metrics>) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    metrics.stream_input_bytes.add(b.size() as u64)
                }
                Some(gst::PadProbeData::BufferList(l)) => metrics
                    .stream_input_bytes
                    .add(l.iter().map(|b| b.size() as u64).sum()),
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// Builds (and drops) a pipeline to surface missing plugins and files at start.
pub fn check(settings: &Settings) -> Result<(), StreamError> {
    if settings.source == SourceKind::File
        && let Some(p) = &settings.path
        && !p.is_file()
    {
        return Err(build_err(
            settings,
            format!("video file `{}` not found", p.display()),
        ));
    }
    let (pipeline, _) = build(settings, &Arc::new(Metrics::default()))?;
    let _ = pipeline.set_state(gst::State::Null);
    Ok(())
}

fn install_sink_callback(
    appsink: &gst_app::AppSink,
    delivered: Arc<FrameClock>,
    tx: watch::Sender<Option<CapturedFrame>>,
    pacer: Option<Arc<Pacer>>,
    metrics: Arc<Metrics>,
    status: Arc<watch::Sender<StreamStatus>>,
    cancel: CancellationToken,
) {
    let mut fps_window = (Instant::now(), 0u32);
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                // Runs on the streaming thread: no copy, and no blocking except
                // for a paced file (a non-live source), which waits for demand.
                if let Some(p) = &pacer {
                    p.wait_wanted(&cancel);
                }
                // Held until the frame is out and counted (then silence is a
                // stall again), whichever way this callback returns.
                let _release = pacer.as_deref().map(Pacer::release_on_drop);
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer_owned() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                // A reference to the negotiated caps (the same object frame after
                // frame), not a copy.
                let caps = sample.caps_owned();
                let seq = delivered.next();
                metrics.frames_captured.inc();
                metrics.frame_bytes.add(buffer.size() as u64);
                status.send_if_modified(|s| {
                    let changed = !s.up || s.stalled;
                    (s.up, s.stalled) = (true, false);
                    changed
                });
                metrics.stream_last_frame.touch();
                fps_window.1 += 1;
                let elapsed = fps_window.0.elapsed();
                if elapsed >= Duration::from_secs(1) {
                    metrics
                        .stream_fps
                        .set(f64::from(fps_window.1) / elapsed.as_secs_f64());
                    fps_window = (Instant::now(), 0);
                }
                tx.send_replace(Some(CapturedFrame {
                    seq,
                    buffer,
                    caps,
                    captured_at: SystemTime::now(),
                    captured_instant: Instant::now(),
                }));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

enum RunEnd {
    Cancelled,
    Failed(StreamError),
}

/// Runs one pipeline until an error or cancellation. A file source loops on EOS.
fn run_once(
    settings: &Settings,
    delivered: &Arc<FrameClock>,
    tx: &watch::Sender<Option<CapturedFrame>>,
    pacer: &Option<Arc<Pacer>>,
    metrics: &Arc<Metrics>,
    status: &Arc<watch::Sender<StreamStatus>>,
    cancel: &CancellationToken,
) -> RunEnd {
    // An unplugged USB camera: say so in words instead of v4l2src's errno text.
    if settings.source == SourceKind::V4l2 && !settings.device.exists() {
        return RunEnd::Failed(StreamError::DeviceMissing(settings.device.clone()));
    }
    let (pipeline, appsink) = match build(settings, metrics) {
        Ok(p) => p,
        Err(e) => return RunEnd::Failed(e),
    };
    // Ends with this run: a paced callback waiting for demand lets go, so
    // that the pipeline can stop.
    let run = cancel.child_token();
    install_sink_callback(
        &appsink,
        delivered.clone(),
        tx.clone(),
        pacer.clone(),
        metrics.clone(),
        status.clone(),
        run.clone(),
    );
    let end = (|| {
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            return RunEnd::Failed(build_err(settings, format!("cannot start: {e}")));
        }
        let Some(bus) = pipeline.bus() else {
            return RunEnd::Failed(build_err(settings, "pipeline has no bus"));
        };
        let started = Instant::now();
        while !cancel.is_cancelled() {
            // Silent since the last frame of this run (or since the start if none
            // came): a camera that keeps the connection open and sends nothing.
            let silent = delivered
                .age()
                .unwrap_or(Duration::MAX)
                .min(started.elapsed());
            let waiting_for_demand = pacer.as_ref().is_some_and(|p| p.holding());
            if silent > settings.stall_timeout && !waiting_for_demand {
                status.send_modify(|s| s.stalled = true);
                metrics.stream_stalls.inc();
                return RunEnd::Failed(StreamError::Stalled(silent));
            }
            let Some(msg) =
                bus.timed_pop(gst::ClockTime::from_nseconds(BUS_POLL.as_nanos() as u64))
            else {
                continue;
            };
            if let Some(end) = on_message(&pipeline, settings, &msg) {
                return end;
            }
        }
        RunEnd::Cancelled
    })();
    run.cancel();
    let _ = pipeline.set_state(gst::State::Null);
    end
}

/// What a bus message means for the run: `Some` when it ends (an error, the
/// end of a live stream); a file's end loops it.
fn on_message(pipeline: &gst::Pipeline, settings: &Settings, msg: &gst::Message) -> Option<RunEnd> {
    match msg.view() {
        gst::MessageView::Eos(_) if settings.source == SourceKind::File => {
            tracing::debug!("end of file, looping");
            let looped = pipeline.seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                gst::ClockTime::ZERO,
            );
            looped
                .err()
                .map(|e| RunEnd::Failed(build_err(settings, format!("cannot loop file: {e}"))))
        }
        gst::MessageView::Eos(_) => Some(RunEnd::Failed(StreamError::Pipeline {
            element: "source".into(),
            message: "end of stream".into(),
            debug: String::new(),
        })),
        gst::MessageView::Error(err) => Some(RunEnd::Failed(StreamError::Pipeline {
            element: err
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_else(|| "?".into()),
            message: without_query(settings, err.error().to_string()),
            debug: without_query(
                settings,
                err.debug().map(|d| d.to_string()).unwrap_or_default(),
            ),
        })),
        _ => None,
    }
}

/// The stream supervisor: runs the pipeline, rebuilds it after failures and stalls
/// with exponential backoff (1 s doubling to `backoff_cap`, reset after a run that
/// delivered frames), until `cancel`, or until `max_reconnect_attempts`
/// consecutive runs failed without a frame (then the stream is `failed` and an
/// alert goes out).
pub fn supervise(
    settings: Settings,
    tx: watch::Sender<Option<CapturedFrame>>,
    pacer: Option<Arc<Pacer>>,
    metrics: Arc<Metrics>,
    owner: StreamOwner,
    alerts: Option<Alerts>,
    cancel: CancellationToken,
) {
    let status = Arc::new(owner.status);
    let delivered = owner.frames;
    let span = tracing::info_span!("stream", source = %settings.describe());
    let _enter = span.enter();
    let mut backoff = Backoff::new(Duration::from_secs(1), settings.backoff_cap);
    let mut attempt: u64 = 0;
    let mut failed_in_a_row: u32 = 0;
    loop {
        if attempt > 0 {
            metrics.stream_reconnects.inc();
        }
        attempt += 1;
        tracing::info!(attempt, "starting pipeline");
        let frames_before = delivered.count();
        let end = run_once(
            &settings, &delivered, &tx, &pacer, &metrics, &status, &cancel,
        );
        status.send_if_modified(|s| std::mem::replace(&mut s.up, false));
        match end {
            RunEnd::Cancelled => break,
            RunEnd::Failed(e) => {
                let mut reason = e.reason();
                // rtspsrc says only "Failed to connect" for a refused, unreachable
                // or silent camera: ask the network which it is.
                if reason == CANNOT_CONNECT
                    && let Some(url) = &settings.rtsp_url
                {
                    reason = probe_tcp(&split_credentials(url).0, 554);
                }
                status.send_modify(|s| (s.last_error, s.retrying) = (Some(reason), true));
                if delivered.count() > frames_before {
                    backoff.reset();
                    failed_in_a_row = 0;
                } else {
                    failed_in_a_row += 1;
                }
                if settings.max_reconnect_attempts > 0
                    && failed_in_a_row >= settings.max_reconnect_attempts
                {
                    status.send_modify(|s| s.failed = true);
                    let message = format!(
                        "stream gave up after {failed_in_a_row} failed connection attempts in a row: {e}"
                    );
                    match &alerts {
                        Some(a) => a.send(Alert {
                            source: "stream",
                            id: settings.describe(),
                            message,
                        }),
                        None => tracing::error!("{message}"),
                    }
                    break;
                }
                tracing::warn!(error = %e, retry_in_s = backoff.peek().as_secs_f64(), "stream failed");
            }
        }
        // Sleep in small steps so that cancellation is seen promptly.
        // Jittered: the cameras behind one recorder do not retry in lock-step.
        let until = Instant::now() + crate::backoff::jittered(backoff.next_delay());
        while Instant::now() < until && !cancel.is_cancelled() {
            std::thread::sleep(BUS_POLL);
        }
        if cancel.is_cancelled() {
            break;
        }
    }
    tracing::info!("stream stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_off_the_url() {
        assert_eq!(
            split_credentials("rtsp://admin:p%40ss@10.0.0.5:554/s1"),
            (
                "rtsp://10.0.0.5:554/s1".to_string(),
                Some(("admin".to_string(), "p@ss".to_string()))
            )
        );
        assert_eq!(
            split_credentials("rtsp://cam/s1"),
            ("rtsp://cam/s1".to_string(), None)
        );
        assert_eq!(
            split_credentials("rtsp://user@cam/a@b"),
            (
                "rtsp://cam/a@b".to_string(),
                Some(("user".to_string(), String::new()))
            )
        );
    }

    #[test]
    fn credentials_in_the_query_are_never_shown() {
        let url = "rtsp://cam:554/stream?user=admin&password=s3cret";
        assert_eq!(redact_url(url), "rtsp://cam:554/stream?***");
        assert_eq!(
            redact_url("rtsp://a:b@cam/s?password=s3cret"),
            "rtsp://***@cam/s?***"
        );
        assert_eq!(redact_url("rtsp://a:b@cam/s"), "rtsp://***@cam/s");
        let mut c = Config::default();
        c.camera.source = SourceKind::Rtsp;
        c.camera.rtsp_url = Some(url.into());
        let settings = Settings::from_config(&c);
        assert!(!settings.describe().contains("s3cret"));
        let said = format!("Could not open resource for reading: {url}");
        let shown = without_query(&settings, said);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.ends_with("/stream?***"), "{shown}");
    }

    fn v4l2_settings(format: V4l2Format) -> Settings {
        let mut c = Config::default();
        c.camera.source = SourceKind::V4l2;
        c.camera.device = PathBuf::from("/dev/video7");
        c.camera.v4l2_format = format;
        c.stream.width = 320;
        c.stream.height = 240;
        Settings::from_config(&c)
    }

    #[test]
    fn v4l2_pipeline_asks_the_device_for_mjpeg_or_raw_and_scales() {
        gst::init().expect("gstreamer");
        let settings = v4l2_settings(V4l2Format::Auto);
        assert_eq!(settings.describe(), "v4l2 /dev/video7");
        let (pipeline, appsink) = build(&settings, &Arc::new(Metrics::default()))
            .expect("pipeline builds without the device");
        let src = pipeline
            .iterate_elements()
            .into_iter()
            .flatten()
            .find(|e| e.factory().is_some_and(|f| f.name() == "v4l2src"))
            .expect("a v4l2src");
        assert_eq!(src.property::<String>("device"), "/dev/video7");
        // The element after the source asks for MJPEG first, then raw.
        let wanted = src
            .static_pad("src")
            .and_then(|p| p.peer())
            .and_then(|p| p.parent_element())
            .expect("source linked");
        let caps = wanted.property::<gst::Caps>("caps");
        let names: Vec<String> = caps.iter().map(|s| s.name().to_string()).collect();
        assert_eq!(names, ["image/jpeg", "video/x-raw"]);
        // Frames leave scaled to stream.width x stream.height, in the decoder's
        // raw format (converted to RGB only when inferred).
        let out = appsink.caps().expect("appsink caps");
        let s = out.structure(0).expect("structure");
        assert_eq!(s.name(), "video/x-raw");
        assert_eq!(s.get::<i32>("width").ok(), Some(320));
        assert_eq!(s.get::<i32>("height").ok(), Some(240));
        assert!(s.get::<&str>("format").is_err(), "any raw format: {s}");
        assert_eq!(v4l2_caps(V4l2Format::Mjpeg), "image/jpeg");
        assert_eq!(v4l2_caps(V4l2Format::Raw), "video/x-raw");
    }

    #[test]
    fn a_missing_device_is_said_in_words() {
        let settings = v4l2_settings(V4l2Format::Raw);
        let (tx, _rx) = watch::channel(None);
        let end = run_once(
            &settings,
            &Arc::new(FrameClock::default()),
            &tx,
            &None,
            &Arc::new(Metrics::default()),
            &Arc::new(watch::channel(StreamStatus::default()).0),
            &CancellationToken::new(),
        );
        match end {
            RunEnd::Failed(e) => {
                assert_eq!(e.to_string(), "device /dev/video7 not found");
                assert_eq!(e.reason(), "device /dev/video7 not found");
            }
            RunEnd::Cancelled => panic!("a missing device must fail the run"),
        }
    }

    #[test]
    fn a_failed_connection_is_classified_by_the_network() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        assert_eq!(
            probe_tcp(&format!("rtsp://127.0.0.1:{port}/cam"), 554),
            "connection refused"
        );
        let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = open.local_addr().expect("addr").port();
        assert_eq!(
            probe_tcp(&format!("rtsp://127.0.0.1:{port}/x"), 554),
            "cannot connect"
        );
    }

    #[test]
    fn gstreamer_errors_become_short_reasons() {
        let e = |message: &str, debug: &str| StreamError::Pipeline {
            element: "/GstPipeline:orion-stream/GstRTSPSrc:rtspsrc0".into(),
            message: message.into(),
            debug: debug.into(),
        };
        assert_eq!(
            e(
                "Could not open resource for reading and writing.",
                "../gst/rtsp/gstrtspsrc.c(8130): gst_rtspsrc_retrieve_sdp ():\nFailed to connect. (Generic error)\nConnection refused"
            )
            .reason(),
            "connection refused"
        );
        assert_eq!(
            e("Unauthorized", "Unauthorized (401)").reason(),
            "401 unauthorized"
        );
        assert_eq!(
            e(
                "Could not read from resource.",
                "Timeout while waiting for server response"
            )
            .reason(),
            "timeout"
        );
        assert_eq!(
            e("Something new\nsecond line", "").reason(),
            "Something new"
        );
        assert_eq!(
            StreamError::Stalled(Duration::from_secs(10)).reason(),
            "stalled (no frame for 10 s)"
        );
    }
}
