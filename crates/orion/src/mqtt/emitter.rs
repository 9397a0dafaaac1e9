//! MQTT emitter: one camera's broker connection (each camera has its own, with
//! its own last will; its events go over its event publisher's). Publishes
//! results, replies and presence without ever blocking the data path, and hands
//! incoming control messages to the control handler.
//!
//! Owns the rumqttc client and its event loop, which runs in its own task and only
//! polls: it tracks the connection, (re)subscribes to the control topic after every
//! CONNACK, forwards control messages into a bounded channel, and backs off between
//! reconnects (1 s doubling to 30 s, each wait jittered by a quarter and cut
//! short once the broker's port accepts: `super::reconnect`). Publishing is
//! non-blocking: while the broker is away, or when the client's bounded queue is
//! full, the message is dropped and counted, never buffered without bound. The
//! last will marks the sensor offline.
//!
//! Duplicate instance_id: two processes with one MQTT client id knock each other
//! off the broker. After every connection the emitter reads the retained presence
//! of its instance before it says it is connected. When it was just thrown off
//! and that presence is another live session's, another process took the client
//! id: it says so once (log, health reason, metric), leaves cleanly (no last will,
//! so the other's presence stays), and checks every [`CONFLICT_RECHECK`] with a
//! separate client id, without touching the other's connection, until that
//! presence goes offline. No reconnect storm, and the other process keeps running.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::backoff::Backoff;
use crate::command::ControlMessage;
use crate::metrics::Metrics;
use crate::mqtt::presence::PresenceMessage;
use crate::status::MqttStatus;

/// Largest incoming packet read; a larger one (only possible on the control
/// topic) breaks the connection, which is then re-established (a broker's
/// `message_size_limit` keeps such messages away). Up to this size a message is
/// read and, beyond `mqtt.max_command_bytes`, discarded at once and refused.
pub const MAX_INCOMING_PACKET: usize = 32 * 1024 * 1024;
/// Largest outgoing packet (results and status replies are far smaller). A
/// message that would not fit is dropped and counted before it reaches the
/// client: the client would fail the whole connection on it.
const MAX_OUTGOING_PACKET: usize = 1024 * 1024;

/// Whether a message on `topic` fits in one packet (fixed header, topic,
/// packet id, and a margin).
pub fn fits_in_a_packet(topic: &str, payload: &[u8]) -> bool {
    topic.len() + payload.len() + 64 <= MAX_OUTGOING_PACKET
}
/// While another process holds the instance's client id, how often the emitter
/// looks whether it went away.
pub const CONFLICT_RECHECK: Duration = Duration::from_secs(15);
/// Longest wait for the retained presence when checking with a separate client.
const PRESENCE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// After the SUBACKs, how long the retained presence may take to arrive (brokers
/// queue retained messages behind the SUBACK).
const RETAINED_GRACE: Duration = Duration::from_millis(500);
/// How long a reply waits for the connection to count as up (covers
/// [`RETAINED_GRACE`] after a reconnection, not a broker outage).
const REPLY_CONNECT_WAIT: Duration = Duration::from_secs(2);

/// Connection parameters.
#[derive(Clone)]
pub struct EmitterSettings {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub keep_alive: Duration,
    /// Capacity of the client's request queue.
    pub max_pending: usize,
    pub credentials: Option<(String, String)>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Published by the broker, retained, if the connection dies.
    pub last_will: Option<(String, Vec<u8>)>,
    /// Topic whose messages go to the control channel.
    pub control_topic: Option<String>,
    /// This instance's presence topic and session: watched to detect another
    /// live process with the same instance_id.
    pub presence: Option<(String, String)>,
    /// Where a control message that finds the control queue full is answered
    /// `busy` (at most [`BUSY_REPLIES_PER_S`] a second; the rest are counted).
    pub busy: Option<BusyReplies>,
}

/// How the emitter answers control messages the control handler cannot take.
#[derive(Debug, Clone)]
pub struct BusyReplies {
    pub topic: String,
    pub instance_id: String,
    pub max_command_bytes: usize,
}

/// Busy replies per second at most; control messages beyond that while the queue
/// is full are counted in `orion_control_dropped_total`.
pub const BUSY_REPLIES_PER_S: u32 = 50;

impl EmitterSettings {
    /// Client options for `client_id`, with the last will only when `will`.
    pub(crate) fn options(&self, client_id: &str, will: bool) -> MqttOptions {
        let mut opts = MqttOptions::new(client_id, &self.host, self.port);
        opts.set_keep_alive(self.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        if let Some((user, pass)) = &self.credentials {
            opts.set_credentials(user, pass);
        }
        if let Some(tls) = &self.tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        if will && let Some((topic, payload)) = &self.last_will {
            opts.set_last_will(LastWill::new(
                topic,
                payload.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        opts
    }
}

/// The topics of the retained messages under `filter` (non-empty ones), read
/// with a short-lived client of its own (`{client_id}-read`): everything the
/// broker delivers until it has been quiet for `quiet`, at most `timeout`. Empty
/// when the broker cannot be reached.
pub async fn retained_topics(
    settings: &EmitterSettings,
    filter: &str,
    quiet: Duration,
    timeout: Duration,
) -> Vec<String> {
    let opts = settings.options(&format!("{}-read", settings.client_id), false);
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    let mut topics = Vec::new();
    let read = async {
        let mut subscribed = false;
        loop {
            let wait = if subscribed { quiet } else { timeout };
            match tokio::time::timeout(wait, eventloop.poll()).await {
                Err(_) => break,
                Ok(Err(_)) => break,
                Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => {
                    if client.try_subscribe(filter, QoS::AtLeastOnce).is_err() {
                        break;
                    }
                }
                Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) => subscribed = true,
                Ok(Ok(Event::Incoming(Incoming::Publish(p))))
                    if p.retain && !p.payload.is_empty() =>
                {
                    topics.push(p.topic.clone());
                }
                Ok(Ok(_)) => {}
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    let _ = client.try_disconnect();
    topics
}

/// Cheap to clone; held by whoever publishes.
#[derive(Clone)]
pub struct EmitterHandle {
    client: AsyncClient,
    metrics: Arc<Metrics>,
    /// The connection state this emitter publishes.
    status: Arc<watch::Sender<MqttStatus>>,
}

/// The emitter: the handle plus its event loop task.
pub struct Emitter {
    pub handle: EmitterHandle,
    task: JoinHandle<()>,
    cancel: CancellationToken,
}

impl Emitter {
    /// Creates the client and starts its event loop task; connecting happens in
    /// the background (`status` says when it is up). Control messages go to
    /// `control`, if given.
    pub fn start(
        settings: &EmitterSettings,
        metrics: Arc<Metrics>,
        status: Arc<watch::Sender<MqttStatus>>,
        control: Option<mpsc::Sender<ControlMessage>>,
        cancel: CancellationToken,
    ) -> Self {
        let opts = settings.options(&settings.client_id, true);
        let (client, eventloop) = AsyncClient::new(opts, settings.max_pending);
        let endpoint = format!("{}:{}", settings.host, settings.port);
        let task = tokio::spawn(
            poll(PollState {
                eventloop,
                client: client.clone(),
                metrics: metrics.clone(),
                status: status.clone(),
                endpoint,
                control_topic: settings.control_topic.clone(),
                control,
                cancel: cancel.clone(),
                settings: settings.clone(),
                busy_window: (std::time::Instant::now(), 0),
                queue_full_log: crate::logging::RateLimit::new(Duration::from_secs(10)),
            })
            .in_current_span(),
        );
        Self {
            handle: EmitterHandle {
                client,
                metrics,
                status,
            },
            task,
            cancel,
        }
    }

    /// Sends DISCONNECT and waits (at most `timeout`) for the event loop to flush
    /// what was queued before it and end; then stops the task in any case.
    pub async fn disconnect(self, timeout: Duration) -> bool {
        let Emitter {
            handle,
            mut task,
            cancel,
        } = self;
        let connected = handle.status.borrow().connected;
        if connected
            && handle.client.try_disconnect().is_ok()
            && let Ok(r) = tokio::time::timeout(timeout, &mut task).await
        {
            set_connected(&handle.status, false);
            return r.is_ok();
        }
        cancel.cancel();
        let stopped = crate::tasks::stop_one(task, timeout).await;
        set_connected(&handle.status, false);
        stopped && !connected
    }
}

impl EmitterHandle {
    /// Queues `payload` for `topic` at QoS 1 if connected; otherwise drops and
    /// counts it. Never waits.
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> bool {
        self.send(topic, payload, false)
    }

    /// A command reply: never dropped for a full client queue while connected.
    /// Waits (at most `timeout`) for room in the client's queue; drops and counts
    /// only when the broker is away or the wait runs out.
    pub async fn publish_reply(&self, topic: String, payload: Vec<u8>, timeout: Duration) -> bool {
        // Right after a (re)connection the emitter reads the retained presence
        // before it counts as connected (half a second): a reply due then waits.
        let mut connected = self.status.subscribe();
        let wait = REPLY_CONNECT_WAIT.min(timeout);
        let _ = tokio::time::timeout(wait, connected.wait_for(|s| s.connected)).await;
        if !self.status.borrow().connected || !self.fits(&topic, &payload) {
            self.metrics.mqtt_dropped.inc();
            return false;
        }
        let queued = tokio::time::timeout(
            timeout,
            self.client.publish(topic, QoS::AtLeastOnce, false, payload),
        )
        .await;
        if let Ok(Ok(())) = queued {
            self.metrics.mqtt_published.inc();
            true
        } else {
            self.metrics.mqtt_dropped.inc();
            false
        }
    }

    fn fits(&self, topic: &str, payload: &[u8]) -> bool {
        let fits = fits_in_a_packet(topic, payload);
        if !fits {
            tracing::error!(
                topic,
                bytes = payload.len(),
                "message larger than one MQTT packet may be ({MAX_OUTGOING_PACKET} bytes); dropped"
            );
        }
        fits
    }

    /// Like [`EmitterHandle::publish`], retained by the broker.
    pub fn publish_retained(&self, topic: String, payload: Vec<u8>) -> bool {
        self.send(topic, payload, true)
    }

    fn send(&self, topic: String, payload: Vec<u8>, retain: bool) -> bool {
        if !self.status.borrow().connected || !self.fits(&topic, &payload) {
            self.metrics.mqtt_dropped.inc();
            return false;
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => {
                self.metrics.mqtt_published.inc();
                true
            }
            Err(e) => {
                self.metrics.mqtt_dropped.inc();
                tracing::debug!(error = %e, "publish dropped");
                false
            }
        }
    }
}

/// Publishes the connection state, waking waiters only on a change.
fn set_connected(status: &watch::Sender<MqttStatus>, connected: bool) {
    status.send_if_modified(|m| std::mem::replace(&mut m.connected, connected) != connected);
}

struct PollState {
    eventloop: EventLoop,
    client: AsyncClient,
    metrics: Arc<Metrics>,
    status: Arc<watch::Sender<MqttStatus>>,
    endpoint: String,
    control_topic: Option<String>,
    control: Option<mpsc::Sender<ControlMessage>>,
    cancel: CancellationToken,
    settings: EmitterSettings,
    /// Busy replies sent in the current second.
    busy_window: (std::time::Instant, u32),
    queue_full_log: crate::logging::RateLimit,
}

impl PollState {
    /// A control message found the control queue full: answer `busy` if the
    /// budget allows, else count it as dropped. Never waits.
    fn refuse_busy(&mut self, payload: &[u8]) {
        let now = std::time::Instant::now();
        if now.duration_since(self.busy_window.0) >= Duration::from_secs(1) {
            self.busy_window = (now, 0);
        }
        let answered = match &self.settings.busy {
            Some(b) if self.busy_window.1 < BUSY_REPLIES_PER_S => {
                let (command, request_id) =
                    match crate::command::parse(payload, b.max_command_bytes) {
                        Ok(req) => (Some(req.name.to_string()), req.request_id),
                        Err(rej) => (rej.command, rej.request_id),
                    };
                let reply = crate::command::Reply {
                    kind: "command_ack",
                    instance_id: b.instance_id.clone(),
                    command,
                    success: false,
                    message: "busy: too many control messages at once; this one was not run, send it again".into(),
                    data: serde_json::json!({"busy": true}),
                    request_id,
                    timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now())
                        .to_string(),
                };
                serde_json::to_vec(&reply).is_ok_and(|bytes| {
                    self.client
                        .try_publish(b.topic.clone(), QoS::AtLeastOnce, false, bytes)
                        .is_ok()
                })
            }
            _ => false,
        };
        if answered {
            self.busy_window.1 += 1;
            self.metrics.control_busy.inc();
        } else {
            self.metrics.control_dropped.inc();
        }
        if let Some(held_back) = self.queue_full_log.allow(now) {
            tracing::warn!(
                "control queue full: command answered busy or dropped (counted){}",
                self.queue_full_log.and_more(held_back)
            );
        }
    }
}

/// Where a connection is between CONNACK and use.
#[derive(Debug, Default)]
struct Joining {
    /// SUBACKs still to come before the retained presence is awaited.
    subacks_left: usize,
    /// Once every SUBACK came: when the wait for the retained presence ends.
    decide_at: Option<tokio::time::Instant>,
    /// Another session's online presence, seen while joining.
    other: Option<PresenceMessage>,
}

/// Another session's presence on our topic: `None` for ours, for anything that
/// does not parse, and for offline ones, except, with `or_its_will`, another
/// session's last will. When we join after being thrown off, taking the client id
/// back makes the broker publish the will of the process that had taken it,
/// before our subscription sees the retained message.
fn other_session(payload: &[u8], session: &str, or_its_will: bool) -> Option<PresenceMessage> {
    let p: PresenceMessage = serde_json::from_slice(payload).ok()?;
    let counts =
        p.state == "online" || (or_its_will && p.reason.as_deref() == Some("connection_lost"));
    (counts && !p.session.is_empty() && p.session != session).then_some(p)
}

fn describe(p: &PresenceMessage) -> String {
    format!("host {}, pid {}, started {}", p.host, p.pid, p.started_at)
}

/// Why we sent DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// To make way for another process with our instance_id.
    MakeWay,
    /// To stop: read until the broker closes the connection. Closing the
    /// socket ourselves with its acknowledgements unread would reset it, and
    /// the broker would drop what it had not read yet (the last publishes
    /// before the DISCONNECT: the offline presence, removals).
    Stop,
}

/// The connection's life: joining, up, lost, making way, leaving.
struct Link {
    conn: PollState,
    backoff: Backoff,
    /// The current outage was logged (later failed attempts are debug).
    outage_logged: bool,
    /// Between CONNACK and use.
    joining: Option<Joining>,
    /// The last connection was closed by the broker or the network, not by us.
    thrown_off: bool,
    leaving: Option<Leaving>,
    /// Our presence topic and session.
    presence: Option<(String, String)>,
    instance: String,
}

async fn poll(conn: PollState) {
    let presence = conn.settings.presence.clone();
    let instance = presence
        .as_ref()
        .and_then(|(t, _)| t.rsplit('/').next())
        .unwrap_or("?")
        .to_string();
    let mut link = Link {
        conn,
        backoff: Backoff::default(),
        outage_logged: false,
        joining: None,
        thrown_off: false,
        leaving: None,
        presence,
        instance,
    };
    link.run().await;
}

impl Link {
    async fn run(&mut self) {
        loop {
            let decide_at = self.joining.as_ref().and_then(|j| j.decide_at);
            let event = tokio::select! {
                _ = self.conn.cancel.cancelled() => break,
                e = self.conn.eventloop.poll() => Some(e),
                _ = sleep_until(decide_at) => None,
            };
            let go_on = match event {
                None => {
                    self.joined();
                    true
                }
                Some(Ok(Event::Incoming(Incoming::ConnAck(_)))) => {
                    self.connected();
                    true
                }
                Some(Ok(Event::Incoming(Incoming::SubAck(_)))) => {
                    self.subscribed();
                    true
                }
                Some(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                    self.received(&p);
                    true
                }
                Some(Ok(Event::Outgoing(Outgoing::Disconnect))) => self.disconnected().await,
                Some(Ok(_)) => true,
                Some(Err(e)) => self.lost(&e).await,
            };
            if !go_on {
                break;
            }
        }
        set_connected(&self.conn.status, false);
    }

    /// Joined: decides whether another live process holds our instance_id.
    fn joined(&mut self) {
        let other = self.joining.take().and_then(|j| j.other);
        let conn = &mut self.conn;
        match other {
            Some(other) if self.thrown_off => {
                let reason = format!(
                    "duplicate instance_id {}: another process took the MQTT client id ({})",
                    self.instance,
                    describe(&other)
                );
                if conn.status.borrow().conflict.is_none() {
                    tracing::error!(broker = %conn.endpoint, "{reason}; standing down until it goes offline");
                }
                conn.status.send_modify(|m| m.conflict = Some(reason));
                self.leaving = Some(Leaving::MakeWay);
                let _ = conn.client.try_disconnect();
            }
            other => {
                if let Some(other) = other {
                    tracing::warn!(
                        "the retained presence of instance_id {} is another session's ({}); if that process is alive it will report a duplicate",
                        self.instance,
                        describe(&other)
                    );
                }
                if conn.status.borrow().conflict.is_some() {
                    tracing::info!("the other process with this instance_id is gone");
                    conn.status.send_modify(|m| m.conflict = None);
                }
                self.thrown_off = false;
                set_connected(&conn.status, true);
                tracing::info!(broker = %conn.endpoint, "connected to MQTT broker");
            }
        }
    }

    /// CONNACK. Clean session: subscriptions are gone after a reconnect. The
    /// presence topic first: its retained message arrives before the SUBACK
    /// of the control topic.
    fn connected(&mut self) {
        let conn = &mut self.conn;
        let mut j = Joining::default();
        let topics = self.presence.iter().map(|(t, _)| t);
        for topic in topics.chain(conn.control_topic.iter()) {
            match conn.client.try_subscribe(topic, QoS::AtLeastOnce) {
                Ok(()) => j.subacks_left += 1,
                Err(e) => tracing::error!(error = %e, topic, "cannot subscribe"),
            }
        }
        conn.metrics.mqtt_connections.inc();
        conn.status.send_modify(|m| m.connection += 1);
        self.backoff.reset();
        self.outage_logged = false;
        // A new connection: whatever we were leaving is over.
        self.leaving = None;
        if self.presence.is_some() && j.subacks_left > 0 {
            self.joining = Some(j);
        } else {
            set_connected(&conn.status, true);
            tracing::info!(broker = %conn.endpoint, "connected to MQTT broker");
        }
    }

    /// A SUBACK: after the last one, the retained presence has a grace period.
    fn subscribed(&mut self) {
        if let Some(j) = self.joining.as_mut() {
            j.subacks_left = j.subacks_left.saturating_sub(1);
            if j.subacks_left == 0 {
                j.decide_at = Some(tokio::time::Instant::now() + RETAINED_GRACE);
            }
        }
    }

    fn received(&mut self, p: &rumqttc::Publish) {
        if let Some((topic, session)) = &self.presence
            && p.topic == *topic
        {
            match self.joining.as_mut() {
                Some(j) => j.other = other_session(&p.payload, session, true),
                None => self.presence_while_up(&p.payload),
            }
            return;
        }
        if self.conn.control_topic.as_deref() == Some(p.topic.as_str()) {
            self.command(p);
        }
    }

    /// Another process publishes presence for our instance with a client id
    /// of its own (a duplicate); it is gone when its offline message comes.
    fn presence_while_up(&mut self, payload: &[u8]) {
        let Some((_, session)) = &self.presence else {
            return;
        };
        let conn = &self.conn;
        let gone = serde_json::from_slice::<PresenceMessage>(payload)
            .is_ok_and(|m| m.state == "offline" && m.session != *session);
        if gone && conn.status.borrow().conflict.is_some() {
            tracing::info!("the other process with this instance_id went offline");
            conn.status.send_modify(|m| m.conflict = None);
        }
        if let Some(other) = other_session(payload, session, false) {
            let reason = format!(
                "duplicate instance_id {}: another process publishes its presence ({})",
                self.instance,
                describe(&other)
            );
            if conn.status.borrow().conflict.is_none() {
                tracing::error!("{reason}");
            }
            conn.status.send_modify(|m| m.conflict = Some(reason));
        }
    }

    /// A control message: queued for the control handler (never waits).
    fn command(&mut self, p: &rumqttc::Publish) {
        let conn = &mut self.conn;
        let Some(control) = &conn.control else {
            return;
        };
        conn.metrics.control_received.inc();
        let max = conn
            .settings
            .busy
            .as_ref()
            .map_or(usize::MAX, |b| b.max_command_bytes);
        let oversize = (p.payload.len() > max).then_some(p.payload.len());
        let full = control
            .try_send(ControlMessage {
                payload: if oversize.is_some() {
                    Vec::new()
                } else {
                    p.payload.to_vec()
                },
                retained: p.retain,
                oversize,
                reply_to: None,
            })
            .is_err();
        if full {
            conn.refuse_busy(&p.payload);
        }
    }

    /// We sent DISCONNECT: to make way (then waits until the other's presence
    /// is gone), or to stop. False: stop polling.
    async fn disconnected(&mut self) -> bool {
        set_connected(&self.conn.status, false);
        if self.leaving != Some(Leaving::MakeWay) {
            tracing::info!("disconnected from MQTT broker");
            self.leaving = Some(Leaving::Stop);
            return true;
        }
        self.conn.eventloop.clean();
        // Without touching the other's connection.
        let (topic, session) = self.presence.clone().unwrap_or_default();
        loop {
            tokio::select! {
                _ = self.conn.cancel.cancelled() => return false,
                _ = tokio::time::sleep(CONFLICT_RECHECK) => {}
            }
            match retained_other_session(&self.conn.settings, &topic, &session).await {
                Ok(Some(_)) => tracing::debug!("the other process still holds the instance_id"),
                Ok(None) => break,
                Err(e) => tracing::debug!(error = %e, "presence check failed"),
            }
        }
        tracing::info!("the other process's presence is gone; connecting again");
        self.leaving = None;
        self.thrown_off = false;
        true
    }

    /// The connection failed or was lost: waits to reconnect (the back-off,
    /// cut short when the broker's port comes back). False: stop polling.
    async fn lost(&mut self, e: &rumqttc::ConnectionError) -> bool {
        if self.leaving == Some(Leaving::Stop) {
            return false;
        }
        let conn = &mut self.conn;
        let was_connected = conn.status.borrow().connected || self.joining.is_some();
        self.joining = None;
        set_connected(&conn.status, false);
        conn.metrics.mqtt_reconnects.inc();
        if was_connected {
            self.thrown_off = true;
        }
        if was_connected || !self.outage_logged {
            tracing::warn!(broker = %conn.endpoint, error = %e, retry_in_s = self.backoff.peek().as_secs_f64(), "MQTT connection lost");
            self.outage_logged = true;
        } else {
            tracing::debug!(broker = %conn.endpoint, error = %e, "MQTT reconnect failed");
        }
        tokio::select! {
            _ = conn.cancel.cancelled() => false,
            _ = super::reconnect::wait(self.backoff.next_delay(), &conn.settings.host, conn.settings.port) => true,
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads the retained message of `topic` with a client id of its own (so that
/// the process holding ours is not disturbed): another live session's presence,
/// or `None`.
async fn retained_other_session(
    settings: &EmitterSettings,
    topic: &str,
    session: &str,
) -> Result<Option<PresenceMessage>, rumqttc::ConnectionError> {
    let id = format!("{}-check-{}", settings.client_id, std::process::id());
    let (client, mut events) = AsyncClient::new(settings.options(&id, false), 4);
    let mut found = None;
    let check = async {
        loop {
            match events.poll().await? {
                Event::Incoming(Incoming::ConnAck(_)) => {
                    let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
                }
                Event::Incoming(Incoming::Publish(p)) if p.topic == topic => {
                    found = other_session(&p.payload, session, false);
                    return Ok(());
                }
                Event::Incoming(Incoming::SubAck(_)) => break,
                _ => {}
            }
        }
        // The retained message, if any, follows the SUBACK.
        let grace = tokio::time::sleep(RETAINED_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                _ = &mut grace => return Ok(()),
                e = events.poll() => {
                    if let Event::Incoming(Incoming::Publish(p)) = e? && p.topic == topic {
                        found = other_session(&p.payload, session, false);
                        return Ok(());
                    }
                }
            }
        }
    };
    let r = tokio::time::timeout(PRESENCE_CHECK_TIMEOUT, check).await;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
    match r {
        Ok(Ok(())) => Ok(found),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(rumqttc::ConnectionError::NetworkTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publishing_while_the_broker_is_away_drops_and_counts_without_waiting() {
        // A port with nothing listening: the event loop keeps failing to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let metrics = Arc::new(Metrics::default());
        let (status, watch) = crate::status::channels(std::time::Duration::from_secs(10), false);
        let emitter = Emitter::start(
            &EmitterSettings {
                client_id: "emitter-test".into(),
                host: "127.0.0.1".into(),
                port,
                keep_alive: Duration::from_secs(5),
                max_pending: 4,
                credentials: None,
                tls: None,
                last_will: None,
                control_topic: None,
                presence: None,
                busy: None,
            },
            metrics.clone(),
            status.mqtt.clone(),
            None,
            CancellationToken::new(),
        );
        let started = std::time::Instant::now();
        for i in 0..1000 {
            assert!(!emitter.handle.publish("t".into(), vec![i as u8; 100]));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "publish must not wait"
        );
        assert_eq!(metrics.mqtt_dropped.get(), 1000);
        assert_eq!(metrics.mqtt_published.get(), 0);
        // The event loop task stops on request even while reconnecting.
        assert!(
            tokio::time::timeout(
                Duration::from_secs(5),
                emitter.disconnect(Duration::from_secs(2))
            )
            .await
            .expect("disconnect returns"),
            "event loop stopped"
        );
        assert!(!watch.connected());
    }
}
