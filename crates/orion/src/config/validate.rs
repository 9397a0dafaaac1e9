//! Validation of a parsed [`Config`]: every problem, with its key path and what is
//! allowed.

use std::fmt;

use super::{AutoFocusConfig, Config, ModelEntry, ModelFormat, SourceKind};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `stream.width`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Where the MQTT client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerAddr {
    /// The broker started inside the daemon.
    Embedded,
    External {
        host: String,
        port: u16,
        /// `mqtts://`: TLS implied (as `mqtt.tls.enabled: true`).
        tls: bool,
    },
}

impl BrokerAddr {
    /// Parses `embedded`, `mqtt://host[:port]` (default port 1883) or
    /// `mqtts://host[:port]` (TLS, default port 8883). Error messages never repeat
    /// credentials written into the URL (`mqtt://user:pass@host` is refused with
    /// the password shown as `***`).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "embedded" {
            return Ok(Self::Embedded);
        }
        let shown = super::redact_url(s);
        let (rest, tls, default_port) = if let Some(rest) = s.strip_prefix("mqtt://") {
            (rest, false, 1883)
        } else if let Some(rest) = s.strip_prefix("mqtts://") {
            (rest, true, 8883)
        } else {
            return Err(format!(
                "`{shown}` is not a broker address; allowed: `embedded`, `mqtt://host:port`, or `mqtts://host:port` for TLS"
            ));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err(format!(
                "`{shown}` carries credentials; put the user in mqtt.username and the password in ORION_MQTT_PASSWORD"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("port `{port}` must be a number in 1..=65535"))?;
                (host, port)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!(
                "`{shown}` has no valid host; allowed: `mqtt://host:port`"
            ));
        }
        Ok(Self::External {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn range_f64(&mut self, key: &str, value: f64, min: f64, max: f64, unit: &str) {
        if !value.is_finite() || value < min || value > max {
            self.fail(
                key,
                format!("{value} is out of range; allowed: {min}..={max}{unit}"),
            );
        }
    }

    fn range_u64(&mut self, key: &str, value: u64, min: u64, max: u64, unit: &str) {
        if value < min || value > max {
            self.fail(
                key,
                format!("{value} is out of range; allowed: {min}..={max}{unit}"),
            );
        }
    }

    fn topic_segment(&mut self, key: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok {
            self.fail(
                key,
                format!(
                    "`{value}` is not allowed; use 1 to 64 characters from A-Z a-z 0-9 - _ . (it is part of MQTT topics)"
                ),
            );
        }
    }
}

/// A path for an error message; a relative one names the directory it was
/// resolved against (the daemon's working directory).
pub fn shown_path(p: &std::path::Path) -> String {
    if p.is_absolute() {
        return format!("`{}`", p.display());
    }
    match std::env::current_dir() {
        Ok(dir) => format!("`{}` (relative to {})", p.display(), dir.display()),
        Err(_) => format!(
            "`{}` (relative to an unknown working directory)",
            p.display()
        ),
    }
}

/// Checks that a worker's program can be started: a path (with a `/`) must be an
/// executable file; a bare name must be found on `PATH`.
fn program_problem(program: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::Path::new(program);
        if !p.exists() {
            return Some(format!("program {} not found", shown_path(p)));
        }
        if !executable(p) {
            return Some(format!(
                "program {} is not an executable file",
                shown_path(p)
            ));
        }
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| executable(&dir.join(program))) {
        None
    } else {
        Some(format!("program `{program}` not found on PATH"))
    }
}

fn input_size_ok(n: u32) -> bool {
    n.is_multiple_of(32) && (32..=2048).contains(&n)
}

/// Checks an entry's INT8 variant: an OpenVINO IR beside one model file,
/// and, where INT8 is required, a runtime that runs it and its weights.
fn check_int8(c: &mut Checker, key: &str, entry: &ModelEntry, wants_int8: bool) {
    if let Some(int8) = &entry.int8 {
        if entry.path.is_none() {
            c.fail(
                &format!("{key}.int8"),
                "goes with one model file (`path`), not with `variants`",
            );
        }
        if int8.extension().is_none_or(|e| e != "xml") {
            c.fail(
                &format!("{key}.int8"),
                format!(
                    "{} is not an OpenVINO IR; expected a `.xml` file (with its `.bin` beside it)",
                    shown_path(int8)
                ),
            );
        }
    }
    if wants_int8 && entry.int8.is_none() {
        c.fail(
            &format!("{key}.precision"),
            "is int8 (here or in models.person_detector.precision), but the entry has no `int8` model",
        );
    }
    if wants_int8 && entry.backend == Some(super::Backend::Onnxruntime) {
        c.fail(
            &format!("{key}.precision"),
            "is int8, which runs on OpenVINO only; the backend is onnxruntime (use auto or openvino)",
        );
    }
    if let (true, Some(int8)) = (wants_int8, &entry.int8) {
        let weights = int8.with_extension("bin");
        if int8.is_file() && !weights.is_file() {
            c.fail(
                &format!("{key}.int8"),
                format!(
                    "the weights {} of the INT8 model are not found (beside its .xml)",
                    shown_path(&weights)
                ),
            );
        }
    }
}

fn check_model_entry(c: &mut Checker, key: &str, entry: &ModelEntry) {
    let wants_int8 = entry.precision == Some(super::Precision::Int8);
    match (&entry.path, entry.variants.is_empty()) {
        (None, true) => c.fail(
            key,
            "needs `path` (one model) or `variants` (input size -> model file)",
        ),
        (Some(_), false) => c.fail(key, "has both `path` and `variants`; use one of them"),
        _ => {}
    }
    check_int8(c, key, entry, wants_int8);
    for file in entry.files() {
        // A missing INT8 variant matters only where INT8 is required: with
        // `auto` the worker leaves it out with a warning (an older model
        // folder without it still starts).
        let optional = entry.int8.as_deref() == Some(file) && !wants_int8;
        if !optional && !file.is_file() {
            c.fail(key, format!("model file {} not found", shown_path(file)));
        }
    }
    if entry.path.is_some() {
        match (entry.format, entry.input_size) {
            (ModelFormat::Yolo, None) => c.fail(
                &format!("{key}.input_size"),
                "required for YOLO models; allowed: 320 or 640 (any multiple of 32 in 32..=2048)",
            ),
            (_, Some(n)) if !input_size_ok(n) => c.fail(
                &format!("{key}.input_size"),
                format!("{n} is not allowed; allowed: a multiple of 32 in 32..=2048"),
            ),
            _ => {}
        }
    }
    for size in entry.variants.keys() {
        if !input_size_ok(*size) {
            c.fail(
                &format!("{key}.variants"),
                format!("input size {size} is not allowed; allowed: a multiple of 32 in 32..=2048 (usually 320 and 640)"),
            );
        }
    }
}

/// Checks the thresholds under `key`, day and night: each in 0.01..=1, the
/// continue one at most the starting one, the edge one between the two.
fn check_levels(c: &mut Checker, key: &str, levels: super::Levels) {
    for (name, (start, keep, edge)) in [("", levels.day), ("night.", levels.night)] {
        c.range_f64(&format!("{key}.{name}confidence"), start, 0.01, 1.0, "");
        c.range_f64(
            &format!("{key}.{name}continue_confidence"),
            keep,
            0.01,
            start,
            &format!(" (at most {name}confidence)"),
        );
        c.range_f64(
            &format!("{key}.{name}edge_confidence"),
            edge,
            keep,
            start,
            &format!(" (from {name}continue_confidence to {name}confidence)"),
        );
    }
}

/// Checks `workers.<ty>.env`: variable names, none of the daemon's own.
fn check_worker_env(c: &mut Checker, p: &str, env: &std::collections::BTreeMap<String, String>) {
    for name in env.keys() {
        let key = format!("{p}.env.{name}");
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            c.fail(
                &key,
                "is not a variable name; use A-Z a-z 0-9 _ (not starting with a digit)",
            );
        } else if name.starts_with("ORION_") {
            c.fail(&key, "names starting with ORION_ are reserved for the daemon and never passed to workers");
        }
    }
}

/// Checks one worker pool's section, `workers.<ty>`.
fn check_worker(c: &mut Checker, ty: &str, w: &super::WorkerConfig) {
    let p = format!("workers.{ty}");
    c.topic_segment(&p, ty);
    if w.command.is_empty() || w.command[0].is_empty() {
        c.fail(
            &format!("{p}.command"),
            format!(
                "must name a program, e.g. [\".venv/bin/python\", \"-m\", \"orion_worker.{ty}\"]"
            ),
        );
    } else if let Some(problem) = program_problem(&w.command[0]) {
        c.fail(&format!("{p}.command"), problem);
    }
    c.range_u64(&format!("{p}.count"), w.count.into(), 1, 16, " processes");
    c.range_u64(
        &format!("{p}.parallel"),
        w.parallel.into(),
        0,
        64,
        " frames at once (0: one per core)",
    );
    c.range_f64(
        &format!("{p}.startup_timeout_s"),
        w.startup_timeout_s,
        1.0,
        600.0,
        " seconds",
    );
    c.range_f64(
        &format!("{p}.hang_timeout_floor_s"),
        w.hang_timeout_floor_s,
        1.0,
        3600.0,
        " seconds",
    );
    c.range_u64(
        &format!("{p}.max_message_bytes"),
        w.max_message_bytes as u64,
        1024,
        64 * 1024 * 1024,
        " bytes",
    );

    check_worker_env(c, &p, &w.env);
    c.range_u64(
        &format!("{p}.max_restarts"),
        w.max_restarts.into(),
        1,
        1000,
        " failures",
    );
    c.range_f64(
        &format!("{p}.restart_window_s"),
        w.restart_window_s,
        1.0,
        86_400.0,
        " seconds",
    );
    c.range_f64(
        &format!("{p}.restart_backoff_max_s"),
        w.restart_backoff_max_s,
        1.0,
        3600.0,
        " seconds",
    );
}

impl Config {
    /// Returns every problem found; empty means valid. File paths are checked
    /// relative to the current directory, as the daemon resolves them.
    pub fn validate(&self) -> Vec<Problem> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        c.topic_segment("instance_id", &self.instance_id);
        if self.room_id.is_empty()
            || self.room_id.len() > 128
            || self.room_id.chars().any(char::is_control)
        {
            c.fail("room_id", "must be 1 to 128 printable characters");
        }
        self.check_camera_source(&mut c);
        self.check_stream(&mut c);
        self.check_detector(&mut c);
        self.check_rois_and_workers(&mut c);
        self.check_mqtt(&mut c);
        self.check_rooms(&mut c);
        self.check_presence(&mut c);
        self.check_outbox(&mut c);
        self.check_ui(&mut c);
        self.check_cameras(&mut c);
        c.problems
    }

    /// The camera: its source and reconnection.
    fn check_camera_source(&self, c: &mut Checker) {
        let cam = &self.camera;
        match cam.source {
            SourceKind::File => match &cam.path {
                None => c.fail("camera.path", "required when camera.source is `file`"),
                Some(p) if !p.is_file() => c.fail(
                    "camera.path",
                    format!("video file {} not found", shown_path(p)),
                ),
                Some(_) => {}
            },
            SourceKind::Rtsp => match &cam.rtsp_url {
                None => c.fail("camera.rtsp_url", "required when camera.source is `rtsp`"),
                Some(u) if !(u.starts_with("rtsp://") || u.starts_with("rtsps://")) => c.fail(
                    "camera.rtsp_url",
                    format!(
                        "`{}` must start with rtsp:// or rtsps://",
                        super::redact_url(u)
                    ),
                ),
                Some(_) => {}
            },
            // A missing device is a camera outage, not a config error: the stream
            // reports `device ... not found` and waits for it to be plugged in.
            SourceKind::V4l2 => {
                if !cam.device.is_absolute() {
                    c.fail(
                        "camera.device",
                        format!(
                            "`{}` must be an absolute device path, e.g. /dev/video0",
                            cam.device.display()
                        ),
                    );
                }
            }
            SourceKind::Test => {
                if cam.test_pattern.is_empty() {
                    c.fail(
                        "camera.test_pattern",
                        "must name a videotestsrc pattern, e.g. `ball`",
                    );
                }
            }
        }

        c.range_f64(
            "camera.reconnect_backoff_max_s",
            cam.reconnect_backoff_max_s,
            1.0,
            3600.0,
            " seconds",
        );
        c.range_u64(
            "camera.rtsp_latency_ms",
            cam.rtsp_latency_ms.into(),
            0,
            10_000,
            " ms",
        );
    }

    /// The decoded stream.
    fn check_stream(&self, c: &mut Checker) {
        let s = &self.stream;
        c.range_u64("stream.width", s.width.into(), 64, 3840, " pixels");
        if !s.width.is_multiple_of(4) {
            c.fail(
                "stream.width",
                format!(
                    "{} must be a multiple of 4 (RGB rows without padding)",
                    s.width
                ),
            );
        }
        c.range_u64("stream.height", s.height.into(), 64, 2160, " pixels");
        c.range_u64("stream.fps", s.fps.into(), 1, 120, " frames per second");
        c.range_f64(
            "stream.stall_timeout_s",
            s.stall_timeout_s,
            1.0,
            3600.0,
            " seconds",
        );
        c.range_u64(
            "stream.decoder_threads",
            s.decoder_threads.into(),
            0,
            64,
            " (0 = automatic)",
        );
        c.range_f64(
            "stream.warmup_duration_s",
            s.warmup_duration_s,
            0.0,
            60.0,
            " seconds",
        );
    }

    /// The person detector: its catalog, confidence and rate.
    fn check_detector(&self, c: &mut Checker) {
        let d = &self.models.person_detector;
        if d.catalog.is_empty() {
            c.fail(
                "models.person_detector.catalog",
                "must name at least one model",
            );
        }
        if !d.catalog.contains_key(&d.size) {
            let names: Vec<&str> = d.catalog.keys().map(String::as_str).collect();
            c.fail(
                "models.person_detector.size",
                format!(
                    "`{}` is not in the catalog; allowed: {}",
                    d.size,
                    names.join(", ")
                ),
            );
        }
        for (name, entry) in &d.catalog {
            let key = format!("models.person_detector.catalog.{name}");
            // As the worker runs it: the section's backend and precision
            // where the entry names none.
            check_model_entry(c, &key, &d.resolved(name).unwrap_or_else(|| entry.clone()));
            let own = entry.confidence.is_some()
                || entry.continue_confidence.is_some()
                || entry.edge_confidence.is_some()
                || entry.night.is_some();
            if own {
                check_levels(c, &key, d.levels(Some(entry)));
            }
        }
        check_levels(c, "models.person_detector", d.levels(None));
        c.range_f64(
            "models.person_detector.max_inference_rate_hz",
            d.max_inference_rate_hz,
            0.1,
            1000.0,
            " Hz (above the stream FPS: every frame)",
        );
    }

    /// ROIs, the worker pools and the frame bus.
    fn check_rois_and_workers(&self, c: &mut Checker) {
        c.range_u64(
            "rois.small_roi_threshold_px",
            self.rois.small_roi_threshold_px,
            1,
            3840 * 2160,
            " pixels",
        );

        c.range_u64(
            "rois.min_crop_px",
            self.rois.min_crop_px.into(),
            8,
            1024,
            " pixels",
        );
        c.problems
            .extend(self.rois.auto_focus.problems("rois.auto_focus"));

        if self.workers.0.is_empty() {
            c.fail(
                "workers",
                "must name at least one worker type, e.g. person_detector",
            );
        }
        for (ty, w) in self.workers.iter() {
            check_worker(c, ty, w);
        }

        c.range_f64(
            "framebus.stats_interval_s",
            self.framebus.stats_interval_s,
            1.0,
            3600.0,
            " seconds",
        );
    }

    /// The broker connection, its TLS and the shutdown time.
    fn check_mqtt(&self, c: &mut Checker) {
        let m = &self.mqtt;
        if let Err(e) = BrokerAddr::parse(&m.broker) {
            c.fail("mqtt.broker", e);
        }
        if let Some(id) = &m.client_id {
            c.topic_segment("mqtt.client_id", id);
        }
        c.range_u64("mqtt.keep_alive_s", m.keep_alive_s, 5, 3600, " seconds");
        c.range_u64(
            "mqtt.max_pending_publishes",
            m.max_pending_publishes as u64,
            1,
            10_000,
            " messages",
        );

        c.range_u64(
            "mqtt.max_command_bytes",
            m.max_command_bytes as u64,
            256,
            4 * 1024 * 1024,
            " bytes",
        );
        if m.password.is_some() && m.username.is_none() {
            c.fail(
                "mqtt.password",
                "is set without mqtt.username (or ORION_MQTT_USERNAME)",
            );
        }
        if let Some(ca) = &m.tls.ca_file {
            if !self.tls_enabled() {
                c.fail(
                    "mqtt.tls.ca_file",
                    "is set but mqtt.tls.enabled is false (and mqtt.broker is not mqtts://)",
                );
            }
            if !ca.is_file() {
                c.fail(
                    "mqtt.tls.ca_file",
                    format!("CA file {} not found", shown_path(ca)),
                );
            }
        }
        if m.tls.enabled && m.broker == "embedded" {
            c.fail(
                "mqtt.tls.enabled",
                "the embedded broker does not speak TLS; use an external broker (mqtt://host:port)",
            );
        }

        c.range_f64(
            "shutdown_timeout_s",
            self.shutdown_timeout_s,
            1.0,
            120.0,
            " seconds",
        );
    }

    /// Presence that holds and falls.
    fn check_presence(&self, c: &mut Checker) {
        c.range_f64(
            "presence.unseen_timeout_s",
            self.presence.unseen_timeout_s,
            0.0,
            7.0 * 86400.0,
            " seconds (0: people not detected leave)",
        );
        c.range_f64(
            "presence.ignore_hint_after_s",
            self.presence.ignore_hint_after_s,
            0.0,
            7.0 * 86400.0,
            " seconds (0: never)",
        );
        let f = &self.falls;
        c.range_f64("falls.confirm_s", f.confirm_s, 0.5, 60.0, " seconds");
        c.range_f64(
            "falls.down_after_s",
            f.down_after_s,
            5.0,
            86400.0,
            " seconds",
        );
        c.range_f64(
            "falls.repeat_s",
            f.repeat_s,
            0.0,
            86400.0,
            " seconds (0: never)",
        );
    }

    /// Tracking, occupancy, zones and Home Assistant.
    fn check_rooms(&self, c: &mut Checker) {
        let t = &self.tracking;
        c.range_u64("tracking.min_hits", t.min_hits.into(), 1, 20, " results");
        c.range_f64(
            "tracking.max_missing_s",
            t.max_missing_s,
            0.5,
            600.0,
            " seconds",
        );
        c.range_f64(
            "tracking.max_distance",
            t.max_distance,
            0.1,
            10.0,
            " box sizes",
        );
        c.range_f64(
            "occupancy.empty_after_s",
            self.occupancy.empty_after_s,
            0.0,
            3600.0,
            " seconds",
        );
        c.range_u64(
            "zones.min_frames",
            self.zones.min_frames.into(),
            1,
            100,
            " results",
        );
        c.range_f64("zones.min_s", self.zones.min_s, 0.0, 60.0, " seconds");
        c.range_f64(
            "zones.margin",
            self.zones.margin,
            0.0,
            0.25,
            " (of the frame)",
        );
        if let Err(e) = crate::tracking::zones::validate(&self.zones.regions) {
            c.fail("zones.regions", e);
        }
        let prefix = &self.homeassistant.discovery_prefix;
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 64
            && !prefix.starts_with('/')
            && !prefix.ends_with('/')
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
        if !prefix_ok {
            c.fail(
                "homeassistant.discovery_prefix",
                format!(
                    "`{}` is not allowed; use 1 to 64 characters from A-Z a-z 0-9 - _ / (not at the ends), e.g. homeassistant",
                    prefix.chars().take(64).collect::<String>()
                ),
            );
        }
    }

    /// The outbox (its directory and bounds), and where the present people
    /// are kept.
    fn check_outbox(&self, c: &mut Checker) {
        let o = &self.outbox;
        check_state_dir(c, "outbox.path", &o.path, "/var/lib/orion/outbox");
        check_state_dir(
            c,
            "presence.path",
            &self.presence.path,
            "/var/lib/orion/presence",
        );
        c.range_u64(
            "outbox.max_events",
            o.max_events,
            100,
            10_000_000,
            " events",
        );
        c.range_u64(
            "outbox.max_bytes",
            o.max_bytes,
            1024 * 1024,
            16 * 1024 * 1024 * 1024,
            " bytes",
        );
        c.range_u64(
            "outbox.max_events_per_minute",
            u64::from(o.max_events_per_minute),
            10,
            100_000,
            " events a minute",
        );
    }

    /// The live view and its token.
    fn check_ui(&self, c: &mut Checker) {
        let ui = &self.ui;
        c.range_f64("ui.max_fps", ui.max_fps, 0.5, 30.0, " frames per second");
        if let Some(token) = &ui.token {
            // Characters that need no quoting in an address, a cookie or a
            // header.
            let ok = (16..=256).contains(&token.len())
                && token
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_' | '~'));
            if !ok {
                // The token itself is never shown.
                c.fail(
                    "ui.token",
                    "must be 16 to 256 characters from A-Z a-z 0-9 - . _ ~ (e.g. `openssl rand -hex 16`)",
                );
            }
        } else if ui.enabled && !self.health.listen.ip().is_loopback() {
            c.fail(
                "ui.token",
                format!(
                    "required when the UI is on and health.listen ({}) is not a loopback address: anyone on the network could watch the room and change the sensor; set ui.token or ORION_UI_TOKEN",
                    self.health.listen
                ),
            );
        }
    }

    /// The `cameras` list: its size, unique ids, and each camera's own keys.
    fn check_cameras(&self, c: &mut Checker) {
        if self.resolved.is_empty() {
            return;
        }
        c.problems.extend(self.form_problems.iter().cloned());
        if self.resolved.len() > super::MAX_CAMERAS {
            c.fail(
                "cameras",
                format!(
                    "{} cameras; one daemon serves at most {} (run another daemon for more)",
                    self.resolved.len(),
                    super::MAX_CAMERAS
                ),
            );
        }
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, cam) in self.resolved.iter().enumerate() {
            let id = crate::tracking::zones::identifier(&cam.instance_id);
            if let Some(first) = seen.insert(id.clone(), i) {
                let first_id = &self.resolved[first].instance_id;
                let why = if *first_id == cam.instance_id {
                    format!("`{first_id}` is already used by cameras[{first}]")
                } else {
                    format!(
                        "`{}` and cameras[{first}]'s `{first_id}` are the same identifier `{id}` (case, `-`, `.` and `_` are not told apart, e.g. in Home Assistant)",
                        cam.instance_id
                    )
                };
                c.fail(
                    &format!("cameras[{i}].instance_id"),
                    format!(
                        "{why}; every camera needs its own instance_id (it names its MQTT topics)"
                    ),
                );
            }
            // What a camera entry may set is its own (checked per camera).
            let own = super::CAMERA_KEYS;
            let rate = "models.person_detector.max_inference_rate_hz";
            for p in cam.validate() {
                let key = if p.key == rate {
                    "max_inference_rate_hz".to_string()
                } else if own
                    .iter()
                    .any(|k| p.key == *k || p.key.starts_with(&format!("{k}.")))
                {
                    p.key.clone()
                } else {
                    continue; // shared sections are checked once, at the top level
                };
                c.fail(&format!("cameras[{i}].{key}"), p.message);
            }
        }
    }
}

impl AutoFocusConfig {
    /// Problems with the auto-focus parameters, keyed under `prefix`. Shared by the
    /// config file and the `set_auto_focus_strategy` command.
    pub fn problems(&self, prefix: &str) -> Vec<Problem> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        c.range_f64(&format!("{prefix}.alpha"), self.alpha, 0.01, 1.0, "");
        c.range_f64(
            &format!("{prefix}.velocity_threshold"),
            self.velocity_threshold,
            0.0,
            1.0,
            " (normalized units per result)",
        );
        c.range_f64(
            &format!("{prefix}.velocity_factor"),
            self.velocity_factor,
            0.0,
            100.0,
            "",
        );
        c.range_f64(
            &format!("{prefix}.max_expansion"),
            self.max_expansion,
            0.0,
            1.0,
            " (normalized)",
        );
        c.range_u64(
            &format!("{prefix}.miss_limit"),
            self.miss_limit.into(),
            1,
            1000,
            " results",
        );
        c.problems
    }
}

/// A state directory of the daemon (`key`): named, and a directory or a new
/// one under a directory.
fn check_state_dir(c: &mut Checker, key: &str, path: &std::path::Path, example: &str) {
    if path.as_os_str().is_empty() {
        c.fail(key, format!("must name a directory, e.g. {example}"));
    } else if let Some(not_dir) = path
        .ancestors()
        .find(|a| a.exists())
        .filter(|a| !a.is_dir())
    {
        c.fail(
            key,
            format!(
                "{} is not a directory (a file or a device); it must be a directory, or a new one under a directory",
                shown_path(not_dir)
            ),
        );
    }
}
