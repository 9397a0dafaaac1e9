//! Presence: the retained `care/status/{instance_id}` message, so that a fleet
//! dashboard sees a dead sensor (the broker publishes the last will) or a dead
//! camera at once.
//!
//! Owns the message: who publishes it ([`Identity`]), what it says
//! ([`PresenceMessage`]), the offline one of a clean stop and of the last will.
//! It publishes nothing itself: the camera's presence task (`super::announce`)
//! and its emitter do.

use serde::Serialize;

/// Who publishes a presence: one per daemon run. `session` tells two processes
/// with the same `instance_id` apart (see the duplicate detection in the emitter).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub instance_id: String,
    pub room_id: String,
    /// `host/pid/start-ms`: unique per daemon run.
    pub session: String,
    pub host: String,
    pub pid: u32,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
}

impl Identity {
    pub fn new(instance_id: &str, room_id: &str) -> Self {
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let host = hostname();
        let pid = std::process::id();
        Self {
            instance_id: instance_id.into(),
            room_id: room_id.into(),
            session: format!("{host}/{pid}/{ms}"),
            host,
            pid,
            started_at: rfc3339(now),
        }
    }
}

pub(super) fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[allow(unsafe_code)] // gethostname(2)
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (a truncated name may lack the NUL: handled below).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The retained message on `care/status/{instance_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PresenceMessage {
    pub instance_id: String,
    pub room_id: String,
    /// `online` or `offline`.
    pub state: String,
    /// `starting`, `streaming`, `stalled`, `reconnecting`, `failed` (reconnecting
    /// given up), or `unknown` (offline).
    pub camera: String,
    /// `starting`, `running`, `paused`, or `stopped` (offline).
    pub inference: String,
    /// Online: privacy mode (no video leaves the sensor).
    #[serde(default)]
    pub privacy: bool,
    /// Online: the effective inference rate (results a second at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When this message was made.
    pub timestamp: String,
    /// Online: since when the camera and inference states are what they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default)]
    pub version: String,
    /// When the daemon (this session) started.
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
}

impl PresenceMessage {
    pub(super) fn new(id: &Identity, state: &str, camera: &str, inference: &str) -> Self {
        Self {
            instance_id: id.instance_id.clone(),
            room_id: id.room_id.clone(),
            state: state.into(),
            camera: camera.into(),
            inference: inference.into(),
            privacy: false,
            rate_hz: None,
            reason: None,
            timestamp: rfc3339(std::time::SystemTime::now()),
            since: None,
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: id.started_at.clone(),
            session: id.session.clone(),
            host: id.host.clone(),
            pid: id.pid,
        }
    }
}

/// Offline presence: the last will (reason `connection_lost`; its `timestamp` is
/// when the daemon connected, since a will is fixed then) and the message
/// published at a clean shutdown (reason `shutdown`).
pub fn offline(id: &Identity, reason: &str) -> Vec<u8> {
    let mut msg = PresenceMessage::new(id, "offline", "unknown", "stopped");
    msg.reason = Some(reason.into());
    serde_json::to_vec(&msg).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_presence_names_the_session() {
        let id = Identity::new("cam", "room");
        let v: serde_json::Value = serde_json::from_slice(&offline(&id, "shutdown")).unwrap();
        assert_eq!(
            (v["state"].as_str(), v["reason"].as_str()),
            (Some("offline"), Some("shutdown"))
        );
        assert_eq!(v["session"], id.session);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            id.session
                .starts_with(&format!("{}/{}/", id.host, std::process::id()))
        );
    }
}
