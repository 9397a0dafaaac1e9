//! The Debian package built by scripts/package.sh: lintian finds nothing in
//! it, its unpacked tree runs the demo, and apt installs, upgrades and purges
//! it (in private namespaces over overlays: this machine is left as it was).
// Signals are syscalls.
#![allow(unsafe_code)]

mod common;

use common::Mosquitto;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// `program` killed after `seconds` (`timeout(1)`): every wait is bounded.
fn bounded(seconds: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("timeout");
    c.arg(seconds.to_string()).arg(program);
    c
}

/// The package, built once for the tests of this binary (light compression).
fn package() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DEB.get_or_init(|| {
        let out = tempfile::tempdir().expect("tempdir");
        let run = bounded(900, common::repo_root().join("scripts/package.sh"))
            .args(["--fast", "--out"])
            .arg(out.path())
            .output()
            .expect("run scripts/package.sh");
        assert!(
            run.status.success(),
            "scripts/package.sh: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let version = env!("CARGO_PKG_VERSION");
        let deb = out.path().join(format!("orion_{version}_amd64.deb"));
        assert!(deb.is_file(), "no {}", deb.display());
        (out, deb)
    })
    .1
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb");
    assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_is_lintian_clean_and_holds_what_a_box_needs() {
    let deb = package();
    let out = bounded(900, "lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .expect("run lintian");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && !said
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let files = dpkg_deb(&["--contents"], deb);
    for path in [
        "./usr/bin/oriond",
        "./usr/bin/orionctl",
        "./lib/systemd/system/orion.service",
        "./etc/orion/orion.yaml",
        "./usr/share/orion/demo.mp4",
        "./usr/share/orion/models/movenet_multipose_lightning.onnx",
        "./usr/share/orion/models/movenet_multipose_lightning.int8.xml",
        "./usr/share/orion/models/ssdlite_mobilenet_v2_coco.int8.check.json",
        "./usr/lib/orion/venv/pyvenv.cfg",
        "./usr/share/doc/orion/copyright",
        "./usr/share/doc/orion/deploy.md",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package"
        );
    }
    // No compiler and no network at install: no source to build, no
    // wheel to fetch; the worker's packages are in the venv.
    for package in [
        "numpy",
        "openvino",
        "onnxruntime",
        "cv2",
        "msgpack",
        "orion_worker",
    ] {
        let dir = format!("/site-packages/{package}/");
        assert!(
            files.lines().any(|l| l.ends_with(&dir)),
            "the worker's venv has no {package}"
        );
    }
    assert!(
        !files
            .lines()
            .any(|l| l.ends_with(".whl") || l.ends_with(".pyc")),
        "wheels or compiled Python in the package"
    );
    let conffiles = dpkg_deb(&["--info"], deb);
    assert!(conffiles.contains("conffiles"), "no conffiles: {conffiles}");
    let depends = dpkg_deb(&["--field"], deb);
    for dependency in [
        "python3 (>= 3.11)",
        "gstreamer1.0-libav",
        "libgstreamer1.0-0",
    ] {
        assert!(
            depends.contains(dependency),
            "Depends lacks {dependency}: {depends}"
        );
    }
}

#[test]
fn the_unpacked_package_runs_the_demo_with_its_own_worker_and_models() {
    let deb = package();
    let root = tempfile::tempdir().expect("tempdir");
    let unpack = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root.path())
        .status()
        .expect("dpkg-deb -x");
    assert!(unpack.success());

    // The installed config names the package's own files by absolute path;
    // here they are under the temporary root.
    let installed = std::fs::read_to_string(root.path().join("etc/orion/orion.yaml")).unwrap();
    for path in [
        "path: /usr/share/orion/demo.mp4",
        "path: /usr/share/orion/models/movenet_multipose_lightning.onnx",
        "command: [\"/usr/lib/orion/venv/bin/python\"",
    ] {
        assert!(
            installed.contains(path),
            "the installed config lacks {path}"
        );
    }
    let relocated = installed.replace("/usr/", &format!("{}/usr/", root.path().display()));
    let broker = Mosquitto::start();
    let mut v: serde_norway::Value = serde_norway::from_str(&relocated).unwrap();
    common::set(&mut v, "instance_id", "unpacked");
    common::set(&mut v, "mqtt.broker", broker.url());
    common::set(
        &mut v,
        "health.listen",
        format!("127.0.0.1:{}", common::free_port()),
    );
    let config = root.path().join("orion.yaml");
    std::fs::write(&config, serde_norway::to_string(&v).unwrap()).unwrap();

    let events = common::Subscriber::connect(broker.port, "care/events/unpacked");
    let daemon = Command::new(root.path().join("usr/bin/oriond"))
        .arg("--config")
        .arg(&config)
        .current_dir(root.path())
        .env("ORION_CACHE_DIR", common::test_cache())
        .env("STATE_DIRECTORY", root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the unpacked oriond");
    let daemon = Stopped(daemon);
    let entered = events.wait_for(Duration::from_secs(90), |_, p| {
        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
        (v["type"] == "person_entered").then_some(v)
    });
    assert_eq!(entered["instance_id"], "unpacked");
    drop(daemon);
}

/// A daemon stopped (SIGTERM, then SIGKILL after 10 s) however the test ends.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn apt_installs_the_package_runs_the_service_and_upgrades_and_purges_cleanly() {
    let deb = package();
    // A later version of the same package: the upgrade.
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    let raw = Command::new("dpkg-deb")
        .arg("--raw-extract")
        .arg(deb)
        .arg(&tree)
        .status()
        .expect("dpkg-deb -R");
    assert!(raw.success());
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let version = concat!(env!("CARGO_PKG_VERSION"), "+upgrade");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&control, text + "\n").unwrap();
    let upgrade = tmp.path().join("orion_upgrade.deb");
    let build = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Znone", "--build"])
        .arg(&tree)
        .arg(&upgrade)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("dpkg-deb --build");
    assert!(build.success());
    std::fs::remove_dir_all(&tree).unwrap();

    let out = bounded(600, common::repo_root().join("packaging/test-install.sh"))
        .arg(deb)
        .arg(&upgrade)
        .output()
        .expect("run packaging/test-install.sh");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "packaging/test-install.sh: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "installed in",
        "user orion, in group video",
        "secrets file 0640 root:orion",
        "service enabled",
        "the service runs the demo",
        &format!("upgraded to {version}: config, secrets, state and cache kept"),
        "purged: no file, directory, link or user left",
    ] {
        assert!(said.contains(check), "no `{check}` in: {said}");
    }
}
