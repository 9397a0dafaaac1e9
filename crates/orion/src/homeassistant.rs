//! Home Assistant MQTT discovery: the retained config messages that make each
//! camera a device with entities (occupancy, person count, posture, one per
//! zone; a fall alert and a button to acknowledge it; a control panel: a
//! switch for inference and one for privacy mode, the camera's state and the
//! effective inference rate), their state read from
//! the retained occupancy (and alert) topic and their availability from the
//! presence topic (so a dead daemon shows as unavailable through its last will)
//! and from the occupancy's `state` (a paused camera, or one whose stream or
//! workers are down, is unavailable, never "clear"). The fall alert stays
//! available while the camera is paused: an alert raised before still holds.
//! The control panel reads the presence topic and is available whenever the
//! daemon is online (a paused camera must stay switchable); its switches send
//! the same control messages as any client, to the camera's control topic, and
//! so go through the same control handler.
//!
//! Builds topics and payloads only; the camera's result handler publishes them. It
//! never invents state: every entity reads a topic the daemon already publishes.
//! Ids cannot collide: zone names (and a daemon's instance ids) that are the
//! same as identifiers are refused when they are set.

use serde_json::{Value, json};

use crate::tracking::zones::{Zone, identifier};

/// What identifies one camera's device.
pub struct Device<'a> {
    pub prefix: &'a str,
    pub instance_id: &'a str,
    pub room_id: &'a str,
    /// Falls are watched: the fall sensor and its button exist (a sensor
    /// that could never turn on must not say "safe").
    pub falls: bool,
}

impl Device<'_> {
    /// The node id under which every entity of this camera is published
    /// (`{prefix}/{component}/{node}/{object}/config`).
    fn node(&self) -> String {
        format!("orion_{}", self.instance_id.replace(['.', '-'], "_"))
    }

    /// The filter that matches every discovery message of this camera (to find
    /// the ones a previous run left).
    pub fn filter(&self) -> String {
        format!("{}/+/{}/+/config", self.prefix, self.node())
    }

    fn topic(&self, component: &str, object: &str) -> String {
        format!(
            "{}/{component}/{}/{object}/config",
            self.prefix,
            self.node()
        )
    }

    /// What every entity says. `default_entity_id` (which replaced
    /// `object_id` in Home Assistant 2025.10) names the entity the first time.
    fn base(&self, component: &str, object: &str, name: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), name.into());
        m.insert(
            "unique_id".into(),
            format!("{}_{object}", self.node()).into(),
        );
        m.insert(
            "default_entity_id".into(),
            format!(
                "{component}.{}",
                identifier(&format!("{}_{object}", self.node()))
            )
            .into(),
        );
        m.insert(
            "state_topic".into(),
            crate::topics::occupancy(self.instance_id).into(),
        );
        m.insert(
            "availability".into(),
            json!([
                self.online(),
                {
                    "topic": crate::topics::occupancy(self.instance_id),
                    "value_template": "{{ 'online' if value_json.state == 'watching' else 'offline' }}",
                },
            ]),
        );
        m.insert("availability_mode".into(), "all".into());
        m.insert(
            "device".into(),
            json!({
                "identifiers": [self.node()],
                "name": format!("Room {}", self.room_id),
                "manufacturer": "Orion",
                "model": "edge video sensor",
                "sw_version": env!("CARGO_PKG_VERSION"),
            }),
        );
        m
    }

    /// Available while the daemon is online (its presence topic; the last
    /// will makes it unavailable when the daemon dies).
    fn online(&self) -> Value {
        json!({
            "topic": crate::topics::status(self.instance_id),
            "value_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
        })
    }

    /// The fall or person-down sensor and the button that acknowledges its
    /// alerts; both available whenever the daemon is online (an alert raised
    /// before a pause still holds).
    fn fall_entities(&self) -> Vec<(String, serde_json::Map<String, Value>)> {
        let mut out = Vec::new();
        let status_only = json!([self.online()]);
        let mut fall = self.base("binary_sensor", "fall", "Fall or person down");
        fall.insert("device_class".into(), "safety".into());
        fall.insert(
            "state_topic".into(),
            crate::topics::alerts(self.instance_id).into(),
        );
        fall.insert(
            "value_template".into(),
            "{{ 'ON' if value_json.active else 'OFF' }}".into(),
        );
        fall.insert("availability".into(), status_only.clone());
        out.push((self.topic("binary_sensor", "fall"), fall));
        let mut ack = self.base("button", "ack_alert", "Acknowledge alert");
        ack.remove("state_topic");
        ack.insert(
            "command_topic".into(),
            crate::topics::control(self.instance_id).into(),
        );
        ack.insert("payload_press".into(), r#"{"command":"ack_alert"}"#.into());
        ack.insert("icon".into(), "mdi:bell-check".into());
        ack.insert("availability".into(), status_only);
        out.push((self.topic("button", "ack_alert"), ack));
        out
    }

    /// An entity of the control panel: its state from the presence topic,
    /// available whenever the daemon is online.
    fn panel(&self, component: &str, object: &str, name: &str) -> serde_json::Map<String, Value> {
        let mut m = self.base(component, object, name);
        m.insert(
            "state_topic".into(),
            crate::topics::status(self.instance_id).into(),
        );
        m.insert("availability".into(), json!([self.online()]));
        m
    }

    /// A switch that sends `on` / `off` (plain commands) to the camera's
    /// control topic; `state` is the template of its state (`ON` / `OFF`).
    fn switch(
        &self,
        object: &str,
        name: &str,
        on: &str,
        off: &str,
        state: &str,
    ) -> serde_json::Map<String, Value> {
        let mut m = self.panel("switch", object, name);
        m.insert(
            "command_topic".into(),
            crate::topics::control(self.instance_id).into(),
        );
        m.insert(
            "payload_on".into(),
            json!({ "command": on }).to_string().into(),
        );
        m.insert(
            "payload_off".into(),
            json!({ "command": off }).to_string().into(),
        );
        m.insert("state_on".into(), "ON".into());
        m.insert("state_off".into(), "OFF".into());
        m.insert("value_template".into(), state.into());
        m
    }

    /// The control panel: inference and privacy switches, the camera's state,
    /// the effective rate.
    fn panel_entities(&self) -> Vec<(String, serde_json::Map<String, Value>)> {
        let mut inference = self.switch(
            "inference",
            "Inference",
            "resume_inference",
            "pause_inference",
            "{{ 'OFF' if value_json.inference == 'paused' else 'ON' }}",
        );
        inference.insert("icon".into(), "mdi:motion-sensor".into());
        let mut privacy = self.switch(
            "privacy",
            "Privacy mode",
            "enable_privacy",
            "disable_privacy",
            "{{ 'ON' if value_json.privacy else 'OFF' }}",
        );
        privacy.insert("icon".into(), "mdi:eye-off".into());
        let mut camera = self.panel("sensor", "camera", "Camera");
        camera.insert("device_class".into(), "enum".into());
        camera.insert(
            "options".into(),
            json!([
                "starting",
                "streaming",
                "stalled",
                "reconnecting",
                "failed",
                "unknown"
            ]),
        );
        camera.insert("value_template".into(), "{{ value_json.camera }}".into());
        camera.insert("entity_category".into(), "diagnostic".into());
        camera.insert("icon".into(), "mdi:cctv".into());
        let mut rate = self.panel("sensor", "inference_rate", "Inference rate");
        rate.insert("unit_of_measurement".into(), "Hz".into());
        rate.insert("state_class".into(), "measurement".into());
        // Offline presence has no rate: `None` is Home Assistant's unknown.
        rate.insert(
            "value_template".into(),
            "{{ value_json.rate_hz if value_json.rate_hz is defined else 'None' }}".into(),
        );
        rate.insert("entity_category".into(), "diagnostic".into());
        rate.insert("icon".into(), "mdi:speedometer".into());
        vec![
            (self.topic("switch", "inference"), inference),
            (self.topic("switch", "privacy"), privacy),
            (self.topic("sensor", "camera"), camera),
            (self.topic("sensor", "inference_rate"), rate),
        ]
    }

    /// The discovery messages of this camera with `zones`: (topic, retained payload).
    pub fn configs(&self, zones: &[Zone]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut occupancy = self.base("binary_sensor", "occupancy", "Occupancy");
        occupancy.insert("device_class".into(), "occupancy".into());
        occupancy.insert(
            "value_template".into(),
            "{{ 'ON' if value_json.occupied else 'OFF' }}".into(),
        );
        out.push((self.topic("binary_sensor", "occupancy"), occupancy));
        let mut count = self.base("sensor", "person_count", "Person count");
        count.insert("state_class".into(), "measurement".into());
        count.insert("unit_of_measurement".into(), "persons".into());
        count.insert("icon".into(), "mdi:account-group".into());
        count.insert("value_template".into(), "{{ value_json.count }}".into());
        out.push((self.topic("sensor", "person_count"), count));
        let mut posture = self.base("sensor", "posture", "Posture");
        posture.insert("device_class".into(), "enum".into());
        posture.insert(
            "options".into(),
            json!(["standing", "sitting", "lying", "none"]),
        );
        posture.insert("icon".into(), "mdi:human".into());
        posture.insert(
            "value_template".into(),
            "{{ value_json.posture if value_json.posture is defined else 'none' }}".into(),
        );
        out.push((self.topic("sensor", "posture"), posture));
        if self.falls {
            out.extend(self.fall_entities());
        }
        out.extend(self.panel_entities());
        for zone in zones.iter().filter(|z| !z.ignore) {
            let object = format!("zone_{}", zone.name.replace(['.', '-'], "_"));
            let mut z = self.base("binary_sensor", &object, &format!("Zone {}", zone.name));
            z.insert("device_class".into(), "occupancy".into());
            z.insert(
                "value_template".into(),
                format!(
                    "{{{{ 'ON' if value_json.zones['{}'] is defined and value_json.zones['{}'].occupied else 'OFF' }}}}",
                    zone.name, zone.name
                )
                .into(),
            );
            out.push((self.topic("binary_sensor", &object), z));
        }
        out.into_iter()
            .map(|(topic, m)| {
                let payload = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
                (topic, payload)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn zones() -> Vec<Zone> {
        vec![crate::tracking::zones::rect("bed", 0.0, 0.5, 0.5, 0.5)]
    }

    #[test]
    fn every_entity_has_the_required_keys_and_stable_ids() {
        let device = Device {
            prefix: "homeassistant",
            instance_id: "room-101",
            room_id: "101",
            falls: true,
        };
        let configs = device.configs(&zones());
        let topics: Vec<&str> = configs.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/binary_sensor/orion_room_101/occupancy/config",
                "homeassistant/sensor/orion_room_101/person_count/config",
                "homeassistant/sensor/orion_room_101/posture/config",
                "homeassistant/binary_sensor/orion_room_101/fall/config",
                "homeassistant/button/orion_room_101/ack_alert/config",
                "homeassistant/switch/orion_room_101/inference/config",
                "homeassistant/switch/orion_room_101/privacy/config",
                "homeassistant/sensor/orion_room_101/camera/config",
                "homeassistant/sensor/orion_room_101/inference_rate/config",
                "homeassistant/binary_sensor/orion_room_101/zone_bed/config",
            ]
        );
        // The control panel: switches that send plain commands to the
        // control topic, state from presence, available while online.
        for (i, on, off) in [
            (5, "resume_inference", "pause_inference"),
            (6, "enable_privacy", "disable_privacy"),
        ] {
            let v: Value = serde_json::from_slice(&configs[i].1).unwrap();
            assert_eq!(v["command_topic"], "care/control/room-101");
            assert_eq!(v["state_topic"], "care/status/room-101");
            for (key, command) in [("payload_on", on), ("payload_off", off)] {
                let sent: Value = serde_json::from_str(v[key].as_str().expect("payload")).unwrap();
                assert_eq!(sent, json!({ "command": command }));
                let parsed = crate::command::parse(v[key].as_str().unwrap().as_bytes(), 1024)
                    .expect("a valid command");
                assert_eq!(parsed.name, command);
            }
            assert_eq!(v["availability"].as_array().map(Vec::len), Some(1), "{v}");
        }
        for i in [7, 8] {
            let v: Value = serde_json::from_slice(&configs[i].1).unwrap();
            assert_eq!(v["state_topic"], "care/status/room-101");
            assert_eq!(v["entity_category"], "diagnostic");
        }
        let fall: Value = serde_json::from_slice(&configs[3].1).unwrap();
        assert_eq!(fall["device_class"], "safety");
        assert_eq!(fall["state_topic"], "care/alerts/room-101");
        assert_eq!(fall["availability"].as_array().map(Vec::len), Some(1));
        let ack: Value = serde_json::from_slice(&configs[4].1).unwrap();
        assert_eq!(ack["command_topic"], "care/control/room-101");
        let press: Value =
            serde_json::from_str(ack["payload_press"].as_str().expect("payload")).unwrap();
        assert_eq!(press["command"], "ack_alert");
        assert!(ack.get("state_topic").is_none(), "a button has no state");
        let posture: Value = serde_json::from_slice(&configs[2].1).unwrap();
        assert_eq!(posture["device_class"], "enum");
        for (_, payload) in configs.iter().filter(|(t, _)| {
            ![
                "/fall/",
                "/ack_alert/",
                "/switch/",
                "/camera/",
                "/inference_rate/",
            ]
            .iter()
            .any(|k| t.contains(k))
        }) {
            let v: Value = serde_json::from_slice(payload).expect("JSON");
            for key in [
                "name",
                "unique_id",
                "state_topic",
                "availability",
                "device",
                "value_template",
            ] {
                assert!(v.get(key).is_some(), "{key} missing in {v}");
            }
            assert_eq!(v["state_topic"], "care/occupancy/room-101");
            assert_eq!(v["availability"][0]["topic"], "care/status/room-101");
            // Not watching (paused, stream or workers down) is unavailable.
            assert_eq!(v["availability"][1]["topic"], "care/occupancy/room-101");
            assert!(
                v["availability"][1]["value_template"]
                    .as_str()
                    .is_some_and(|t| t.contains("'watching'")),
                "{v}"
            );
            assert_eq!(v["availability_mode"], "all");
            assert_eq!(v["device"]["identifiers"][0], "orion_room_101");
            assert_eq!(v["device"]["name"], "Room 101");
        }
        let v: Value = serde_json::from_slice(&configs[1].1).unwrap();
        assert_eq!(v["state_class"], "measurement");
        assert_eq!(v["unique_id"], "orion_room_101_person_count");
        assert_eq!(v["default_entity_id"], "sensor.orion_room_101_person_count");
        assert!(v.get("object_id").is_none(), "deprecated by Home Assistant");
        // Falls not watched: no fall sensor (it would always say "safe")
        // and no button.
        let quiet = Device {
            falls: false,
            ..device
        };
        let topics: Vec<String> = quiet.configs(&[]).into_iter().map(|(t, _)| t).collect();
        assert_eq!(topics.len(), 7, "{topics:?}");
        assert!(
            !topics
                .iter()
                .any(|t| t.contains("/fall/") || t.contains("ack_alert"))
        );
        // The same camera gives the same ids on every start.
        assert_eq!(device.configs(&zones()), configs);
    }
}
