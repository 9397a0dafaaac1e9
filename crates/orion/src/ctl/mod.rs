//! `orionctl`: the operator's command-line client. Sends one control command to an
//! instance over MQTT and waits for its reply, or watches an instance's detections
//! and status.
//!
//! Owns only client-side concerns (arguments, connection, matching the reply by
//! `request_id`, printing). Commands are built with the daemon's own
//! [`Command`] type (names and shapes cannot drift apart); the daemon checks
//! every value and its reply message is shown as it is.

mod print;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};

use crate::attention::ExternalRoi;
use crate::command::Command;
use crate::config::{AutoFocusStrategy, BrokerAddr};
use crate::tracking::zones::{ZoneRect, ZoneSpec};

/// Operate Orion instances over MQTT.
#[derive(Debug, Parser)]
#[command(name = "orionctl", version)]
pub struct Cli {
    /// Broker address.
    #[arg(
        long,
        env = "ORION_BROKER",
        default_value = "mqtt://127.0.0.1:1883",
        global = true
    )]
    pub broker: String,
    /// Instance to talk to (its `instance_id`).
    #[arg(
        long,
        short,
        env = "ORION_INSTANCE",
        default_value = "orion-demo",
        global = true
    )]
    pub instance: String,
    /// Seconds to wait for the connection and the reply.
    #[arg(long, default_value_t = 10.0, global = true)]
    pub timeout: f64,
    /// Print the raw JSON reply (or messages, for `watch`).
    #[arg(long, global = true)]
    pub json: bool,
    #[arg(long, env = "ORION_MQTT_USERNAME", global = true)]
    pub username: Option<String>,
    #[arg(
        long,
        env = "ORION_MQTT_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Connect with TLS.
    #[arg(long, global = true)]
    pub tls: bool,
    /// CA file for TLS (PEM); the system roots otherwise.
    #[arg(long, global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Uptime, health, stream, workers, emitter and effective config.
    Status,
    /// Stop inference (capture continues).
    Pause,
    /// Restart inference.
    Resume,
    /// Set the inference rate (0.1 to 30 Hz).
    Rate { hz: f64 },
    /// Swap the model (a name from the instance's model catalog).
    Model { size: String },
    /// External regions of interest.
    Rois {
        #[command(subcommand)]
        action: RoisCmd,
    },
    /// Named zones of the view (bed, door, ...): events when people enter and
    /// leave them.
    Zones {
        #[command(subcommand)]
        action: ZonesCmd,
    },
    /// Auto-focus.
    Autofocus {
        #[command(subcommand)]
        action: AutofocusCmd,
    },
    /// Privacy mode: `on` (no video leaves the sensor; the live view draws
    /// boxes and figures) or `off`, until the camera restarts (`off` is
    /// refused where the config sets privacy).
    Privacy {
        #[arg(value_enum)]
        mode: OnOff,
    },
    /// Acknowledge a fall or down alert (all active ones without an id):
    /// someone is on it; it is no longer announced.
    Ack {
        #[arg(value_name = "ALERT_ID")]
        alert_id: Option<String>,
    },
    /// Shut the instance down (it replies first).
    Shutdown,
    /// Send a raw JSON command, e.g. '{"command":"get_status"}'.
    Send {
        #[arg(value_name = "JSON")]
        payload: String,
    },
    /// Live view of detections, status and replies.
    Watch {
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Every instance on the broker, from the retained presence topics: room,
    /// online/offline, camera, inference, version, uptime, and since when it
    /// is online (started) or offline (shut down) (sorted by instance; --json
    /// for scripts).
    List,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum RoisCmd {
    /// Replace the ROIs: each X,Y,W,H in normalized coordinates (0..1).
    Set {
        #[arg(required = true, value_name = "X,Y,W,H")]
        rois: Vec<String>,
    },
    /// Remove the external ROIs (back to auto-focus or the full frame).
    Clear,
    /// Show the external ROIs.
    Get,
}

#[derive(Debug, Subcommand)]
pub enum ZonesCmd {
    /// Replace the zones: each NAME=X,Y,W,H, a rectangle in normalized
    /// coordinates (0..1), with `:rest` (a bed, an armchair), `:exit` (a
    /// door) or `:ignore` (a picture, a TV) after it for that kind of zone;
    /// polygons go through `send`.
    Set {
        #[arg(required = true, value_name = "NAME=X,Y,W,H[:KIND]")]
        zones: Vec<String>,
    },
    /// Remove every zone.
    Clear,
    /// Show the zones.
    Get,
}

#[derive(Debug, Subcommand)]
pub enum AutofocusCmd {
    /// Follow the people the model finds.
    Enable,
    /// Stop following (external ROIs or the full frame).
    Disable,
    /// Current strategy and parameters.
    Get,
    /// Frames, hits and misses, applied suggestions per strategy.
    Stats,
    /// Forget the suggestion history.
    Clear,
    /// Switch strategy: simple, smoothing [alpha=A], velocity
    /// [velocity_threshold=T velocity_factor=F max_expansion=E]; all take miss_limit=N.
    Strategy {
        name: String,
        #[arg(value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
}

/// Exit codes: 0 success, 1 the instance refused the command, 2 usage (clap),
/// 3 no connection or no reply in time.
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_UNREACHABLE: u8 = 3;

/// The command's JSON, or a usage error found before sending anything. Built
/// from the daemon's own [`Command`] type, so the two never disagree on names
/// or shapes; ranges are the daemon's to check (its reply says what is allowed).
pub fn command_json(cmd: &Cmd) -> anyhow::Result<Value> {
    let command = match cmd {
        Cmd::Status => Command::GetStatus,
        Cmd::Pause => Command::PauseInference,
        Cmd::Resume => Command::ResumeInference,
        Cmd::Rate { hz } => Command::SetInferenceRate { rate_hz: *hz },
        Cmd::Model { size } => Command::SetModelSize { size: size.clone() },
        Cmd::Privacy { mode: OnOff::On } => Command::EnablePrivacy,
        Cmd::Privacy { mode: OnOff::Off } => Command::DisablePrivacy,
        Cmd::Ack { alert_id } => Command::AckAlert {
            alert_id: alert_id.clone(),
        },
        Cmd::Rois {
            action: RoisCmd::Set { rois },
        } => Command::SetAttentionRois {
            rois: rois
                .iter()
                .map(|r| parse_roi(r))
                .collect::<anyhow::Result<Vec<_>>>()?,
        },
        Cmd::Rois {
            action: RoisCmd::Clear,
        } => Command::ClearAttentionRois,
        Cmd::Rois {
            action: RoisCmd::Get,
        } => Command::GetAttentionRois,
        Cmd::Zones { action } => match action {
            ZonesCmd::Set { zones } => Command::SetZones {
                zones: zones
                    .iter()
                    .map(|z| parse_zone(z))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            },
            ZonesCmd::Clear => Command::ClearZones,
            ZonesCmd::Get => Command::GetZones,
        },
        Cmd::Autofocus { action } => match action {
            AutofocusCmd::Enable => Command::EnableAutoFocus,
            AutofocusCmd::Disable => Command::DisableAutoFocus,
            AutofocusCmd::Get => Command::GetAutoFocusStrategy,
            AutofocusCmd::Stats => Command::GetAutoFocusStats,
            AutofocusCmd::Clear => Command::ClearAutoFocusHistory,
            AutofocusCmd::Strategy { name, params } => {
                let strategy: AutoFocusStrategy =
                    serde_json::from_value(Value::String(name.clone())).map_err(|_| {
                        anyhow::anyhow!(
                            "unknown strategy `{name}`; allowed: simple, smoothing, velocity"
                        )
                    })?;
                let mut values = std::collections::BTreeMap::new();
                for kv in params {
                    let (k, v) = kv
                        .split_once('=')
                        .with_context(|| format!("`{kv}` is not KEY=VALUE"))?;
                    let v: f64 = v
                        .parse()
                        .with_context(|| format!("`{v}` in `{kv}` is not a number"))?;
                    values.insert(k.to_string(), v);
                }
                Command::SetAutoFocusStrategy {
                    strategy,
                    params: values,
                }
            }
        },
        Cmd::Shutdown => Command::Shutdown,
        Cmd::Send { payload } => {
            return serde_json::from_str(payload).context("the argument of `send` is not JSON");
        }
        Cmd::Watch { .. } | Cmd::List => bail!("watch and list are not commands"),
    };
    Ok(command.to_json())
}

fn parse_roi(s: &str) -> anyhow::Result<ExternalRoi> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("`{s}` is not X,Y,W,H (four numbers)"))?;
    let [x, y, width, height] = v[..] else {
        bail!("`{s}` is not X,Y,W,H (four numbers)");
    };
    Ok(ExternalRoi {
        x,
        y,
        width,
        height,
        name: None,
    })
}

/// `NAME=X,Y,W,H[:rest|:exit|:ignore]` as a rectangular zone.
fn parse_zone(s: &str) -> anyhow::Result<ZoneSpec> {
    let (name, rest) = s
        .split_once('=')
        .with_context(|| format!("`{s}` is not NAME=X,Y,W,H[:rest|:exit|:ignore]"))?;
    let (rect, kind) = rest.split_once(':').unwrap_or((rest, ""));
    if !["", "rest", "exit", "ignore"].contains(&kind) {
        anyhow::bail!("`{s}`: the kind after `:` is rest, exit or ignore, got `{kind}`");
    }
    let roi = parse_roi(rect)?;
    Ok(ZoneSpec {
        name: name.to_string(),
        polygon: None,
        rect: Some(ZoneRect {
            x: roi.x,
            y: roi.y,
            width: roi.width,
            height: roi.height,
        }),
        ignore: kind == "ignore",
        rest: kind == "rest",
        exit: kind == "exit",
    })
}

struct Connection {
    client: AsyncClient,
    eventloop: EventLoop,
    /// Publishes that arrived while subscribing.
    early: std::collections::VecDeque<(String, Vec<u8>)>,
}

impl Connection {
    async fn open(cli: &Cli, subscriptions: &[String], timeout: Duration) -> anyhow::Result<Self> {
        let (host, port, tls) = match BrokerAddr::parse(&cli.broker).map_err(anyhow::Error::msg)? {
            BrokerAddr::External { host, port, tls } => (host, port, tls),
            BrokerAddr::Embedded => bail!("--broker must be mqtt://host:port or mqtts://host:port"),
        };
        let id = format!("orionctl-{}-{}", std::process::id(), nanos() % 1_000_000);
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        if let Some(user) = &cli.username {
            opts.set_credentials(user, cli.password.clone().unwrap_or_default());
        }
        if tls || cli.tls || cli.ca_file.is_some() {
            let tls = crate::mqtt::tls::client_config(cli.ca_file.as_deref())?;
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let setup = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => break,
                    Ok(_) => {}
                    Err(e) => bail!("cannot connect to {}: {e}", cli.broker),
                }
            }
            for topic in subscriptions {
                client.subscribe(topic, QoS::AtLeastOnce).await?;
            }
            let mut acked = 0;
            let mut early = std::collections::VecDeque::new();
            while acked < subscriptions.len() {
                match eventloop.poll().await? {
                    Event::Incoming(Incoming::SubAck(_)) => acked += 1,
                    Event::Incoming(Incoming::Publish(p)) => {
                        early.push_back((p.topic.clone(), p.payload.to_vec()))
                    }
                    _ => {}
                }
            }
            Ok(early)
        };
        let early = tokio::time::timeout(timeout, setup)
            .await
            .map_err(|_| anyhow::anyhow!("no connection to {} within {timeout:?}", cli.broker))??;
        Ok(Self {
            client,
            eventloop,
            early,
        })
    }

    /// Next publish received, `None` on timeout.
    async fn next_publish(
        &mut self,
        until: tokio::time::Instant,
    ) -> anyhow::Result<Option<(String, Vec<u8>)>> {
        if let Some(p) = self.early.pop_front() {
            return Ok(Some(p));
        }
        loop {
            let event = match tokio::time::timeout_at(until, self.eventloop.poll()).await {
                Err(_) => return Ok(None),
                Ok(e) => e.context("connection to the broker lost")?,
            };
            if let Event::Incoming(Incoming::Publish(p)) = event {
                return Ok(Some((p.topic.clone(), p.payload.to_vec())));
            }
        }
    }

    async fn close(mut self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while self.eventloop.poll().await.is_ok() {}
        })
        .await;
    }
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let result = match &cli.command {
        Cmd::Watch { count } => watch(&cli, *count).await,
        Cmd::List => list(&cli).await,
        cmd => match command_json(cmd) {
            Ok(json) => request(&cli, json).await,
            Err(e) => {
                eprintln!("orionctl: {e:#}");
                return 2;
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("orionctl: {e:#}");
            EXIT_UNREACHABLE
        }
    }
}

/// How long a command waits for its reply before it looks at the presences:
/// an instance that is not online by then (the broker sends the retained
/// presences at once; a daemon just starting publishes its own within this)
/// is named with the ones that are, instead of waiting out the timeout.
const ABSENT_AFTER: Duration = Duration::from_secs(2);

/// The presences on the broker (`care/status/+`), heard while a command
/// waits for its reply.
#[derive(Default)]
struct Instances {
    presences: std::collections::BTreeMap<String, Value>,
}

impl Instances {
    fn heard(&mut self, topic: &str, payload: &[u8]) {
        let instance = topic.rsplit('/').next().unwrap_or_default().to_string();
        match serde_json::from_slice::<Value>(payload) {
            Ok(v @ Value::Object(_)) => {
                self.presences.insert(instance, v);
            }
            // An empty retained message: a removed camera.
            _ => {
                self.presences.remove(&instance);
            }
        }
    }

    /// Why `instance` cannot answer: absent or offline, with the instances
    /// that are there.
    fn why_not(&self, instance: &str, broker: &str) -> Option<String> {
        let state = self.presences.get(instance).map(|p| p["state"].clone());
        if state.as_ref().and_then(Value::as_str) == Some("online") {
            return None;
        }
        let others: Vec<String> = self
            .presences
            .iter()
            .filter(|(id, _)| id.as_str() != instance)
            .map(|(id, p)| format!("{id} ({})", p["state"].as_str().unwrap_or("?")))
            .collect();
        let there = if others.is_empty() {
            let other = if state.is_some() { "other " } else { "" };
            format!("no {other}instance has a presence on {broker}")
        } else {
            format!(
                "instances on {broker}: {} (choose one with --instance ID or ORION_INSTANCE)",
                others.join(", ")
            )
        };
        Some(match state {
            None => format!("no instance `{instance}` on the broker; {there}"),
            Some(_) => format!("instance `{instance}` is offline; {there}"),
        })
    }
}

async fn request(cli: &Cli, mut command: Value) -> anyhow::Result<u8> {
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
    let health = crate::topics::health(&cli.instance);
    let topics = [health.clone(), crate::topics::STATUS_ALL.to_string()];
    let mut conn = Connection::open(cli, &topics, timeout).await?;
    let request_id = format!("orionctl-{}-{}", std::process::id(), nanos());
    if let Value::Object(map) = &mut command {
        map.insert("request_id".into(), Value::String(request_id.clone()));
    }
    let name = command
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    conn.client
        .publish(
            crate::topics::control(&cli.instance),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&command)?,
        )
        .await?;
    let until = tokio::time::Instant::now() + timeout;
    let mut look_at = Some(tokio::time::Instant::now() + ABSENT_AFTER);
    let mut instances = Instances::default();
    let reply = loop {
        let wake = look_at.map_or(until, |at| at.min(until));
        let Some((topic, payload)) = conn.next_publish(wake).await? else {
            if tokio::time::Instant::now() < until {
                look_at = None;
                // Only with presences heard (a broker may hide them from
                // this client: then the reply is waited for).
                if !instances.presences.is_empty()
                    && let Some(why) = instances.why_not(&cli.instance, &cli.broker)
                {
                    conn.close().await;
                    bail!("{why}");
                }
                continue;
            }
            conn.close().await;
            bail!(
                "no reply from instance `{}` within {timeout:?} (is it running and connected to {}?)",
                cli.instance,
                cli.broker
            );
        };
        if topic != health {
            instances.heard(&topic, &payload);
            continue;
        }
        let Ok(reply) = serde_json::from_slice::<Value>(&payload) else {
            continue;
        };
        if reply.get("request_id").and_then(Value::as_str) == Some(request_id.as_str()) {
            break reply;
        }
    };
    conn.close().await;
    let success = reply
        .get("success")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if cli.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&reply)?));
    } else {
        out(&print::reply(&name, &reply));
    }
    Ok(if success { 0 } else { EXIT_REFUSED })
}

/// After the subscription, how long `list` waits for one more retained presence
/// before it considers the set complete (brokers send them right after the
/// SUBACK, in a burst).
const LIST_QUIET: Duration = Duration::from_millis(500);

async fn list(cli: &Cli) -> anyhow::Result<u8> {
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
    let mut conn = Connection::open(cli, &[crate::topics::STATUS_ALL.to_string()], timeout).await?;
    let mut presences = std::collections::BTreeMap::new();
    let mut unreadable = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let until = (tokio::time::Instant::now() + LIST_QUIET).min(deadline);
        let Some((topic, payload)) = conn.next_publish(until).await? else {
            break;
        };
        let instance = topic.rsplit('/').next().unwrap_or_default().to_string();
        match serde_json::from_slice::<Value>(&payload) {
            Ok(v @ Value::Object(_)) => {
                presences.insert(instance, v);
            }
            _ => unreadable += 1,
        }
    }
    conn.close().await;
    let now = SystemTime::now();
    let rows: Vec<Value> = presences
        .into_iter()
        .map(|(instance, mut v)| {
            let uptime = (v["state"] == "online")
                .then(|| age_s(&v["started_at"], now))
                .flatten();
            v["instance_id"] = Value::String(instance);
            v["uptime_s"] = uptime.map_or(Value::Null, |u| json!(u));
            v
        })
        .collect();
    if cli.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
    } else {
        out(&print::fleet(&rows));
    }
    if unreadable > 0 {
        eprintln!(
            "orionctl: {unreadable} presence message(s) were not JSON objects and are left out"
        );
    }
    Ok(0)
}

/// Seconds from an RFC 3339 timestamp to `now`.
fn age_s(t: &Value, now: SystemTime) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(t.as_str()?).ok()?;
    Some(now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0))
}

async fn watch(cli: &Cli, count: Option<u64>) -> anyhow::Result<u8> {
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
    let id = &cli.instance;
    let topics = [
        crate::topics::inferences_all(id),
        crate::topics::status(id),
        crate::topics::health(id),
        crate::topics::events(id),
        crate::topics::occupancy(id),
        crate::topics::alerts(id),
    ];
    let mut conn = Connection::open(cli, &topics, timeout).await?;
    if !cli.json {
        eprintln!(
            "watching instance `{id}` on {} (Ctrl-C to stop)",
            cli.broker
        );
    }
    let mut seen = 0;
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    loop {
        if count.is_some_and(|n| seen >= n) {
            break;
        }
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            n = conn.next_publish(far) => n?,
        };
        let Some((topic, payload)) = next else { break };
        seen += 1;
        let line = if cli.json {
            String::from_utf8_lossy(&payload).into_owned()
        } else {
            print::watch_line(&topic, &payload, std::time::SystemTime::now())
        };
        // A reader that went away (`orionctl watch | head`) ends the watch.
        use std::io::Write as _;
        if writeln!(std::io::stdout(), "{line}").is_err() {
            break;
        }
    }
    conn.close().await;
    Ok(0)
}

/// Writes `text` to stdout; a reader that went away (`orionctl --json status
/// | head`) is no error (`print!` would panic on the closed pipe).
fn out(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["orionctl", "--json", "send", r#"{"command":"x"}"#]).unwrap();
        assert!(cli.json);
        assert_eq!(command_json(&cli.command).unwrap()["command"], "x");
    }

    #[test]
    fn commands_map_to_json() {
        let cli =
            Cli::try_parse_from(["orionctl", "rois", "set", "0.1,0.2,0.3,0.4", "0,0,1,1"]).unwrap();
        let j = command_json(&cli.command).unwrap();
        assert_eq!(j["command"], "set_attention_rois");
        assert_eq!(
            j["params"]["rois"][0],
            json!({"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.4})
        );
        let cli = Cli::try_parse_from([
            "orionctl",
            "autofocus",
            "strategy",
            "smoothing",
            "alpha=0.5",
        ])
        .unwrap();
        let j = command_json(&cli.command).unwrap();
        assert_eq!(j["params"], json!({"strategy": "smoothing", "alpha": 0.5}));
        let cli = Cli::try_parse_from(["orionctl", "rate", "2.5"]).unwrap();
        assert_eq!(
            command_json(&cli.command).unwrap()["params"]["rate_hz"],
            2.5
        );
    }

    #[test]
    fn malformed_arguments_are_usage_errors() {
        let cli = Cli::try_parse_from(["orionctl", "rois", "set", "0.1,0.2"]).unwrap();
        assert!(
            command_json(&cli.command)
                .unwrap_err()
                .to_string()
                .contains("X,Y,W,H")
        );
        let cli = Cli::try_parse_from(["orionctl", "autofocus", "strategy", "smoothing", "alpha"])
            .unwrap();
        assert!(command_json(&cli.command).is_err());
        let cli = Cli::try_parse_from(["orionctl", "autofocus", "strategy", "zoom"]).unwrap();
        assert!(
            command_json(&cli.command)
                .unwrap_err()
                .to_string()
                .contains("allowed: simple, smoothing, velocity")
        );
        assert!(Cli::try_parse_from(["orionctl", "rate", "fast"]).is_err());
        assert!(Cli::try_parse_from(["orionctl", "frobnicate"]).is_err());
    }
}
