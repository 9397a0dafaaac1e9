//! Control commands, transport-neutral: parsing and validation of a command
//! message (from MQTT's `care/control/{instance_id}`, the UI or orionctl), and
//! the shape of the reply.
//!
//! Pure functions, no I/O. Anything that is not a well-formed, in-range command
//! becomes a [`Rejection`] whose message says what was wrong and what is allowed;
//! checks that need the running state (a model name in the catalog, "already
//! paused") are the control plane's.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::attention::ExternalRoi;
use crate::config::AutoFocusStrategy;
use crate::tracking::zones::{self, ZoneSpec};

/// Every command, each once: its name on the wire, the params it takes (for
/// messages and `orionctl`), and its parser (params -> a validated
/// [`Command`]). Adding a command: a variant of [`Command`], a row here, and
/// what the control plane does with it.
pub static COMMANDS: [Spec; 21] = [
    Spec::plain("get_status", Command::GetStatus),
    Spec::plain("pause_inference", Command::PauseInference),
    Spec::plain("resume_inference", Command::ResumeInference),
    Spec {
        name: "set_inference_rate",
        params: "rate_hz (0.1..=30)",
        parse: Parse::Params(set_inference_rate),
    },
    Spec {
        name: "set_model_size",
        params: "size (a catalog name)",
        parse: Parse::Params(set_model_size),
    },
    Spec {
        name: "set_attention_rois",
        params: "rois: [{x, y, width, height, name?}, ...] (normalized 0..1)",
        parse: Parse::Params(set_attention_rois),
    },
    Spec::plain("clear_attention_rois", Command::ClearAttentionRois),
    Spec::plain("get_attention_rois", Command::GetAttentionRois),
    Spec {
        name: "set_auto_focus_strategy",
        params: "strategy (simple | smoothing | velocity) + its params",
        parse: Parse::Params(set_auto_focus_strategy),
    },
    Spec::plain("get_auto_focus_strategy", Command::GetAutoFocusStrategy),
    Spec::plain("enable_auto_focus", Command::EnableAutoFocus),
    Spec::plain("disable_auto_focus", Command::DisableAutoFocus),
    Spec::plain("clear_auto_focus_history", Command::ClearAutoFocusHistory),
    Spec::plain("get_auto_focus_stats", Command::GetAutoFocusStats),
    Spec {
        name: "set_zones",
        params: "zones: [{name, polygon: [[x, y], ...]} | {name, rect: {x, y, width, height}}, ...] (normalized 0..1)",
        parse: Parse::Params(set_zones),
    },
    Spec::plain("get_zones", Command::GetZones),
    Spec::plain("clear_zones", Command::ClearZones),
    Spec {
        name: "ack_alert",
        params: "alert_id? (without: every active alert)",
        parse: Parse::Params(ack_alert),
    },
    Spec::plain("enable_privacy", Command::EnablePrivacy),
    Spec::plain("disable_privacy", Command::DisablePrivacy),
    Spec::plain("shutdown", Command::Shutdown),
];

pub const MIN_RATE_HZ: f64 = 0.1;
pub const MAX_RATE_HZ: f64 = 30.0;

/// One command of [`COMMANDS`].
pub struct Spec {
    pub name: &'static str,
    /// What its params are, in words (empty: none).
    pub params: &'static str,
    parse: Parse,
}

/// How a command's params become the command.
enum Parse {
    /// It takes none: this is the command.
    Plain(Command),
    /// Its parser: the params object to the validated command, or why not.
    Params(fn(&Map<String, Value>) -> Result<Command, String>),
}

impl Spec {
    /// A command without params.
    const fn plain(name: &'static str, command: Command) -> Self {
        Self {
            name,
            params: "",
            parse: Parse::Plain(command),
        }
    }

    fn parse(&self, params: &Map<String, Value>) -> Result<Command, String> {
        match &self.parse {
            Parse::Plain(command) => match params.keys().next() {
                None => Ok(command.clone()),
                Some(k) => Err(format!("{} takes no params (got `{k}`)", self.name)),
            },
            Parse::Params(parse) => parse(params),
        }
    }
}

/// A command as data: what it does and its params, validated. Serialized, it
/// is the control message ([`parse`] reads it back): `{"command": name,
/// "params": {...}}`, the one place a client such as `orionctl` builds commands
/// from. Ranges are the daemon's to check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", content = "params", rename_all = "snake_case")]
pub enum Command {
    GetStatus,
    PauseInference,
    ResumeInference,
    SetInferenceRate {
        rate_hz: f64,
    },
    SetModelSize {
        size: String,
    },
    SetAttentionRois {
        rois: Vec<ExternalRoi>,
    },
    ClearAttentionRois,
    GetAttentionRois,
    SetAutoFocusStrategy {
        strategy: AutoFocusStrategy,
        #[serde(flatten)]
        params: BTreeMap<String, f64>,
    },
    GetAutoFocusStrategy,
    EnableAutoFocus,
    DisableAutoFocus,
    ClearAutoFocusHistory,
    GetAutoFocusStats,
    SetZones {
        zones: Vec<ZoneSpec>,
    },
    GetZones,
    ClearZones,
    /// Ends an active fall or down alert (or all of them): someone is on it.
    AckAlert {
        #[serde(skip_serializing_if = "Option::is_none")]
        alert_id: Option<String>,
    },
    /// Privacy mode on: no video leaves the sensor (the live view draws
    /// boxes and figures on a neutral background).
    EnablePrivacy,
    /// Privacy mode off, unless the config sets it (`ui.show_video: false`).
    DisablePrivacy,
    Shutdown,
}

impl Command {
    /// The control message for this command.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A parsed, well-formed command.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: &'static str,
    pub command: Command,
    pub request_id: Option<Value>,
}

/// Why a message is not a valid command; still answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The command name, when the message got that far.
    pub command: Option<String>,
    pub request_id: Option<Value>,
    pub message: String,
}

/// The one reply every control message gets, on `care/health/{instance_id}`.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    /// `command_ack`, or `status` for `get_status`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub instance_id: String,
    pub command: Option<String>,
    pub success: bool,
    pub message: String,
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Value>,
    pub timestamp: String,
}

/// Params of each auto-focus strategy (`miss_limit` is common to all).
pub fn strategy_params(strategy: AutoFocusStrategy) -> &'static [&'static str] {
    match strategy {
        AutoFocusStrategy::Simple => &["miss_limit"],
        AutoFocusStrategy::Smoothing => &["alpha", "miss_limit"],
        AutoFocusStrategy::Velocity => &[
            "velocity_threshold",
            "velocity_factor",
            "max_expansion",
            "miss_limit",
        ],
    }
}

/// Parses one control message of at most `max_bytes`.
pub fn parse(payload: &[u8], max_bytes: usize) -> Result<Request, Rejection> {
    let mut obj = object(payload, max_bytes).map_err(|message| Rejection {
        command: None,
        request_id: None,
        message,
    })?;
    let request_id = match obj.remove("request_id") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v),
        Some(_) => {
            return Err(Rejection {
                command: None,
                request_id: None,
                message: "request_id must be a string or a number".into(),
            });
        }
    };
    let Envelope { name, params } = envelope(obj).map_err(|(command, message)| Rejection {
        command,
        request_id: request_id.clone(),
        message,
    })?;
    let reject = |command: String, message: String| Rejection {
        command: Some(command),
        request_id: request_id.clone(),
        message,
    };
    let Some(spec) = COMMANDS.iter().find(|c| c.name == name) else {
        let shown: String = name.chars().take(64).collect();
        let message = format!("unknown command `{shown}`; allowed: {}", names());
        return Err(reject(shown, message));
    };
    match spec.parse(&params) {
        Ok(command) => Ok(Request {
            name: spec.name,
            command,
            request_id,
        }),
        Err(message) => Err(reject(name, message)),
    }
}

/// The message as a JSON object of at most `max_bytes`, or why not.
fn object(payload: &[u8], max_bytes: usize) -> Result<Map<String, Value>, String> {
    if payload.len() > max_bytes {
        return Err(format!(
            "payload of {} bytes exceeds the limit of {max_bytes} bytes",
            payload.len()
        ));
    }
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        format!("invalid JSON: {e}; expected {{\"command\": \"...\", \"params\": {{...}}}}")
    })?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => {
            Err("a command must be a JSON object: {\"command\": \"...\", \"params\": {...}}".into())
        }
    }
}

/// A command message's name and params.
struct Envelope {
    name: String,
    params: Map<String, Value>,
}

/// The command's name and params (its `request_id` taken out already), or
/// why not, with the name when the message got that far.
fn envelope(mut obj: Map<String, Value>) -> Result<Envelope, (Option<String>, String)> {
    let name = match obj.remove("command") {
        Some(Value::String(s)) => s,
        Some(_) => return Err((None, "`command` must be a string".into())),
        None => return Err((None, "missing `command`; allowed: ".to_string() + &names())),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err((Some(name), "`params` must be an object".into())),
    };
    if let Some(extra) = obj.keys().next() {
        let message = format!("unknown field `{extra}`; allowed: command, params, request_id");
        return Err((Some(name), message));
    }
    Ok(Envelope { name, params })
}

fn names() -> String {
    COMMANDS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn only(params: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(format!(
            "unknown param `{k}`; allowed: {}",
            allowed.join(", ")
        )),
    }
}

fn number(params: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| format!("params.{key} is not a finite number")),
        Some(other) => Err(format!(
            "params.{key} must be a number, got {}",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn set_zones(params: &Map<String, Value>) -> Result<Command, String> {
    only(params, &["zones"])?;
    let specs: Vec<ZoneSpec> = array(
        params,
        "zones",
        "{\"name\": string, \"polygon\": [[x, y], ...]} or {\"name\": string, \"rect\": {\"x\", \"y\", \"width\", \"height\"}}",
        "[{name, rect | polygon}, ...]",
    )?;
    // All or nothing: one bad zone refuses the command.
    zones::validate(&specs)?;
    Ok(Command::SetZones { zones: specs })
}

/// `params.<key>`, an array of `T`; `item` (one element) and `whole` (the
/// array) say what is expected when it is not.
fn array<T: serde::de::DeserializeOwned>(
    params: &Map<String, Value>,
    key: &str,
    item: &str,
    whole: &str,
) -> Result<Vec<T>, String> {
    match params.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value::<T>(v.clone())
                    .map_err(|e| format!("{key}[{i}]: {e}; expected {item}"))
            })
            .collect(),
        Some(other) => Err(format!(
            "params.{key} must be an array, got {}",
            type_name(other)
        )),
        None => Err(format!(
            "missing params.{key}: {whole} in normalized coordinates"
        )),
    }
}

fn set_inference_rate(params: &Map<String, Value>) -> Result<Command, String> {
    only(params, &["rate_hz"])?;
    let rate_hz = number(params, "rate_hz")?.ok_or_else(|| {
        format!("missing params.rate_hz; allowed: {MIN_RATE_HZ}..={MAX_RATE_HZ} Hz")
    })?;
    if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
        return Err(format!(
            "params.rate_hz {rate_hz} is out of range; allowed: {MIN_RATE_HZ}..={MAX_RATE_HZ} Hz"
        ));
    }
    Ok(Command::SetInferenceRate { rate_hz })
}

fn set_model_size(params: &Map<String, Value>) -> Result<Command, String> {
    only(params, &["size"])?;
    match params.get("size") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => {
            Ok(Command::SetModelSize { size: s.clone() })
        }
        Some(Value::String(_)) => Err("params.size must be 1 to 64 characters".into()),
        Some(other) => Err(format!(
            "params.size must be a string, got {}",
            type_name(other)
        )),
        None => Err("missing params.size (a name from models.person_detector.catalog)".into()),
    }
}

fn ack_alert(params: &Map<String, Value>) -> Result<Command, String> {
    only(params, &["alert_id"])?;
    match params.get("alert_id") {
        None => Ok(Command::AckAlert { alert_id: None }),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(Command::AckAlert {
            alert_id: Some(s.clone()),
        }),
        Some(Value::String(_)) => Err("params.alert_id must be 1 to 128 characters".into()),
        Some(other) => Err(format!(
            "params.alert_id must be a string, got {}",
            type_name(other)
        )),
    }
}

fn set_attention_rois(params: &Map<String, Value>) -> Result<Command, String> {
    only(params, &["rois"])?;
    let rois: Vec<ExternalRoi> = array(
        params,
        "rois",
        "{\"x\": 0..1, \"y\": 0..1, \"width\": >0, \"height\": >0, \"name\"?: string}",
        "[{x, y, width, height}, ...]",
    )?;
    Ok(Command::SetAttentionRois { rois })
}

fn set_auto_focus_strategy(params: &Map<String, Value>) -> Result<Command, String> {
    let strategy = match params.get("strategy") {
        Some(Value::String(s)) => match s.as_str() {
            "simple" => AutoFocusStrategy::Simple,
            "smoothing" => AutoFocusStrategy::Smoothing,
            "velocity" => AutoFocusStrategy::Velocity,
            other => {
                return Err(format!(
                    "unknown strategy `{}`; allowed: simple, smoothing, velocity",
                    other.chars().take(64).collect::<String>()
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "params.strategy must be a string, got {}",
                type_name(other)
            ));
        }
        None => return Err("missing params.strategy; allowed: simple, smoothing, velocity".into()),
    };
    let allowed = strategy_params(strategy);
    let mut values = BTreeMap::new();
    for key in params.keys().filter(|k| *k != "strategy") {
        if !allowed.contains(&key.as_str()) {
            return Err(format!(
                "unknown param `{key}` for strategy {}; allowed: {}",
                strategy.name(),
                allowed.join(", ")
            ));
        }
        if let Some(v) = number(params, key)? {
            values.insert(key.clone(), v);
        }
    }
    Ok(Command::SetAutoFocusStrategy {
        strategy,
        params: values,
    })
}

/// A message that arrived on the control topic (or a control call of the UI).
#[derive(Debug)]
pub struct ControlMessage {
    /// Empty when the message was larger than `mqtt.max_command_bytes`
    /// (`oversize` says how large): its bytes are never queued.
    pub payload: Vec<u8>,
    /// Delivered from the broker's retained store rather than published now.
    pub retained: bool,
    pub oversize: Option<usize>,
    /// A UI control call: its reply goes here too (MQTT gets it as well).
    pub reply_to: Option<tokio::sync::oneshot::Sender<Reply>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> Command {
        parse(json.as_bytes(), 65536)
            .unwrap_or_else(|r| panic!("{json}: {}", r.message))
            .command
    }

    fn err(json: &str) -> Rejection {
        parse(json.as_bytes(), 65536).expect_err(json)
    }

    #[test]
    fn well_formed_commands() {
        assert_eq!(ok(r#"{"command":"get_status"}"#), Command::GetStatus);
        assert_eq!(
            ok(r#"{"command":"pause_inference","params":{}}"#),
            Command::PauseInference
        );
        assert_eq!(
            ok(r#"{"command":"set_inference_rate","params":{"rate_hz":2.5}}"#),
            Command::SetInferenceRate { rate_hz: 2.5 }
        );
        assert_eq!(
            ok(r#"{"command":"set_model_size","params":{"size":"n"}}"#),
            Command::SetModelSize { size: "n".into() }
        );
        let Command::SetAttentionRois { rois } = ok(
            r#"{"command":"set_attention_rois","params":{"rois":[{"x":0.1,"y":0.2,"width":0.3,"height":0.4,"name":"bed"}]}}"#,
        ) else {
            panic!("wrong command")
        };
        assert_eq!(rois[0].name.as_deref(), Some("bed"));
        assert_eq!(
            ok(
                r#"{"command":"set_auto_focus_strategy","params":{"strategy":"smoothing","alpha":0.5}}"#
            ),
            Command::SetAutoFocusStrategy {
                strategy: AutoFocusStrategy::Smoothing,
                params: BTreeMap::from([("alpha".to_string(), 0.5)])
            }
        );
    }

    #[test]
    fn request_id_is_echoed_even_on_rejection() {
        let r = parse(br#"{"command":"get_status","request_id":"abc"}"#, 1024).unwrap();
        assert_eq!(r.request_id, Some(Value::String("abc".into())));
        let e = err(r#"{"command":"nope","request_id":7}"#);
        assert_eq!(e.request_id, Some(Value::from(7)));
        assert!(
            e.message.contains("unknown command `nope`") && e.message.contains("get_status"),
            "{}",
            e.message
        );
    }

    #[test]
    fn every_bad_input_says_what_is_wrong_and_allowed() {
        let cases = [
            ("not json", "invalid JSON"),
            ("[1,2]", "must be a JSON object"),
            (r#"{"params":{}}"#, "missing `command`; allowed: get_status"),
            (r#"{"command":42}"#, "`command` must be a string"),
            (
                r#"{"command":"get_status","params":[]}"#,
                "`params` must be an object",
            ),
            (
                r#"{"command":"get_status","parms":{}}"#,
                "unknown field `parms`",
            ),
            (
                r#"{"command":"get_status","params":{"x":1}}"#,
                "takes no params",
            ),
            (
                r#"{"command":"set_inference_rate"}"#,
                "missing params.rate_hz; allowed: 0.1..=30",
            ),
            (
                r#"{"command":"set_inference_rate","params":{"rate_hz":"fast"}}"#,
                "must be a number, got a string",
            ),
            (
                r#"{"command":"set_inference_rate","params":{"rate_hz":0}}"#,
                "out of range; allowed: 0.1..=30",
            ),
            (
                r#"{"command":"set_inference_rate","params":{"rate_hz":31}}"#,
                "out of range",
            ),
            (
                r#"{"command":"set_inference_rate","params":{"rate_hz":1,"x":1}}"#,
                "unknown param `x`",
            ),
            (
                r#"{"command":"set_model_size","params":{"size":5}}"#,
                "params.size must be a string",
            ),
            (r#"{"command":"set_model_size"}"#, "missing params.size"),
            (
                r#"{"command":"ack_alert","params":{"alert_id":7}}"#,
                "params.alert_id must be a string",
            ),
            (
                r#"{"command":"ack_alert","params":{"alert_id":""}}"#,
                "1 to 128 characters",
            ),
            (
                r#"{"command":"ack_alert","params":{"who":"nurse"}}"#,
                "unknown param `who`",
            ),
            (
                r#"{"command":"set_attention_rois","params":{"rois":{}}}"#,
                "must be an array",
            ),
            (
                r#"{"command":"set_attention_rois","params":{"rois":[{"x":"a"}]}}"#,
                "rois[0]",
            ),
            (
                r#"{"command":"set_attention_rois","params":{"rois":[{"x":0,"y":0,"width":1,"height":1,"z":1}]}}"#,
                "unknown field `z`",
            ),
            (
                r#"{"command":"set_auto_focus_strategy","params":{"strategy":"zoom"}}"#,
                "allowed: simple, smoothing, velocity",
            ),
            (
                r#"{"command":"set_auto_focus_strategy","params":{"strategy":"simple","alpha":0.3}}"#,
                "unknown param `alpha` for strategy simple",
            ),
            (
                r#"{"command":"set_auto_focus_strategy","params":{"strategy":"smoothing","alpha":"x"}}"#,
                "must be a number",
            ),
            (
                r#"{"command":"get_status","request_id":{}}"#,
                "request_id must be a string or a number",
            ),
        ];
        for (json, fragment) in cases {
            let e = err(json);
            assert!(
                e.message.contains(fragment),
                "{json}: `{}` lacks `{fragment}`",
                e.message
            );
        }
    }

    #[test]
    fn every_command_round_trips_through_its_message() {
        let mut strategy_params = BTreeMap::new();
        strategy_params.insert("alpha".to_string(), 0.5);
        let all = [
            Command::GetStatus,
            Command::PauseInference,
            Command::ResumeInference,
            Command::SetInferenceRate { rate_hz: 2.5 },
            Command::SetModelSize { size: "n".into() },
            Command::SetAttentionRois {
                rois: vec![ExternalRoi {
                    x: 0.1,
                    y: 0.2,
                    width: 0.3,
                    height: 0.4,
                    name: Some("bed".into()),
                }],
            },
            Command::ClearAttentionRois,
            Command::GetAttentionRois,
            Command::SetAutoFocusStrategy {
                strategy: AutoFocusStrategy::Smoothing,
                params: strategy_params,
            },
            Command::GetAutoFocusStrategy,
            Command::EnableAutoFocus,
            Command::DisableAutoFocus,
            Command::ClearAutoFocusHistory,
            Command::GetAutoFocusStats,
            Command::EnablePrivacy,
            Command::DisablePrivacy,
            Command::SetZones {
                zones: vec![
                    ZoneSpec {
                        name: "bed".into(),
                        polygon: None,
                        rect: Some(zones::ZoneRect {
                            x: 0.1,
                            y: 0.5,
                            width: 0.4,
                            height: 0.4,
                        }),
                        ignore: false,
                        rest: true,
                        exit: false,
                    },
                    ZoneSpec {
                        name: "door".into(),
                        polygon: Some(vec![[0.7, 0.2], [0.95, 0.2], [0.95, 0.9]]),
                        rect: None,
                        ignore: false,
                        rest: false,
                        exit: true,
                    },
                ],
            },
            Command::GetZones,
            Command::ClearZones,
            Command::AckAlert {
                alert_id: Some("cam-1-a3".into()),
            },
            Command::Shutdown,
        ];
        assert_eq!(all.len(), COMMANDS.len(), "every command once");
        let mut names = std::collections::BTreeSet::new();
        for c in all {
            let json = c.to_json();
            let name = json["command"].as_str().expect("the command names itself");
            let bytes = serde_json::to_vec(&json).unwrap();
            let parsed = parse(&bytes, 65536).unwrap_or_else(|e| panic!("{json}: {}", e.message));
            assert_eq!(parsed.name, name, "the table and the type agree");
            assert_eq!(parsed.command, c);
            names.insert(name.to_string());
        }
        assert_eq!(names.len(), COMMANDS.len(), "no name twice");
    }

    #[test]
    fn oversized_payloads_are_refused_before_parsing() {
        let big = vec![b' '; 70_000];
        let e = parse(&big, 65536).unwrap_err();
        assert_eq!(
            e.message,
            "payload of 70000 bytes exceeds the limit of 65536 bytes"
        );
    }
}
