//! The control plane end to end: a real Mosquitto on an ephemeral port, the real
//! daemon, worker and model; commands over MQTT and their replies.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::{Value, json};

struct Rig {
    broker: Mosquitto,
    daemon: Daemon,
    replies: Subscriber,
    results: Subscriber,
    instance: String,
}

impl Rig {
    fn start(instance: &str, edit: impl FnOnce(&mut serde_norway::Value)) -> Self {
        let broker = Mosquitto::start();
        let replies = Subscriber::connect(broker.port, &format!("care/health/{instance}"));
        let results = Subscriber::connect(broker.port, &format!("care/inferences/{instance}/#"));
        let daemon = Daemon::start(&common::config(instance, &broker.url(), edit));
        let rig = Rig {
            broker,
            daemon,
            replies,
            results,
            instance: instance.to_string(),
        };
        rig.next_result(Duration::from_secs(60));
        rig
    }

    fn send(&self, command: Value) -> Value {
        self.replies.command(&self.instance, command)
    }

    fn ok(&self, command: Value) -> Value {
        let r = self.send(command.clone());
        assert_eq!(r["success"], true, "{command} -> {r}");
        r
    }

    fn refused(&self, command: Value, fragment: &str) -> Value {
        let r = self.send(command.clone());
        assert_eq!(r["success"], false, "{command} -> {r}");
        let msg = r["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(fragment),
            "{command}: `{msg}` lacks `{fragment}`"
        );
        r
    }

    fn next_result(&self, timeout: Duration) -> Value {
        self.results
            .wait_for(timeout, |_, p| serde_json::from_slice::<Value>(p).ok())
    }

    /// A result for a frame captured after `since` (Unix seconds).
    fn result_captured_after(&self, since: f64, timeout: Duration) -> Value {
        self.results.result_after(since, timeout, |_| true)
    }
}

#[test]
fn every_command_answers_and_bad_messages_change_nothing() {
    let rig = Rig::start("ctl-cmds", |_| {});

    // get_status
    let r = rig.ok(json!({"command": "get_status"}));
    assert_eq!(r["type"], "status");
    assert_eq!(r["instance_id"], "ctl-cmds");
    let d = &r["data"];
    assert_eq!(d["state"], "running");
    assert_eq!(d["workers"][0]["up"], true);
    // get_status names the runtime, why (every option's measured time) and
    // how many frames the one worker works on at once (one per core).
    let worker = &d["workers"][0];
    let backend = worker["backend"].as_str().expect("backend named");
    let choice = worker["runtime_choice"]
        .as_str()
        .expect("runtime choice named");
    assert!(
        choice.starts_with(&format!("{}: fastest of ", common::runtime_option(backend))),
        "{choice}"
    );
    for option in ["openvino fp32", "onnxruntime fp32"] {
        assert!(
            choice.contains(&format!("{option} ")),
            "{option} timed: {choice}"
        );
    }
    // The INT8 variant is timed exactly when its accuracy check passed.
    let record: Value = serde_json::from_slice(
        &std::fs::read(
            common::repo_root().join("models/ssdlite_mobilenet_v2_coco.int8.check.json"),
        )
        .expect("the INT8 check record"),
    )
    .expect("JSON");
    assert_eq!(
        choice.contains("openvino int8 "),
        record["passed"] == true,
        "{choice}"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(worker["parallel"], cores, "{worker}");
    assert_eq!(d["stream"]["width"], 640);
    assert_eq!(d["inference"]["model"], "ssdlite");
    assert_eq!(d["emitter"]["connected"], true);
    assert_eq!(d["config"]["instance_id"], "ctl-cmds");

    // pause / resume: capture continues, inference stops.
    let ack = rig.ok(json!({"command": "pause_inference"}));
    assert_eq!(ack["type"], "command_ack");
    let paused_at = common::timestamp_s(&ack, "timestamp");
    rig.refused(json!({"command": "pause_inference"}), "already paused");
    let frames_before = rig.ok(json!({"command": "get_status"}))["data"]["stream"]["frames_paused"]
        .as_u64()
        .unwrap();
    common::wait_until(
        "frames to be skipped while paused",
        Duration::from_secs(10),
        || {
            let s = rig.ok(json!({"command": "get_status"}));
            (s["data"]["stream"]["frames_paused"].as_u64().unwrap() > frames_before + 10)
                .then_some(())
        },
    );
    while let Ok((_, p)) = rig.results.rx.try_recv() {
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert!(
            // The reply's timestamp has millisecond precision.
            common::timestamp_s(&v, "captured_at") <= paused_at + 0.001,
            "a frame captured while paused was inferred: {v}"
        );
    }
    rig.ok(json!({"command": "resume_inference"}));
    rig.refused(json!({"command": "resume_inference"}), "not paused");
    rig.result_captured_after(common::now_s() - 0.5, Duration::from_secs(10));

    // Rate.
    let r = rig.ok(json!({"command": "set_inference_rate", "params": {"rate_hz": 3}}));
    assert_eq!(r["data"]["effective_hz"], 3.0);
    rig.refused(
        json!({"command": "set_inference_rate", "params": {"rate_hz": 0.05}}),
        "allowed: 0.1..=30",
    );
    rig.refused(
        json!({"command": "set_inference_rate", "params": {"rate_hz": "fast"}}),
        "must be a number",
    );
    rig.refused(
        json!({"command": "set_inference_rate"}),
        "missing params.rate_hz",
    );

    // Model size: unknown and unchanged.
    rig.refused(
        json!({"command": "set_model_size", "params": {"size": "huge"}}),
        "allowed: ssdlite",
    );
    rig.ok(json!({"command": "set_model_size", "params": {"size": "ssdlite"}}));

    // ROIs: set, get, invalid (unchanged), clear.
    let roi = json!({"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.6, "name": "bed"});
    rig.ok(json!({"command": "set_attention_rois", "params": {"rois": [roi]}}));
    rig.refused(
        json!({"command": "set_attention_rois", "params": {"rois": [{"x": 0.8, "y": 0, "width": 0.5, "height": 0.5}]}}),
        "x + width must be <= 1",
    );
    rig.refused(
        json!({"command": "set_attention_rois", "params": {"rois": "all"}}),
        "must be an array",
    );
    let r = rig.ok(json!({"command": "get_attention_rois"}));
    assert_eq!(
        r["data"]["rois"],
        json!([roi]),
        "a refused command changed nothing"
    );
    rig.ok(json!({"command": "clear_attention_rois"}));
    assert_eq!(
        rig.ok(json!({"command": "get_attention_rois"}))["data"]["rois"],
        json!([])
    );

    // Auto-focus.
    let r = rig.ok(json!({"command": "get_auto_focus_strategy"}));
    assert_eq!(
        (
            r["data"]["strategy"].as_str(),
            r["data"]["enabled"].as_bool()
        ),
        (Some("smoothing"), Some(false))
    );
    let r = rig.ok(json!({"command": "set_auto_focus_strategy", "params": {"strategy": "velocity", "velocity_factor": 3}}));
    assert_eq!(r["data"]["velocity_factor"], 3.0);
    rig.refused(json!({"command": "set_auto_focus_strategy", "params": {"strategy": "smoothing", "alpha": 2}}), "params.alpha: 2 is out of range; allowed: 0.01..=1");
    rig.refused(
        json!({"command": "set_auto_focus_strategy", "params": {"strategy": "zoom"}}),
        "allowed: simple, smoothing, velocity",
    );
    assert_eq!(
        rig.ok(json!({"command": "get_auto_focus_strategy"}))["data"]["strategy"],
        "velocity"
    );
    rig.ok(json!({"command": "enable_auto_focus"}));
    let since = common::now_s();
    rig.result_captured_after(since, Duration::from_secs(10));
    let stats = rig.ok(json!({"command": "get_auto_focus_stats"}));
    assert!(stats["data"]["observations"].as_u64() >= Some(1), "{stats}");
    rig.ok(json!({"command": "clear_auto_focus_history"}));
    rig.ok(json!({"command": "disable_auto_focus"}));
    assert_eq!(
        rig.ok(json!({"command": "get_auto_focus_stats"}))["data"]["enabled"],
        false
    );

    // Garbage: every message still gets one reply, and nothing changes.
    rig.refused(
        json!({"command": "launch_rockets"}),
        "unknown command `launch_rockets`; allowed: get_status",
    );
    rig.refused(json!({"command": 7}), "`command` must be a string");
    rig.refused(
        json!({"command": "get_status", "params": [1]}),
        "`params` must be an object",
    );
    let topic = format!("care/control/{}", rig.instance);
    for (payload, fragment) in [
        (b"{not json".to_vec(), "invalid JSON"),
        (
            vec![b'x'; 1024 * 1024],
            "payload of 1048576 bytes exceeds the limit of 65536 bytes",
        ),
    ] {
        rig.replies.publish(&topic, payload);
        let r = rig.replies.wait_for(Duration::from_secs(30), |_, p| {
            let v: Value = serde_json::from_slice(p).ok()?;
            v["message"].as_str()?.contains(fragment).then_some(v)
        });
        assert_eq!(r["success"], false);
        assert!(r.get("request_id").is_none());
    }
    let status = rig.ok(json!({"command": "get_status"}));
    assert_eq!(status["data"]["state"], "running");
    assert_eq!(
        status["data"]["inference"]["rate_hz"], 3.0,
        "the last good rate stands"
    );
    // Still detecting and publishing after all of that.
    let r = rig.result_captured_after(common::now_s(), Duration::from_secs(10));
    assert!(r["data"]["count"].as_u64() >= Some(1), "{r}");
}

#[test]
fn rate_change_shows_in_result_timestamps_within_one_interval() {
    let rig = Rig::start("ctl-rate", |c| {
        common::set(c, "models.person_detector.max_inference_rate_hz", 1)
    });
    // At 1 Hz, results are a second apart.
    let a = rig.next_result(Duration::from_secs(10));
    let b = rig.next_result(Duration::from_secs(10));
    let gap = common::timestamp_s(&b, "captured_at") - common::timestamp_s(&a, "captured_at");
    assert!((0.8..1.3).contains(&gap), "1 Hz gap {gap}");
    let ack = rig.ok(json!({"command": "set_inference_rate", "params": {"rate_hz": 10}}));
    let t = common::timestamp_s(&ack, "timestamp");
    // Within one old interval (1 s) of the change, results come at 10 Hz.
    let mut times = Vec::new();
    while times.len() < 6 {
        let r = rig.result_captured_after(t, Duration::from_secs(5));
        times.push(common::timestamp_s(&r, "captured_at"));
    }
    assert!(
        times[2] - t < 1.0,
        "third result {:.3} s after the change",
        times[2] - t
    );
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!(mean < 0.2, "mean gap {mean:.3} s at 10 Hz: {gaps:?}");
}

fn make_yolo(dir: &std::path::Path, size: u32) -> String {
    let path = dir.join(format!("yolo{size}.onnx"));
    let status = std::process::Command::new(common::venv_python())
        .arg(common::repo_root().join("crates/orion/tests/workers/make_yolo.py"))
        .arg(&path)
        .arg(size.to_string())
        .status()
        .expect("run make_yolo.py");
    assert!(status.success());
    path.to_string_lossy().into_owned()
}

#[test]
fn roi_area_picks_the_model_variant_and_boxes_map_to_the_full_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (m320, m640) = (make_yolo(dir.path(), 320), make_yolo(dir.path(), 640));
    let rig = Rig::start("ctl-roi", |c| {
        let mut variants = serde_norway::Mapping::new();
        variants.insert(320.into(), m320.clone().into());
        variants.insert(640.into(), m640.clone().into());
        let mut entry = serde_norway::Mapping::new();
        entry.insert("format".into(), "yolo".into());
        entry.insert("variants".into(), serde_norway::Value::Mapping(variants));
        common::set(
            c,
            "models.person_detector.catalog.n",
            serde_norway::Value::Mapping(entry),
        );
        common::set(c, "models.person_detector.size", "n");
    });
    let bbox = |r: &Value| common::bbox(&r["data"]["detections"][0]["bbox"]);
    let close = |a: [f64; 4], b: [f64; 4]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1.0);

    // Full frame (640x480 >= 320*320 px): the 640 variant. Its box (160x320 in
    // the middle of the letterboxed input) maps to x 240..400, y 80..400.
    let r = rig.result_captured_after(common::now_s(), Duration::from_secs(10));
    assert_eq!(
        (
            r["roi"]["source"].as_str(),
            r["roi"]["target_size"].as_u64()
        ),
        (Some("full_frame"), Some(640))
    );
    // Each variant runs on the runtime measured fastest for it.
    let model = |r: &Value| {
        common::runtime_option(r["model"]["backend"].as_str().expect("backend named"));
        (r["model"]["name"].clone(), r["model"]["input_size"].clone())
    };
    assert_eq!(model(&r), (json!("n"), json!(640)), "{r}");
    assert!(close(bbox(&r), [240.0, 80.0, 160.0, 320.0]), "{r}");

    // A small ROI (320x240 px): the 320 variant, and the box comes back in
    // full-frame pixels inside the ROI: crop x 160..480, y 120..360; the model's
    // box (80x160 in the middle of 320x320, 40 px bars) -> crop x 120..200,
    // y 40..200 -> full frame x 280..360, y 160..320.
    rig.ok(json!({"command": "set_attention_rois", "params": {"rois": [{"x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5}]}}));
    let r = rig.result_captured_after(common::now_s(), Duration::from_secs(10));
    assert_eq!(
        (
            r["roi"]["source"].as_str(),
            r["roi"]["target_size"].as_u64()
        ),
        (Some("external"), Some(320))
    );
    assert_eq!(
        r["roi"]["crop"],
        json!({"x": 160, "y": 120, "width": 320, "height": 240})
    );
    assert_eq!(model(&r), (json!("n"), json!(320)), "{r}");
    assert!(close(bbox(&r), [280.0, 160.0, 80.0, 160.0]), "{r}");

    // A large ROI goes back to the 640 variant.
    rig.ok(json!({"command": "set_attention_rois", "params": {"rois": [{"x": 0.0, "y": 0.0, "width": 1.0, "height": 0.9}]}}));
    let r = rig.result_captured_after(common::now_s(), Duration::from_secs(10));
    assert_eq!(
        (
            r["roi"]["target_size"].as_u64(),
            r["model"]["input_size"].as_u64()
        ),
        (Some(640), Some(640))
    );
}

#[test]
fn real_detections_inside_an_external_roi_are_in_full_frame_pixels() {
    let rig = Rig::start("ctl-roi-ssd", |_| {});
    // The demo person stands on the floor; a ROI over the lower 90 % of the frame.
    rig.ok(json!({"command": "set_attention_rois", "params": {"rois": [{"x": 0.0, "y": 0.1, "width": 1.0, "height": 0.9}]}}));
    let r = rig.results.wait_for(Duration::from_secs(20), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["roi"]["source"] == "external" && v["data"]["count"].as_u64() >= Some(1)).then_some(v)
    });
    let crop = &r["roi"]["crop"];
    assert_eq!(crop, &json!({"x": 0, "y": 48, "width": 640, "height": 432}));
    for d in r["data"]["detections"].as_array().unwrap() {
        let b = &d["bbox"];
        let [x, y, w, h] = common::bbox(b);
        assert!(
            y >= 48.0 && x >= 0.0 && x + w <= 640.0 && y + h <= 480.0,
            "box outside the ROI: {b}"
        );
        assert!(h > 150.0, "a person-sized box: {b}");
    }
}

#[test]
fn model_swap_keeps_results_flowing_and_a_failed_swap_keeps_the_old_model() {
    let dir = tempfile::tempdir().unwrap();
    let doomed = dir.path().join("doomed.onnx");
    std::fs::copy(common::model_path(), &doomed).unwrap();
    let doomed_path = doomed.to_string_lossy().into_owned();
    let rig = Rig::start("ctl-swap", |c| {
        for (name, path) in [
            ("copy", common::model_path()),
            ("doomed", doomed_path.clone()),
        ] {
            let mut entry = serde_norway::Mapping::new();
            entry.insert("path".into(), path.into());
            entry.insert("format".into(), "ssd".into());
            common::set(
                c,
                &format!("models.person_detector.catalog.{name}"),
                serde_norway::Value::Mapping(entry),
            );
        }
        common::set(c, "models.person_detector.max_inference_rate_hz", 4);
    });
    let interval: f64 = 0.25;
    rig.results.drain();
    // The machine's own pace first: on a loaded machine results are further
    // apart than the interval with or without a swap.
    let steady: Vec<f64> = (0..16)
        .map(|_| common::timestamp_s(&rig.next_result(Duration::from_secs(5)), "timestamp"))
        .collect();
    let steady_gap = steady.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    // Swap while frames flow; record every result's publish time meanwhile.
    let started = Instant::now();
    let ack = rig.send(json!({"command": "set_model_size", "params": {"size": "copy"}}));
    assert_eq!(ack["success"], true, "{ack}");
    let mut times = Vec::new();
    let mut names = Vec::new();
    while times.len() < 8 || started.elapsed() < Duration::from_secs(2) {
        let r = rig.next_result(Duration::from_secs(5));
        times.push(common::timestamp_s(&r, "timestamp"));
        names.push(r["model"]["name"].as_str().unwrap().to_string());
        assert!(times.len() < 100);
    }
    assert_eq!(names.last().map(String::as_str), Some("copy"), "{names:?}");
    // No result is missing around the swap: no gap beyond two intervals, or
    // one interval more than the steady flow's longest on a loaded machine (a
    // worker that stopped for the model load leaves a gap of the whole load).
    let max_gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let allowed = (2.0 * interval + 0.05).max(steady_gap + interval);
    assert!(
        max_gap <= allowed,
        "gap of {max_gap:.3} s around the swap (steady: {steady_gap:.3} s): {times:?}"
    );

    // The model file vanishes: the swap is refused, the old model keeps working.
    std::fs::remove_file(&doomed).unwrap();
    let r = rig.refused(
        json!({"command": "set_model_size", "params": {"size": "doomed"}}),
        "not found",
    );
    assert!(
        r["message"].as_str().unwrap().contains("model copy kept"),
        "{r}"
    );
    let after = rig.result_captured_after(common::now_s(), Duration::from_secs(5));
    assert_eq!(after["model"]["name"], "copy");
    let status = rig.ok(json!({"command": "get_status"}));
    assert_eq!(
        status["data"]["inference"]["model"], "copy",
        "config rolled back"
    );
    assert_eq!(
        status["data"]["config"]["models"]["person_detector"]["size"],
        "copy"
    );
}

#[test]
fn sigkill_makes_the_broker_publish_offline_and_leaves_no_worker() {
    let broker = Mosquitto::start();
    let status = Subscriber::connect(broker.port, "care/status/ctl-will");
    let daemon = Daemon::start(&common::config("ctl-will", &broker.url(), |_| {}));
    let online = status.wait_for(Duration::from_secs(60), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["state"] == "online" && v["inference"] == "running").then_some(v)
    });
    assert_eq!(online["camera"], "streaming");
    // The worker processes start on their supervisors' tasks, right after.
    let workers = common::wait_until("a worker process", Duration::from_secs(10), || {
        let w = common::children_of(daemon.pid());
        (!w.is_empty()).then_some(w)
    });
    daemon.signal(libc::SIGKILL);
    let offline = status.wait_for(Duration::from_secs(10), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["state"] == "offline").then_some(v)
    });
    assert_eq!(offline["reason"], "connection_lost");
    for pid in workers {
        common::wait_until(
            "worker gone after the daemon was killed",
            Duration::from_secs(5),
            || (!common::alive(pid)).then_some(()),
        );
    }
    // The will is retained: a dashboard that connects later still sees it.
    let late = Subscriber::connect(broker.port, "care/status/ctl-will");
    let v = late.wait_for(Duration::from_secs(10), |_, p| {
        serde_json::from_slice::<Value>(p).ok()
    });
    assert_eq!(v["state"], "offline");
}

#[test]
fn orionctl_against_a_running_daemon() {
    let rig = Rig::start("ctl-cli", |_| {});
    let url = rig.broker.url();
    let ctl = |args: &[&str]| {
        let out = common::orionctl(&url, "ctl-cli")
            .args(args)
            .output()
            .expect("run orionctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = ctl(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("instance   ctl-cli (room test-room)") && out.contains("health     healthy"),
        "{out}"
    );
    // Which runtime runs the model and why, under its worker.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        out.contains(&format!(
            "           {cores} frames at once; openvino fp32: "
        )) || out.contains(&format!(
            "           {cores} frames at once; onnxruntime fp32: "
        )),
        "{out}"
    );
    let (code, out, _) = ctl(&["--json", "status"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["data"]["instance_id"], "ctl-cli");

    // `watch` piped into a reader that goes away (`| head -1`) ends, without a
    // panic.
    let mut watch = common::orionctl(&url, "ctl-cli")
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run orionctl watch");
    {
        use std::io::BufRead as _;
        let stdout = watch.stdout.take().expect("stdout");
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("a line");
        assert!(!first.is_empty());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = watch.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "watch goes on with nobody reading"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "no panic on a closed pipe");

    assert_eq!(ctl(&["pause"]).0, 0);
    let (code, out, _) = ctl(&["pause"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "error: inference is already paused\n")
    );
    assert_eq!(ctl(&["resume"]).0, 0);
    let (code, out, _) = ctl(&["rate", "99"]);
    assert_eq!(code, 1);
    assert!(out.contains("out of range; allowed: 0.1..=30"), "{out}");
    let (code, _, err) = ctl(&["rois", "set", "0.1,0.1"]);
    assert_eq!(code, 2, "usage error before sending: {err}");
    let (code, out, _) = ctl(&["rois", "set", "0.1,0.1,0.5,0.5"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = ctl(&["rois", "get"]);
    assert!(
        code == 0 && out.contains("x=0.10 y=0.10 width=0.50 height=0.50"),
        "{out}"
    );
    let (code, out, _) = ctl(&["autofocus", "strategy", "smoothing", "alpha=0.6"]);
    assert!(code == 0 && out.contains("alpha: 0.60"), "{out}");
    let (code, out, _) = ctl(&["model", "xl"]);
    assert!(
        code == 1 && out.contains("unknown model size `xl`"),
        "{out}"
    );

    let (code, out, _) = ctl(&["watch", "--count", "2"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");

    let out = common::orionctl(&url, "nobody-here")
        .args(["--timeout", "1", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reply from instance `nobody-here`"));
    // With time to look, the instances that are there are named, long
    // before the timeout.
    let asked = std::time::Instant::now();
    let out = common::orionctl(&url, "nobody-here")
        .args(["--timeout", "30", "status"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("no instance `nobody-here` on the broker")
            && said.contains("ctl-cli (online)"),
        "{said}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );

    // shutdown: acknowledged, then the daemon exits cleanly and says offline.
    let status = Subscriber::connect(rig.broker.port, "care/status/ctl-cli");
    let (code, out, _) = ctl(&["shutdown"]);
    assert_eq!((code, out.as_str()), (0, "ok: shutting down\n"));
    let mut daemon = rig.daemon;
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("daemon exits after shutdown");
    assert!(exit.success(), "{exit:?}");
    // On the way down presence says nothing but offline: no passing
    // `reconnecting` or `starting` (the retained online message first).
    let mut said = Vec::new();
    status.wait_for(Duration::from_secs(10), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        said.push(format!("{} {} {}", v["state"], v["camera"], v["inference"]));
        (v["state"] == "offline" && v["reason"] == "shutdown").then_some(())
    });
    assert!(
        said.len() >= 2,
        "the online message, then offline: {said:?}"
    );
    assert!(
        said[..said.len() - 1]
            .iter()
            .all(|s| s == "\"online\" \"streaming\" \"running\""),
        "{said:?}"
    );
}

#[test]
fn a_retained_command_is_refused_not_replayed_at_start() {
    let broker = Mosquitto::start();
    // Somebody published `shutdown` with the retain flag: at every start the broker
    // would hand it to the daemon again.
    let setup = Subscriber::connect(broker.port, "care/health/ctl-retained");
    setup.client_publish_retained(
        "care/control/ctl-retained",
        br#"{"command":"shutdown","request_id":"old"}"#.to_vec(),
    );
    let mut daemon = Daemon::start(&common::config("ctl-retained", &broker.url(), |_| {}));
    let r = setup.wait_for(Duration::from_secs(60), |_, p| {
        serde_json::from_slice::<Value>(p).ok()
    });
    assert_eq!(r["success"], false);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("retained commands are ignored"),
        "{r}"
    );
    // Answered like any refusal: command and request_id echoed.
    assert_eq!(r["command"], "shutdown", "{r}");
    assert_eq!(r["request_id"], "old", "{r}");
    let results = Subscriber::connect(broker.port, "care/inferences/ctl-retained/#");
    results.wait_for(Duration::from_secs(20), |_, p| {
        serde_json::from_slice::<Value>(p).ok()
    });
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );
}

#[test]
fn alerts_go_out_while_a_slow_model_swap_runs() {
    let broker = Mosquitto::start();
    let health = Subscriber::connect(broker.port, "care/health/ctl-alert");
    let status = Subscriber::connect(broker.port, "care/status/ctl-alert");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.onnx");
    std::fs::write(&good, b"fake").expect("write");
    let pids = dir.path().join("pids");
    let closed = common::free_port();
    let _daemon = Daemon::start(&common::config("ctl-alert", &broker.url(), |c| {
        // A camera that refuses every connection and is given up after about 7 s.
        common::set(c, "camera.source", "rtsp");
        common::set(
            c,
            "camera.rtsp_url",
            format!("rtsp://127.0.0.1:{closed}/cam"),
        );
        common::set(c, "camera.max_reconnect_attempts", 7);
        common::set(c, "camera.reconnect_backoff_max_s", 1.0);
        common::set(c, "stream.stall_timeout_s", 60.0);
        common::use_fake_worker(c, "slowswap", &pids);
        common::catalog_entry(c, "good", &good);
    }));
    status.wait_for(Duration::from_secs(30), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["state"] == "online").then_some(())
    });
    // The swap takes 10 s; the camera is given up meanwhile.
    health.publish(
        "care/control/ctl-alert",
        br#"{"command":"set_model_size","params":{"size":"good"},"request_id":"swap"}"#.to_vec(),
    );
    let first = health.wait_for(Duration::from_secs(40), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["type"] == "error" || v["request_id"] == "swap").then_some(v)
    });
    assert_eq!(
        first["type"], "error",
        "the alert waited for the swap: {first}"
    );
    assert_eq!(first["source"], "stream");
    let swap = health.reply_to("swap");
    assert_eq!(swap["success"], true, "{swap}");
}
