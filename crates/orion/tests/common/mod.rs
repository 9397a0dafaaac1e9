//! Test harness with real parts: a Mosquitto broker on an ephemeral loopback port,
//! the built `oriond` binary, an MQTT subscriber. Every wait is bounded.
#![allow(dead_code)]
// Signals and the user id are syscalls.
#![allow(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Makes the repository root the working directory of this test binary (config
/// paths are relative to it). Every test in a binary that calls this agrees.
pub fn repo_root_cwd() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_current_dir(repo_root()).expect("cd repo root"));
}

pub fn orionctl(broker: &str, instance: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orionctl"));
    c.args(["--broker", broker, "--instance", instance]);
    c
}

pub fn oriond() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oriond"));
    c.current_dir(repo_root());
    c
}

/// A free TCP port on 127.0.0.1 (bound and released), never the same one twice
/// in this test binary: tests run side by side, and a port handed to one of them
/// and not yet bound must not be handed to another.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no free port not handed out before in 1000 tries");
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Mosquitto broker of the test's own, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with(|_| "allow_anonymous true\n".to_string())
    }

    /// Starts a broker whose listener settings come from `extra`, which may write
    /// files (password file, certificates) into the broker's directory. A port
    /// taken meanwhile by someone else (a client's source port) means a new port.
    pub fn start_with(extra: impl Fn(&Path) -> String) -> Self {
        for _ in 0..5 {
            if let Some(broker) = Self::try_start(free_port(), &extra) {
                return broker;
            }
        }
        panic!("mosquitto found no free port in 5 tries");
    }

    /// Starts a broker on a given port (to restart one where a daemon expects it).
    pub fn start_on(port: u16, extra: impl Fn(&Path) -> String) -> Self {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(broker) = Self::try_start(port, &extra) {
                return broker;
            }
            // The old broker's port may still be held for a moment.
            assert!(
                Instant::now() < until,
                "mosquitto could not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A broker listening on `port`, or `None` when it could not bind it. Ready
    /// is when its own log says it runs: a connection to the port could reach
    /// whoever else holds it.
    fn try_start(port: u16, extra: &impl Fn(&Path) -> String) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let mut extra = extra(dir.path());
        // Run as root, mosquitto switches to its own user after loading the config
        // and can then no longer read certificates in our temp dir.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            extra.push_str("user root\n");
        }
        if !extra.contains("persistence true") {
            extra.push_str("persistence false\n");
        }
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{extra}log_dest file {}\n",
                log.display()
            ),
        )
        .expect("write mosquitto.conf");
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (run scripts/setup.sh)");
        let running = wait_until("mosquitto to run or exit", Duration::from_secs(10), || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(" running").then_some(true)
        });
        if !running {
            let _ = child.wait();
            return None;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        wait_until(
            "mosquitto to accept connections",
            Duration::from_secs(10),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok(),
        );
        Some(Mosquitto {
            child,
            port,
            _dir: dir,
        })
    }

    /// A broker that keeps its sessions and queued messages in `state` across
    /// a [`Mosquitto::terminate`] and a start on the same port and state.
    pub fn start_persistent(port: u16, state: &Path) -> Self {
        std::fs::create_dir_all(state).expect("broker state dir");
        Self::start_on(port, |_| {
            format!(
                "allow_anonymous true\npersistence true\npersistence_location {}/\n",
                state.display()
            )
        })
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Mosquitto {
    /// Stops the broker in order (SIGTERM: it saves its persistent state).
    pub fn terminate(mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the broker now (connections drop without a goodbye).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT subscriber delivering `(topic, payload)` on a channel.
pub struct Subscriber {
    pub rx: mpsc::Receiver<(String, Vec<u8>)>,
    client: rumqttc::Client,
}

impl Subscriber {
    pub fn connect(port: u16, filter: &str) -> Self {
        Self::connect_as(port, filter, None)
    }

    pub fn connect_as(port: u16, filter: &str, credentials: Option<(&str, &str)>) -> Self {
        let id = format!("test-sub-{}-{}", std::process::id(), free_port());
        Self::connect_with(
            rumqttc::MqttOptions::new(id, "127.0.0.1", port),
            filter,
            credentials,
        )
    }

    /// A consumer as docs/events.md advises: a persistent session (client id
    /// `id`, clean session off) at QoS 1, so that what is published while it is
    /// away (or the broker restarts with persistence) reaches it afterwards.
    pub fn connect_persistent(port: u16, filter: &str, id: &str) -> Self {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(false);
        Self::connect_with(opts, filter, None)
    }

    fn connect_with(
        mut opts: rumqttc::MqttOptions,
        filter: &str,
        credentials: Option<(&str, &str)>,
    ) -> Self {
        if let Some((user, pass)) = credentials {
            opts.set_credentials(user, pass);
        }
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .expect("subscribe");
        let (tx, rx) = mpsc::channel();
        let (ack_tx, ack_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ack_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("subscription acknowledged");
        Subscriber { rx, client }
    }

    /// The first message for which `pred` returns `Some`, within `timeout`.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&str, &[u8]) -> Option<T>,
    ) -> T {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((topic, payload)) => {
                    if let Some(v) = pred(&topic, &payload) {
                        return v;
                    }
                }
                Err(_) => panic!("no matching MQTT message within {timeout:?}"),
            }
        }
    }
}

impl Subscriber {
    /// Publishes at QoS 1 through this subscriber's connection.
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .expect("queue publish");
    }

    /// Publishes a retained message at QoS 1.
    pub fn client_publish_retained(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload)
            .expect("queue publish");
    }

    /// Sends a control command to `instance` and returns its reply (this
    /// subscriber must be subscribed to `care/health/{instance}`).
    pub fn command(&self, instance: &str, mut command: serde_json::Value) -> serde_json::Value {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = format!(
            "test-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        command["request_id"] = serde_json::Value::String(id.clone());
        self.publish(
            &format!("care/control/{instance}"),
            serde_json::to_vec(&command).unwrap(),
        );
        self.reply_to(&id)
    }

    /// Waits for the reply carrying `request_id`.
    pub fn reply_to(&self, request_id: &str) -> serde_json::Value {
        self.wait_for(Duration::from_secs(30), |_, payload| {
            let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
            (v["request_id"] == request_id).then_some(v)
        })
    }

    /// Drops what has been received so far.
    pub fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// A running `oriond` with its config and log in a temp dir; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub health_port: u16,
}

impl Daemon {
    /// Starts `oriond` on `config` (YAML; `{health}` is replaced by a free
    /// health address).
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let health_port = free_port();
        let config = config.replace("{health}", &format!("127.0.0.1:{health_port}"));
        let config = with_state(&config, dir.path());
        let path = dir.path().join("orion.yaml");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("oriond.log")).expect("log file");
        let child = oriond()
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info,rumqttd=off")
            // The tests' own cache of compiled models and runtime choices
            // (each model is timed once per build tree, not per test, and the
            // user's cache is never touched); a test may give its own.
            .env("ORION_CACHE_DIR", test_cache())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start oriond");
        Daemon {
            child,
            dir,
            health_port,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("oriond.log")).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of an unlabelled metric (or the first series of a labelled one).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics")?;
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The value of one series of `/metrics`, named exactly with its labels
    /// (`orion_ui_viewers{camera="a"}`).
    pub fn series(&self, name_and_labels: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Resident memory of the daemon process in KiB.
    pub fn rss_kb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// `GET path` on the health server: (status code, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.health_port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split(' ').nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n")?.1.to_string();
        Some((code, body))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- oriond log ----\n{}", self.log());
        }
    }
}

/// `config` with `outbox.path` and `presence.path` under `dir` where it sets
/// none (each test daemon has its own state; the defaults are relative to the
/// working directory). Text that is not a YAML mapping is left as it is.
pub fn with_state(config: &str, dir: &Path) -> String {
    let Ok(mut v) = serde_norway::from_str::<serde_norway::Value>(config) else {
        return config.to_string();
    };
    let Some(map) = v.as_mapping_mut() else {
        return config.to_string();
    };
    for section in ["outbox", "presence"] {
        let entry = map
            .entry(section.into())
            .or_insert_with(|| serde_norway::Value::Mapping(Default::default()));
        if let Some(o) = entry.as_mapping_mut()
            && !o.contains_key("path")
        {
            let path = dir.join(section).to_string_lossy().into_owned();
            o.insert("path".into(), path.into());
        }
    }
    serde_norway::to_string(&v).unwrap_or_else(|_| config.to_string())
}

/// Direct children of `pid` (all threads).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Absolute path of the venv Python that runs the shipped worker.
pub fn venv_python() -> String {
    repo_root()
        .join(".venv/bin/python")
        .to_string_lossy()
        .into_owned()
}

/// The base daemon config for tests: the demo video, the real worker and model,
/// the given broker, a free health port; `edit` adjusts it.
pub fn config(instance: &str, broker: &str, edit: impl FnOnce(&mut serde_norway::Value)) -> String {
    let root = repo_root();
    let text = format!(
        r#"
instance_id: {instance}
room_id: test-room
camera: {{ source: file, path: "{video}" }}
stream: {{ width: 640, height: 480, warmup_duration_s: 1 }}
models:
  person_detector:
    size: ssdlite
    catalog:
      ssdlite: {{ path: "{model}", int8: "{int8}", format: ssd }}
    confidence: 0.5
    max_inference_rate_hz: 5
workers:
  person_detector:
    command: ["{python}", "-m", "orion_worker.person_detector"]
mqtt: {{ broker: "{broker}" }}
health: {{ listen: "{{health}}" }}
framebus: {{ stats_interval_s: 2 }}
shutdown_timeout_s: 5
"#,
        video = root.join("assets/walking.mp4").display(),
        model = model_path(),
        int8 = root
            .join("models/ssdlite_mobilenet_v2_coco.int8.xml")
            .display(),
        python = venv_python(),
    );
    let mut v: serde_norway::Value = serde_norway::from_str(&text).expect("base config parses");
    edit(&mut v);
    serde_norway::to_string(&v).expect("config serializes")
}

/// Makes a visit video with `visit_video.py` (`args` after the output path:
/// the seconds of each part, or `--two`) in `dir`; returns its path and the
/// timings the script prints.
pub fn make_video(dir: &Path, args: &[&str]) -> (std::path::PathBuf, serde_json::Value) {
    video_from("visit_video.py", &dir.join("visit.mp4"), args)
}

/// Makes a scene video with `scene_video.py` (`args` after the output path:
/// the scene and its options) in `dir` as `name`; returns its path and the
/// timings the script prints.
pub fn scene_video(
    dir: &Path,
    name: &str,
    args: &[&str],
) -> (std::path::PathBuf, serde_json::Value) {
    video_from("scene_video.py", &dir.join(name), args)
}

/// Runs a video script of the tests (`script`, in this directory) writing
/// `path`; the path and the JSON line it prints.
fn video_from(script: &str, path: &Path, args: &[&str]) -> (std::path::PathBuf, serde_json::Value) {
    let out = Command::new(venv_python())
        .arg(repo_root().join("crates/orion/tests").join(script))
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = serde_json::from_slice(&out.stdout).expect("timings JSON");
    (path.to_path_buf(), info)
}

/// Everything received on `sub` (topic, JSON; `null` for what is not JSON)
/// until `done` says so, bounded by `timeout`.
pub fn collect_until(
    sub: &Subscriber,
    timeout: Duration,
    mut done: impl FnMut(&[(String, serde_json::Value)]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let until = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = until
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("timed out; received: {got:#?}"));
        let Ok((topic, payload)) = sub.rx.recv_timeout(left) else {
            continue;
        };
        let v = serde_json::from_slice(&payload).unwrap_or(serde_json::Value::Null);
        got.push((topic, v));
    }
    got
}

/// Adds `name` to the detector's model catalog: an SSD entry at `path`.
pub fn catalog_entry(c: &mut serde_norway::Value, name: &str, path: &Path) {
    let entry: serde_norway::Value = serde_norway::from_str(&format!(
        "{{ path: {}, format: ssd }}",
        serde_json::to_string(&path.to_string_lossy()).expect("path")
    ))
    .expect("entry");
    set(c, &format!("models.person_detector.catalog.{name}"), entry);
}

/// Runs the scripted test worker (`tests/workers/fake_worker.py`) in `mode` as the
/// person detector, recording its pids in `pidfile`.
pub fn use_fake_worker(c: &mut serde_norway::Value, mode: &str, pidfile: &Path) {
    let script = repo_root().join("crates/orion/tests/workers/fake_worker.py");
    let cmd: Vec<serde_norway::Value> = [
        venv_python(),
        script.to_string_lossy().into_owned(),
        mode.to_string(),
        pidfile.to_string_lossy().into_owned(),
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    set(
        c,
        "workers.person_detector.command",
        serde_norway::Value::Sequence(cmd),
    );
}

/// Sets `path` (dotted) in a YAML mapping, creating mappings on the way.
pub fn set(v: &mut serde_norway::Value, path: &str, value: impl Into<serde_norway::Value>) {
    let mut cur = v;
    let keys: Vec<&str> = path.split('.').collect();
    for key in &keys[..keys.len() - 1] {
        let map = cur.as_mapping_mut().expect("mapping");
        cur = map
            .entry(serde_norway::Value::from(*key))
            .or_insert_with(|| serde_norway::Value::Mapping(Default::default()));
    }
    cur.as_mapping_mut().expect("mapping").insert(
        serde_norway::Value::from(keys[keys.len() - 1]),
        value.into(),
    );
}

/// The runtime a worker names in `backend` -> the option its runtime choice
/// starts with. Which one runs depends on the machine (it is measured).
pub fn runtime_option(backend: &str) -> &'static str {
    match backend {
        "openvino:CPU" => "openvino fp32",
        "openvino:CPU/int8" => "openvino int8",
        "onnxruntime:CPUExecutionProvider" => "onnxruntime fp32",
        other => panic!("unexpected runtime {other:?}"),
    }
}

/// `target/test-cache` of this build tree.
pub fn test_cache() -> std::path::PathBuf {
    repo_root().join("target/test-cache")
}

pub fn model_path() -> String {
    repo_root()
        .join("models/ssdlite_mobilenet_v2_coco.onnx")
        .to_string_lossy()
        .into_owned()
}

/// Runs one browser scenario; returns what it observed.
pub fn browser(scenario: &str, url: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(venv_python())
        .arg(repo_root().join("crates/orion/tests/ui_browser.py"))
        .arg(scenario)
        .arg(url)
        .args(extra)
        .output()
        .expect("run ui_browser.py (scripts/setup.sh installs Playwright and chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser scenario {scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("observations JSON")
}

/// Makes the shipped pose model (MoveNet, with its own thresholds) the
/// camera's person detector.
pub fn use_pose_model(c: &mut serde_norway::Value) {
    let path = repo_root().join("models/movenet_multipose_lightning.onnx");
    let entry: serde_norway::Value = serde_norway::from_str(&format!(
        "{{ path: {}, format: movenet, confidence: 0.35, continue_confidence: 0.2, edge_confidence: 0.25, night: {{ confidence: 0.3, continue_confidence: 0.2, edge_confidence: 0.2 }} }}",
        serde_json::to_string(&path.to_string_lossy()).expect("path")
    ))
    .expect("entry");
    set(c, "models.person_detector.catalog.movenet", entry);
    set(c, "models.person_detector.size", "movenet");
}

/// Parses the RFC 3339 `timestamp` of a message into seconds.
pub fn timestamp_s(v: &serde_json::Value, key: &str) -> f64 {
    let t = v[key].as_str().expect("timestamp string");
    humantime::parse_rfc3339(t)
        .expect("RFC 3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs_f64()
}

/// `[x, y, width, height]` of a detection's `bbox`.
pub fn bbox(b: &serde_json::Value) -> [f64; 4] {
    ["x", "y", "width", "height"]
        .map(|k| b[k].as_f64().unwrap_or_else(|| panic!("bbox.{k} in {b}")))
}

/// A test RTSP camera (tests/rtsp_server.py on Debian's python3-gi and
/// gst-rtsp-server) serving the astronaut image live; killed on drop.
pub struct RtspServer {
    child: Child,
    pub port: u16,
}

impl RtspServer {
    pub fn start(port: u16, args: &[&str]) -> Self {
        let root = repo_root();
        let mut child = Command::new("/usr/bin/python3")
            .arg(root.join("crates/orion/tests/rtsp_server.py"))
            .arg(port.to_string())
            .arg(root.join("workers/python/tests/images/astronaut.png"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the RTSP test server (python3-gi, gir1.2-gst-rtsp-server-1.0)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "ready" => break,
                Ok(_) => {}
                Err(_) => panic!("RTSP test server not ready within 20 s"),
            }
        }
        RtspServer { child, port }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Metric family names of a Prometheus text page, as the reference parser
/// (prometheus_client, in the venv) reads them; panics if it cannot parse it.
pub fn prometheus_families(page: &str) -> Vec<String> {
    use std::io::Write as _;
    let mut child = Command::new(venv_python())
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\nfor m in f(sys.stdin.read()): print(m.name)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Prometheus parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write page");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "metrics do not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Now, as Unix seconds (to compare with message timestamps).
pub fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs_f64()
}

impl Subscriber {
    /// The first inference message for a frame captured after `since` (Unix
    /// seconds) that also satisfies `accept`.
    pub fn result_after(
        &self,
        since: f64,
        timeout: Duration,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_for(timeout, |_, p| {
            let v: serde_json::Value = serde_json::from_slice(p).ok()?;
            (timestamp_s(&v, "captured_at") > since && accept(&v)).then_some(v)
        })
    }
}
