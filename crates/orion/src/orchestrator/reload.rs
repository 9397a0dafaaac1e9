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

/// Compares the running config with the new one; `pools`: what the running
/// worker pools were built for. A config that cannot be compared (it does not
/// serialize) restarts everything.
pub fn plan(old: &Config, pools: &Fit, new: &Config) -> Plan {
    let next_fit = Fit::of(new);
    // Larger frames than the workers' shared memory holds, or pacing changed.
    let pools_fit = next_fit.frame_bytes <= pools.frame_bytes && next_fit.paced == pools.paced;
    let shared_same = matches!((shared_part(old), shared_part(new)), (Some(a), Some(b)) if a == b);
    if !shared_same || !pools_fit {
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
            Some(Some(was)) if camera_part(camera).as_ref() == Some(&was) => keep.push(id),
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
fn shared_part(config: &Config) -> Option<Value> {
    let mut v = serde_json::to_value(config).ok()?;
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
    Some(v)
}

/// One camera's complete config, its secrets included.
fn camera_part(camera: &Config) -> Option<Value> {
    let mut v = serde_json::to_value(camera).ok()?;
    v["secrets"] = serde_json::json!([camera.camera.rtsp_url]);
    Some(v)
}

impl Running {
    /// Applies `next` to the running cameras when only cameras changed
    /// ([`plan`]); gives it back when something shared changed (the caller
    /// stops this run and starts one with it; the cameras it no longer has
    /// are marked to go for good). A camera that fails to start with its new config
    /// is left stopped and named in the error; the others run on.
    pub async fn reload(&mut self, next: Config) -> Result<anyhow::Result<()>, Box<Config>> {
        let Plan::Cameras {
            mut keep,
            restart,
            mut start,
            stop,
        } = plan(&self.config, &self.pools.fit, &next)
        else {
            self.retire_absent(&next);
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
        let late = super::stop_cameras(going, deadline, &stop).await;
        if !late.is_empty() {
            tracing::warn!(?late, "reload: stopping cameras missed the deadline");
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

    /// Marks the running cameras `next` does not have as going for good.
    fn retire_absent(&mut self, next: &Config) {
        let kept: Vec<String> = next
            .camera_configs()
            .into_iter()
            .map(|c| c.instance_id)
            .collect();
        let gone: Vec<String> = self
            .cameras()
            .into_iter()
            .filter(|id| !kept.contains(id))
            .collect();
        if !gone.is_empty() {
            tracing::info!(cameras = ?gone, "cameras removed by the new config");
            self.retire(&gone);
        }
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
            plan(&old, &Fit::of(&old), &old),
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
            plan(&old, &Fit::of(&old), &new),
            Plan::Cameras {
                keep: vec!["a".into()],
                restart: vec!["b".into()],
                start: vec!["c".into()],
                stop: vec![],
            }
        );
        assert_eq!(
            plan(&new, &Fit::of(&new), &old),
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
            assert_eq!(
                plan(&old, &Fit::of(&old), &corridor(extra)),
                Plan::Everything,
                "{extra}"
            );
        }
        // Larger frames than the shared memory holds.
        let big = corridor("stream: {width: 1920, height: 1080}\n");
        assert_eq!(plan(&old, &Fit::of(&old), &big), Plan::Everything);
    }

    /// The pools keep the room they were built with: frames that shrank and
    /// grow back within it restart only the cameras.
    #[test]
    fn frames_within_the_running_pools_restart_only_the_cameras() {
        let big = corridor("stream: {width: 1920, height: 1080}\n");
        let small = corridor("");
        let pools = Fit::of(&big);
        for (old, new) in [(&big, &small), (&small, &big)] {
            assert_eq!(
                plan(old, &pools, new),
                Plan::Cameras {
                    keep: vec![],
                    restart: vec!["a".into(), "b".into()],
                    start: vec![],
                    stop: vec![],
                }
            );
        }
    }
}
