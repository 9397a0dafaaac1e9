//! A reloaded config (SIGHUP) applied to the running daemon: what changed
//! decides what restarts. A camera whose config did not change keeps running
//! (its results do not pause); a changed camera restarts, a new one starts, a
//! removed one stops for good. When something every camera shares changed
//! (workers, models, the broker, the outbox, health, the UI, ...) everything
//! restarts, as at start-up.
//!
//! [`plan`] is pure (the decision); [`super::Running::reload`] carries it out.

use serde_json::Value;

use super::Running;
use super::pools::Fit;
use crate::config::{CAMERA_KEYS, Config, PERSON_DETECTOR};

/// What a reload does.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Something shared changed: stop everything, start again.
    Everything,
    /// Only cameras changed (instance ids; the lists are disjoint).
    Cameras {
        keep: Vec<String>,
        restart: Vec<String>,
        start: Vec<String>,
        stop: Vec<String>,
    },
}

/// Compares the running config with the new one.
pub fn plan(old: &Config, new: &Config) -> Plan {
    let (fit, next_fit) = (Fit::of(old), Fit::of(new));
    // Larger frames than the workers' shared memory holds, or pacing changed.
    let pools_fit = next_fit.frame_bytes <= fit.frame_bytes && next_fit.paced == fit.paced;
    if shared_part(old) != shared_part(new) || !pools_fit {
        return Plan::Everything;
    }
    let (old_cameras, new_cameras) = (old.camera_configs(), new.camera_configs());
    let find = |cameras: &[Config], id: &str| {
        cameras
            .iter()
            .find(|c| c.instance_id == id)
            .map(camera_part)
    };
    let (mut keep, mut restart, mut start) = (Vec::new(), Vec::new(), Vec::new());
    for camera in &new_cameras {
        let id = camera.instance_id.clone();
        match find(&old_cameras, &id) {
            Some(was) if was == camera_part(camera) => keep.push(id),
            Some(_) => restart.push(id),
            None => start.push(id),
        }
    }
    let stop = old_cameras
        .iter()
        .map(|c| c.instance_id.clone())
        .filter(|id| find(&new_cameras, id).is_none())
        .collect();
    Plan::Cameras {
        keep,
        restart,
        start,
        stop,
    }
}

/// Everything of a config but what a camera may set for itself, secrets
/// included (they serialize redacted).
fn shared_part(config: &Config) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Some(map) = v.as_object_mut() {
        for key in CAMERA_KEYS {
            map.remove(key);
        }
    }
    if let Some(detector) = v["models"][PERSON_DETECTOR].as_object_mut() {
        detector.remove("max_inference_rate_hz");
    }
    v["secrets"] =
        serde_json::json!([config.mqtt.username, config.mqtt.password, config.ui.token,]);
    v
}

/// One camera's complete config, its secrets included.
fn camera_part(camera: &Config) -> Value {
    let mut v = serde_json::to_value(camera).unwrap_or(Value::Null);
    v["secrets"] = serde_json::json!([camera.camera.rtsp_url]);
    v
}

impl Running {
    /// Applies `next` to the running cameras when only cameras changed
    /// ([`plan`]); gives it back when something shared changed (the caller
    /// restarts everything). A camera that fails to start with its new config
    /// is left stopped and named in the error; the others run on.
    pub async fn reload(&mut self, next: Config) -> Result<anyhow::Result<()>, Box<Config>> {
        let Plan::Cameras {
            mut keep,
            restart,
            mut start,
            stop,
        } = plan(&self.config, &next)
        else {
            return Err(Box::new(next));
        };
        // A camera that failed to start at an earlier reload is not running:
        // the same config starts it again.
        let running = self.cameras();
        let (kept, not_running): (Vec<String>, Vec<String>) =
            keep.into_iter().partition(|id| running.contains(id));
        keep = kept;
        start.extend(not_running);
        tracing::info!(
            ?keep,
            ?restart,
            ?start,
            ?stop,
            "reload: only cameras changed"
        );
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs_f64(self.config.shutdown_timeout_s);
        let (going, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.cameras)
            .into_iter()
            .partition(|c| restart.contains(&c.instance_id) || stop.contains(&c.instance_id));
        self.cameras = staying;
        let mut stopping = tokio::task::JoinSet::new();
        for camera in going {
            let retire = stop.contains(&camera.instance_id);
            stopping.spawn(camera.stop(deadline, retire));
        }
        while let Some(done) = stopping.join_next().await {
            match done {
                Ok(late) if late.0.is_empty() => {}
                Ok(late) => {
                    tracing::warn!(late = ?late.0, "reload: stopping a camera missed its deadline")
                }
                Err(e) => tracing::error!(error = %e, "reload: a camera's stop failed"),
            }
        }
        self.config = next;
        let starting: Vec<(usize, Config)> = self
            .config
            .camera_configs()
            .into_iter()
            .enumerate()
            .filter(|(_, c)| restart.contains(&c.instance_id) || start.contains(&c.instance_id))
            .collect();
        // A camera that fails to start does not hurry the others: they run on.
        Ok(self.start_cameras(starting, false).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corridor(extra: &str) -> Config {
        let yaml = format!(
            "cameras:\n  - instance_id: a\n    camera: {{source: test}}\n  - instance_id: b\n    camera: {{source: test}}\n{extra}"
        );
        Config::parse(&yaml).expect("valid config")
    }

    #[test]
    fn only_the_changed_cameras_restart() {
        let old = corridor("");
        assert_eq!(
            plan(&old, &old),
            Plan::Cameras {
                keep: vec!["a".into(), "b".into()],
                restart: vec![],
                start: vec![],
                stop: vec![],
            }
        );
        let new = Config::parse(
            "cameras:\n  - instance_id: a\n    camera: {source: test}\n  - instance_id: b\n    camera: {source: test}\n    max_inference_rate_hz: 1\n  - instance_id: c\n    camera: {source: test}\n",
        )
        .expect("valid");
        assert_eq!(
            plan(&old, &new),
            Plan::Cameras {
                keep: vec!["a".into()],
                restart: vec!["b".into()],
                start: vec!["c".into()],
                stop: vec![],
            }
        );
        assert_eq!(
            plan(&new, &old),
            Plan::Cameras {
                keep: vec!["a".into()],
                restart: vec!["b".into()],
                start: vec![],
                stop: vec!["c".into()],
            }
        );
    }

    #[test]
    fn a_shared_change_restarts_everything() {
        let old = corridor("");
        for extra in [
            "workers:\n  person_detector: {count: 2}\n",
            "mqtt: {password: other}\n",
            "outbox: {max_events_per_minute: 10}\n",
        ] {
            assert_eq!(plan(&old, &corridor(extra)), Plan::Everything, "{extra}");
        }
        // Larger frames than the shared memory holds.
        let big = corridor("stream: {width: 1920, height: 1080}\n");
        assert_eq!(plan(&old, &big), Plan::Everything);
    }
}
