//! The MQTT topics of an instance, in one place: the daemon, `orionctl` and the
//! docs (docs/control.md, docs/results.md) all mean these.
//!
//! Owns only names. Instance ids are validated elsewhere (config) to be one
//! topic level without wildcards; inference types coming from workers are made
//! safe here.

/// Commands to the instance.
pub fn control(instance_id: &str) -> String {
    format!("care/control/{instance_id}")
}

/// Replies, status replies and alerts from the instance.
pub fn health(instance_id: &str) -> String {
    format!("care/health/{instance_id}")
}

/// The instance's retained presence.
pub fn status(instance_id: &str) -> String {
    format!("care/status/{instance_id}")
}

/// Events of the instance (`person_entered`, `zone_left`, ...): QoS 1, not retained.
pub fn events(instance_id: &str) -> String {
    format!("care/events/{instance_id}")
}

/// The instance's retained occupancy.
pub fn occupancy(instance_id: &str) -> String {
    format!("care/occupancy/{instance_id}")
}

/// The instance's retained alert state (falls, people down).
pub fn alerts(instance_id: &str) -> String {
    format!("care/alerts/{instance_id}")
}

/// Every instance's presence (the fleet view).
pub const STATUS_ALL: &str = "care/status/+";

/// Prefix of presence topics.
pub const STATUS_PREFIX: &str = "care/status/";

/// Results of one inference type; `inference_type` comes from a worker and is
/// made one safe topic level (see [`level`]).
pub fn inferences(instance_id: &str, inference_type: &str) -> String {
    format!("care/inferences/{instance_id}/{}", level(inference_type))
}

/// Results of every inference type of the instance.
pub fn inferences_all(instance_id: &str) -> String {
    format!("care/inferences/{instance_id}/#")
}

/// One topic level from outside text: MQTT separators and wildcards (`/`, `+`,
/// `#`) and control characters become `_`, at most 64 characters; empty
/// becomes `unknown`.
pub fn level(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '+' || c == '#' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(control("room-1"), "care/control/room-1");
        assert_eq!(health("room-1"), "care/health/room-1");
        assert_eq!(status("room-1"), "care/status/room-1");
        assert!(status("room-1").starts_with(STATUS_PREFIX));
        assert_eq!(
            inferences("room-1", "person_detection"),
            "care/inferences/room-1/person_detection"
        );
        assert_eq!(
            inferences("room-1", "a/#/+"),
            "care/inferences/room-1/a____"
        );
        assert_eq!(inferences("room-1", ""), "care/inferences/room-1/unknown");
        assert_eq!(inferences_all("room-1"), "care/inferences/room-1/#");
    }
}
