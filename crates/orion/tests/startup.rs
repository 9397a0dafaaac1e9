//! Start-up that fails half-way, in process: what had started stops before the
//! error comes back (one test per binary, so that the thread census below sees
//! this test's threads only).

mod common;

use orion::config::Config;
use tokio_util::sync::CancellationToken;

/// Threads of this process whose name starts with `prefix`.
fn threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_cannot_start_stops_the_cameras_started_before_it() {
    common::repo_root_cwd();
    let health = common::free_port();
    let nobody = common::free_port();
    // Parsed, not validated: the second camera's file is missing when the
    // stream starts (as when it vanishes between validation and start).
    let config = Config::parse(&format!(
        r#"
cameras:
  - {{ instance_id: cam-a, camera: {{ source: test }} }}
  - {{ instance_id: cam-b, camera: {{ source: file, path: /nonexistent/gone.mp4 }} }}
mqtt: {{ broker: "mqtt://127.0.0.1:{nobody}" }}
health: {{ listen: "127.0.0.1:{health}" }}
"#
    ))
    .expect("parses");
    let error = orion::orchestrator::start(config, CancellationToken::new())
        .await
        .err()
        .expect("start-up fails");
    let text = format!("{error:#}");
    assert!(
        text.contains("camera cam-b") && text.contains("not found"),
        "{text}"
    );
    // cam-a's stream thread was started and has been stopped and joined before
    // the error came back (not merely told to stop); the health server too.
    assert_eq!(
        threads("orion-stream"),
        0,
        "a stream thread outlived the failed start"
    );
    std::net::TcpListener::bind(("127.0.0.1", health)).expect("the health port is free again");
}
