//! Config loading and validation: every bad key is reported with its path and what
//! is allowed; the shipped config is valid; `oriond validate` prints and exits.

mod common;

use orion::config::Config;

fn problems(yaml: &str) -> Vec<String> {
    Config::parse(yaml)
        .expect("parses")
        .validate()
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

fn has(problems: &[String], key: &str, fragment: &str) -> bool {
    problems
        .iter()
        .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(fragment))
}

#[test]
fn defaults_are_valid_from_the_repository_root() {
    common::repo_root_cwd();
    let c = Config::default();
    assert_eq!(c.validate(), vec![]);
    assert_eq!(c.shutdown_timeout_s, 5.0);
    assert_eq!(c.stream.warmup_duration_s, 5.0);
    assert_eq!(c.models.person_detector.max_inference_rate_hz, 2.0);
}

#[test]
fn every_bad_key_is_reported_at_once() {
    common::repo_root_cwd();
    let p = problems(
        r#"
instance_id: "bad/id"
room_id: ""
camera: { source: file, path: /nonexistent/video.mp4 }
stream: { width: 642, height: 10, fps: 0, warmup_duration_s: -1 }
models:
  person_detector:
    size: huge
    catalog:
      tiny: { path: /nonexistent.onnx, format: yolo }
    confidence: 1.5
    max_inference_rate_hz: 1001
rois: { small_roi_threshold_px: 0 }
workers: { person_detector: { command: [], count: 0, startup_timeout_s: 0 } }
mqtt: { broker: "tcp://x", keep_alive_s: 1 }
shutdown_timeout_s: 0
"#,
    );
    let expected = [
        ("instance_id", "A-Z a-z 0-9"),
        ("room_id", "1 to 128"),
        ("camera.path", "not found"),
        ("stream.width", "multiple of 4"),
        ("stream.height", "64..=2160"),
        ("stream.fps", "1..=120"),
        ("stream.warmup_duration_s", "0..=60"),
        ("models.person_detector.size", "allowed: tiny"),
        ("models.person_detector.catalog.tiny", "not found"),
        (
            "models.person_detector.catalog.tiny.input_size",
            "required for YOLO",
        ),
        ("models.person_detector.confidence", "0.01..=1"),
        ("models.person_detector.max_inference_rate_hz", "0.1..=1000"),
        ("rois.small_roi_threshold_px", "allowed: 1..="),
        ("workers.person_detector.command", "must name a program"),
        ("workers.person_detector.count", "1..=16"),
        ("workers.person_detector.startup_timeout_s", "1..=600"),
        ("mqtt.broker", "mqtt://host:port"),
        ("mqtt.keep_alive_s", "5..=3600"),
        ("shutdown_timeout_s", "1..=120"),
    ];
    for (key, fragment) in expected {
        assert!(
            has(&p, key, fragment),
            "no `{key}` problem containing `{fragment}` in:\n{}",
            p.join("\n")
        );
    }
    assert_eq!(
        p.len(),
        expected.len(),
        "unexpected extra problems:\n{}",
        p.join("\n")
    );
}

#[test]
fn source_specific_keys_are_required() {
    let p = problems("camera: { source: rtsp }");
    assert!(has(&p, "camera.rtsp_url", "required"), "{p:?}");
    let p = problems("camera: { source: rtsp, rtsp_url: \"http://user:secret@cam/x\" }");
    assert!(has(&p, "camera.rtsp_url", "rtsp://"), "{p:?}");
    assert!(
        p.iter().all(|m| !m.contains("secret")),
        "credentials leaked: {p:?}"
    );
    let p = problems("camera: { source: file }");
    assert!(has(&p, "camera.path", "required"), "{p:?}");
}

#[test]
fn unknown_keys_and_wrong_types_are_parse_errors_naming_the_key() {
    let e = Config::parse("stream: { widht: 640 }").unwrap_err();
    assert!(e.contains("widht"), "{e}");
    let e = Config::parse("camera: { source: webcam }").unwrap_err();
    assert!(e.contains("webcam") && e.contains("rtsp"), "{e}");
    let e = Config::parse("stream: { width: wide }").unwrap_err();
    assert!(e.contains("stream.width") || e.contains("width"), "{e}");
}

#[test]
fn broker_addresses() {
    use orion::config::BrokerAddr;
    assert_eq!(BrokerAddr::parse("embedded"), Ok(BrokerAddr::Embedded));
    assert_eq!(
        BrokerAddr::parse("mqtt://127.0.0.1:1884"),
        Ok(BrokerAddr::External {
            host: "127.0.0.1".into(),
            port: 1884,
            tls: false
        })
    );
    assert_eq!(
        BrokerAddr::parse("mqtt://[::1]:1883"),
        Ok(BrokerAddr::External {
            host: "::1".into(),
            port: 1883,
            tls: false
        })
    );
    assert_eq!(
        BrokerAddr::parse("mqtts://broker.example"),
        Ok(BrokerAddr::External {
            host: "broker.example".into(),
            port: 8883,
            tls: true
        })
    );
    let e = BrokerAddr::parse("ssl://broker:8883").unwrap_err();
    assert!(e.contains("mqtts://"), "{e}");
    assert!(BrokerAddr::parse("mqtt://host:0").is_err());
    assert!(BrokerAddr::parse("mqtt://:1883").is_err());
}

#[test]
fn redacts_credentials() {
    use orion::config::redact_url;
    assert_eq!(
        redact_url("rtsp://admin:pw@10.0.0.5:554/s1"),
        "rtsp://***@10.0.0.5:554/s1"
    );
    assert_eq!(redact_url("rtsp://cam/s1"), "rtsp://cam/s1");
    assert_eq!(redact_url("user:pw@host:1883"), "***@host:1883");
    assert_eq!(redact_url("mqtt://u:p@h/x@y"), "mqtt://***@h/x@y");
}

#[test]
fn validate_never_echoes_a_password_in_a_broker_url() {
    let dir = tempfile::tempdir().unwrap();
    for broker in [
        "mqtt://user:S3cretPw@127.0.0.1:1883",
        "tcp://user:S3cretPw@127.0.0.1:1883",
        "user:S3cretPw@127.0.0.1",
    ] {
        let file = dir.path().join("broker.yaml");
        std::fs::write(&file, format!("mqtt: {{ broker: \"{broker}\" }}\n")).unwrap();
        let out = common::oriond()
            .args(["validate", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{broker}: {text}");
        assert!(
            text.contains("mqtt.broker") && text.contains("***@"),
            "{text}"
        );
        assert!(!text.contains("S3cretPw"), "password echoed: {text}");
    }
}

#[test]
fn worker_env_names_are_checked_and_orion_names_reserved() {
    let p = problems(
        "workers: { person_detector: { env: { OMP_NUM_THREADS: \"1\", ORION_MQTT_PASSWORD: x, \"1BAD\": y } } }",
    );
    assert!(
        has(
            &p,
            "workers.person_detector.env.ORION_MQTT_PASSWORD",
            "reserved"
        ),
        "{p:?}"
    );
    assert!(
        has(
            &p,
            "workers.person_detector.env.1BAD",
            "not a variable name"
        ),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn validate_subcommand_prints_problems_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "stream: { width: 641 }\nshutdown_timeout_s: 500\n").unwrap();
    let out = common::oriond()
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("stream.width: 641 must be a multiple of 4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shutdown_timeout_s: 500 is out of range; allowed: 1..=120 seconds"),
        "{stdout}"
    );

    // Every shipped config is valid.
    for shipped in ["config/orion.yaml", "config/corridor.yaml"] {
        let out = common::oriond()
            .args(["validate", "--config", shipped])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shipped}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

#[test]
fn worker_programs_must_exist_and_be_executable() {
    common::repo_root_cwd();
    let p = problems("workers: { person_detector: { command: [\"no-such-orion-worker\"] } }");
    assert!(
        has(
            &p,
            "workers.person_detector.command",
            "`no-such-orion-worker` not found on PATH"
        ),
        "{p:?}"
    );
    // A relative path names the directory it was resolved against.
    let p = problems("workers: { person_detector: { command: [\"venv-missing/bin/python\"] } }");
    let cwd = std::env::current_dir().unwrap();
    assert!(
        has(
            &p,
            "workers.person_detector.command",
            &format!("`venv-missing/bin/python` (relative to {})", cwd.display())
        ),
        "{p:?}"
    );
    let p = problems("workers: { person_detector: { command: [\"README.md\"] } }");
    assert!(
        has(&p, "workers.person_detector.command", "not found on PATH"),
        "{p:?}"
    );
    let p = problems("workers: { person_detector: { command: [\"./README.md\"] } }");
    assert!(
        has(
            &p,
            "workers.person_detector.command",
            "is not an executable file"
        ),
        "{p:?}"
    );
    assert_eq!(
        problems("workers: { person_detector: { command: [\"sh\", \"-c\", \"x\"] } }"),
        Vec::<String>::new()
    );
}

#[test]
fn a_v4l2_camera_needs_an_absolute_device_path() {
    common::repo_root_cwd();
    assert_eq!(
        problems("camera: { source: v4l2, device: /dev/video0, v4l2_format: mjpeg }"),
        Vec::<String>::new(),
        "a missing device is an outage at run time, not a config error"
    );
    let p = problems("camera: { source: v4l2, device: video0 }");
    assert!(has(&p, "camera.device", "absolute device path"), "{p:?}");
    let e = Config::parse("camera: { source: v4l2, v4l2_format: h264 }").unwrap_err();
    assert!(e.contains("mjpeg"), "{e}");
}

#[test]
fn help_goes_to_stdout_and_exits_zero() {
    let out = common::oriond().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("usage: oriond") && text.contains("SIGHUP"),
        "{text}"
    );
    assert!(out.stderr.is_empty());
    let out = common::oriond().arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument `--bogus`"));
    // Every orionctl subcommand has a help line.
    let out = common::orionctl("mqtt://127.0.0.1:1", "x")
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(commands.len() >= 12, "{text}");
    for line in commands {
        assert!(line.split_whitespace().count() >= 2, "no help for `{line}`");
    }
    for sub in [["rois", "--help"], ["autofocus", "--help"]] {
        let out = common::orionctl("mqtt://127.0.0.1:1", "x")
            .args(sub)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
        {
            assert!(
                line.split_whitespace().count() >= 2,
                "{sub:?}: no help for `{line}`"
            );
        }
    }
}

#[test]
fn a_cameras_list_merges_each_entry_over_the_shared_sections() {
    common::repo_root_cwd();
    let c = Config::parse(
        r#"
stream: { width: 320, height: 240, fps: 10 }
models: { person_detector: { max_inference_rate_hz: 3 } }
mqtt: { client_id: corridor }
cameras:
  - instance_id: room-101
    room_id: "101"
    camera: { source: rtsp, rtsp_url: "rtsp://cam:S3cretCam@127.0.0.1:8554/a" }
  - instance_id: room-102
    camera: { source: test }
    stream: { width: 640 }
    max_inference_rate_hz: 1
"#,
    )
    .expect("parses");
    assert_eq!(c.validate(), vec![]);
    let cams = c.camera_configs();
    assert_eq!(cams.len(), 2);
    assert_eq!(
        (cams[0].instance_id.as_str(), cams[0].room_id.as_str()),
        ("room-101", "101")
    );
    assert_eq!(
        cams[1].room_id, "room-102",
        "room_id defaults to the instance_id"
    );
    assert_eq!((cams[0].stream.width, cams[0].stream.height), (320, 240));
    assert_eq!(
        (
            cams[1].stream.width,
            cams[1].stream.height,
            cams[1].stream.fps
        ),
        (640, 240, 10),
        "an override changes only the keys it names"
    );
    assert_eq!(cams[0].models.person_detector.max_inference_rate_hz, 3.0);
    assert_eq!(cams[1].models.person_detector.max_inference_rate_hz, 1.0);
    assert_eq!(
        cams[0].client_id(),
        "corridor-room-101",
        "one MQTT client per camera"
    );
    // Secrets stay out of what status and logs show.
    let shown = c.redacted_json().to_string();
    assert!(!shown.contains("S3cretCam"), "{shown}");
    assert!(shown.contains("rtsp://***@127.0.0.1:8554/a"), "{shown}");
    // Each camera's URL can come from its own variable.
    let mut c = c;
    c.apply_env_from(|k| (k == "ORION_RTSP_URL_ROOM_101").then(|| "rtsp://env@127.0.0.1/x".into()));
    assert_eq!(
        c.camera_configs()[0].camera.rtsp_url.as_deref(),
        Some("rtsp://env@127.0.0.1/x")
    );
    // The single-camera form is a list of one.
    let single = Config::parse("instance_id: solo\n").expect("parses");
    let cams = single.camera_configs();
    assert_eq!((cams.len(), cams[0].instance_id.as_str()), (1, "solo"));
}

#[test]
fn a_cameras_list_refuses_duplicates_mixed_forms_and_too_many() {
    common::repo_root_cwd();
    let p = problems(
        r#"
instance_id: old-style
cameras:
  - { instance_id: room-1, camera: { source: test } }
  - { instance_id: room-1, camera: { source: test } }
  - { instance_id: "bad/id", camera: { source: file, path: /nonexistent.mp4 }, max_inference_rate_hz: 0 }
"#,
    );
    assert!(
        has(&p, "instance_id", "cannot be used together with `cameras`"),
        "{p:?}"
    );
    assert!(
        has(&p, "cameras[1].instance_id", "already used by cameras[0]"),
        "{p:?}"
    );
    assert!(has(&p, "cameras[2].instance_id", "A-Z a-z 0-9"), "{p:?}");
    assert!(has(&p, "cameras[2].camera.path", "not found"), "{p:?}");
    assert!(
        has(&p, "cameras[2].max_inference_rate_hz", "out of range"),
        "{p:?}"
    );
    // Every section a camera may set is checked per camera: a bad value
    // there is a problem, never a panic at start.
    let p = problems(
        r#"
cameras:
  - { instance_id: a, camera: { source: test }, falls: { confirm_s: -1, repeat_s: .nan } }
  - { instance_id: b, camera: { source: test }, presence: { unseen_timeout_s: -5 } }
"#,
    );
    assert!(has(&p, "cameras[0].falls.confirm_s", "0.5..=60"), "{p:?}");
    assert!(has(&p, "cameras[0].falls.repeat_s", "0..=86400"), "{p:?}");
    assert!(
        has(&p, "cameras[1].presence.unseen_timeout_s", "0..=604800"),
        "{p:?}"
    );
    let p = problems(
        "cameras:\n  - { instance_id: room-1, camera: { source: test } }\n  - { instance_id: room_1, camera: { source: test } }\n",
    );
    assert!(
        has(&p, "cameras[1].instance_id", "same identifier `room_1`"),
        "{p:?}"
    );
    let many: String = (0..65)
        .map(|i| format!("  - {{ instance_id: cam-{i}, camera: {{ source: test }} }}\n"))
        .collect();
    let p = problems(&format!("cameras:\n{many}"));
    assert!(has(&p, "cameras", "at most 64"), "{p:?}");
    for (yaml, fragment) in [
        (
            "cameras:\n  - { instance_id: a, mqtt: { broker: embedded } }\n",
            "unknown key",
        ),
        (
            "cameras:\n  - { camera: { source: test } }\n",
            "instance_id is required",
        ),
        (
            "cameras:\n  - { instance_id: a, camera: { source: tv } }\n",
            "cameras[0] (a)",
        ),
    ] {
        let err = Config::parse(yaml).expect_err(yaml);
        assert!(err.contains(fragment), "{yaml} -> {err}");
    }
}

#[test]
fn deep_nesting_and_huge_files_are_refused_before_the_parser() {
    // 100,000 nested brackets in 200 KB: the YAML parser takes time in the
    // square of the depth (over 20 s); refused at once.
    let deep = format!("x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let err = Config::parse(&deep).expect_err("refused");
    assert!(err.contains("nested 100000 deep"), "{err}");
    // Nothing hides brackets: not an apostrophe, not a quote, not a comment.
    for hidden in [
        format!("note: it 's\nx: {}\n", "[".repeat(100)),
        format!("room_id: \"a #{}\"\n", "[".repeat(100)),
        format!("# {}\n", "{".repeat(100)),
    ] {
        let err = Config::parse(&hidden).expect_err("refused");
        assert!(err.contains("nested 100 deep"), "{err}");
    }
    let huge = format!("room_id: a\n{}", "# padding\n".repeat(200_000));
    let err = Config::parse(&huge).expect_err("refused");
    assert!(err.contains("at most 1048576"), "{err}");
}

#[test]
fn any_worker_type_is_a_pool_with_its_own_command() {
    common::repo_root_cwd();
    let c = Config::parse(
        r#"
workers:
  person_detector: { count: 2 }
  scene_brightness: { command: [".venv/bin/python", "-m", "orion_worker.scene_brightness"] }
"#,
    )
    .expect("parses");
    assert_eq!(c.validate(), vec![]);
    let detector = c.workers.get("person_detector").expect("detector pool");
    assert_eq!(detector.count, 2);
    assert_eq!(
        detector.command[2], "orion_worker.person_detector",
        "the shipped worker by default"
    );
    let p = problems(
        "workers:\n  scene_brightness: { count: 1 }\n  \"bad type\": { command: [/bin/true] }\n",
    );
    assert!(
        has(
            &p,
            "workers.scene_brightness.command",
            "must name a program"
        ),
        "{p:?}"
    );
    assert!(has(&p, "workers.bad type", "A-Z a-z 0-9"), "{p:?}");
}

#[test]
fn outbox_bounds_and_path_are_checked() {
    common::repo_root_cwd();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let p = problems(&format!(
        "outbox: {{ path: \"{}\", max_events: 5, max_bytes: 1000 }}",
        file.display()
    ));
    assert!(has(&p, "outbox.path", "is not a directory"), "{p:?}");
    assert!(
        has(&p, "outbox.max_events", "allowed: 100..=10000000"),
        "{p:?}"
    );
    assert!(has(&p, "outbox.max_bytes", "out of range"), "{p:?}");
    assert_eq!(p.len(), 3, "{p:?}");
    // A device, and a directory under a file, are not directories either.
    for path in ["/dev/zero", "/dev/null/outbox"] {
        let p = problems(&format!("outbox: {{ path: {path} }}"));
        assert!(
            has(&p, "outbox.path", "is not a directory"),
            "{path}: {p:?}"
        );
    }
    let p = problems("outbox: { max_events_per_minute: 0 }");
    assert!(
        has(&p, "outbox.max_events_per_minute", "out of range"),
        "{p:?}"
    );
    assert!(problems("outbox: { path: /var/lib/orion/outbox, fsync: false }").is_empty());
    let unknown = Config::parse("outbox: { max_event: 5 }").expect_err("refused");
    assert!(unknown.to_string().contains("max_event"), "{unknown}");
}

#[test]
fn a_model_takes_its_own_thresholds_and_the_section_s_for_the_rest() {
    let c = Config::parse(
        r#"
models:
  person_detector:
    night: { confidence: 0.45, continue_confidence: 0.15, edge_confidence: 0.25 }
    catalog:
      pose: { path: models/movenet_multipose_lightning.onnx, format: movenet, confidence: 0.3, night: { confidence: 0.2 } }
"#,
    )
    .expect("parses");
    let d = &c.models.person_detector;
    let pose = d.levels(d.catalog.get("pose"));
    assert_eq!(pose.day, (0.3, d.continue_confidence, d.edge_confidence));
    // Only the night's confidence is its own; the other two are the section's.
    assert_eq!(pose.night, (0.2, 0.15, 0.25));
    // The shipped default catalog: MoveNet with its own, SSDLite with the section's.
    let shipped = Config::default();
    let s = &shipped.models.person_detector;
    assert_eq!(s.size, "movenet");
    assert_eq!(s.levels(s.catalog.get("movenet")).day, (0.35, 0.2, 0.25));
    assert_eq!(s.levels(s.catalog.get("ssdlite")).day, (0.5, 0.3, 0.35));
    // The workers report from the lowest threshold of any model.
    assert_eq!(s.floor(), 0.2);
}

#[test]
fn an_int8_variant_is_required_only_where_int8_is_asked_for() {
    common::repo_root_cwd();
    let root = common::repo_root();
    let model = root.join("models/ssdlite_mobilenet_v2_coco.onnx");
    let int8 = root.join("models/ssdlite_mobilenet_v2_coco.int8.xml");
    let entry = |int8: &str, extra: &str| {
        format!(
            "models:\n  person_detector:\n    size: s\n    catalog:\n      s: {{ path: \"{}\", int8: \"{int8}\", format: ssd{extra} }}\n",
            model.display()
        )
    };
    let key = "models.person_detector.catalog.s";
    // Shipped and present: fine either way.
    let shipped = int8.to_string_lossy();
    for extra in ["", ", precision: int8"] {
        let p = problems(&entry(&shipped, extra));
        assert!(p.is_empty(), "{p:?}");
    }
    // Missing with `auto`: the worker leaves it out (an older model folder).
    let p = problems(&entry("/nonexistent/m.int8.xml", ""));
    assert!(p.is_empty(), "{p:?}");
    // Missing where INT8 is required: refused, naming the file.
    let p = problems(&entry("/nonexistent/m.int8.xml", ", precision: int8"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        has(&p, key, "model file `/nonexistent/m.int8.xml` not found"),
        "{p:?}"
    );
    // Not an IR; INT8 on ONNX Runtime; INT8 without a variant.
    let p = problems(&entry(&model.to_string_lossy(), ""));
    assert!(
        has(&p, &format!("{key}.int8"), "is not an OpenVINO IR"),
        "{p:?}"
    );
    let p = problems(&entry(&shipped, ", precision: int8, backend: onnxruntime"));
    assert!(
        has(&p, &format!("{key}.precision"), "runs on OpenVINO only"),
        "{p:?}"
    );
    let p = problems(&format!(
        "models:\n  person_detector:\n    size: s\n    precision: int8\n    catalog:\n      s: {{ path: \"{}\", format: ssd }}\n",
        model.display()
    ));
    assert!(
        has(&p, &format!("{key}.precision"), "has no `int8` model"),
        "{p:?}"
    );
}
