//! Event publisher: delivers one camera's outbox to the broker, oldest first,
//! and removes each event only when the broker has acknowledged it (PUBACK).
//! After the backlog it publishes the camera's current states (retained: its
//! occupancy and its alerts).
//!
//! Owns an MQTT connection of its own (`{client_id}-events`, clean session, no
//! last will) so that every packet id on it is one of its events: acknowledgements
//! map to events without guessing. At most [`WINDOW`] events are in flight. When
//! the connection drops, whatever was not acknowledged is sent again from the
//! outbox after the reconnection (so a consumer may see an event twice, with the
//! same `event_id`; never none). An event delivered more than
//! [`DELAYED_AFTER`] after it happened carries `"delayed": true` and `delay_s`.
//!
//! It never publishes anything but the camera's events and states, and stands
//! down (no connection) while another process holds the camera's instance_id.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::disk::now_ms;
use super::store::{Outbox, Record};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::mqtt::emitter::EmitterSettings;
use crate::status::MqttStatus;

/// Events published and not yet acknowledged, at most.
pub const WINDOW: usize = 32;
/// Delivered later than this after it happened: `delayed`.
pub const DELAYED_AFTER: Duration = Duration::from_secs(1);
/// At a stop, how long events in flight may take to be acknowledged (they stay
/// in the outbox otherwise, for the next run).
const STOP_FLUSH: Duration = Duration::from_secs(1);

/// One camera's publisher.
pub struct EventPublisher {
    pub camera: String,
    pub outbox: Arc<Outbox>,
    /// The camera's connection settings; the client id gets `-events`.
    pub settings: EmitterSettings,
    /// The camera's current states by topic (occupancy, alerts), published
    /// retained after the events before them and again on every connection
    /// (`None` until decided: then an empty retained message removes a
    /// previous run's). Absent for cameras without any.
    pub states: Option<watch::Receiver<States>>,
    /// The camera's main connection: no events while another process holds
    /// the instance_id.
    pub mqtt: watch::Receiver<MqttStatus>,
    pub metrics: Arc<Metrics>,
}

/// A camera's retained states: topic -> payload (`None`: not decided yet).
pub type States = BTreeMap<String, Option<Vec<u8>>>;

/// What a packet in flight was.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Event { seq: u64, delayed: bool },
    State,
}

struct Connection {
    client: AsyncClient,
    eventloop: EventLoop,
    up: bool,
    /// Published, not yet given a packet id by the event loop (in order).
    unassigned: VecDeque<Sent>,
    in_flight: HashMap<u16, Sent>,
    /// The last event handed to the client on this connection.
    cursor: Option<u64>,
    /// What each state topic was published with on this connection.
    published: BTreeMap<String, Vec<u8>>,
}

impl Connection {
    fn new(settings: &EmitterSettings) -> Self {
        let mut opts = settings.options(&format!("{}-events", settings.client_id), false);
        opts.set_inflight(WINDOW as u16 + 1);
        let (client, eventloop) = AsyncClient::new(opts, WINDOW + 4);
        Self {
            client,
            eventloop,
            up: false,
            unassigned: VecDeque::new(),
            in_flight: HashMap::new(),
            cursor: None,
            published: BTreeMap::new(),
        }
    }

    fn busy(&self) -> usize {
        self.unassigned.len() + self.in_flight.len()
    }

    /// Forgets what was in flight: it is sent again from the outbox on the
    /// next connection.
    fn lost(&mut self) {
        self.up = false;
        self.unassigned.clear();
        self.in_flight.clear();
        self.cursor = None;
        self.published.clear();
        self.eventloop.pending.clear();
    }
}

/// The payload as delivered at `now_ms`: marked `delayed` when late.
pub fn delivered_payload(record: &Record, now_ms: u64) -> (Vec<u8>, bool) {
    let late_ms = now_ms.saturating_sub(record.produced_ms);
    if late_ms < DELAYED_AFTER.as_millis() as u64 {
        return (record.payload.clone(), false);
    }
    let payload =
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&record.payload)
        {
            Ok(mut m) => {
                m.insert("delayed".into(), true.into());
                m.insert("delay_s".into(), (late_ms as f64 / 1000.0).into());
                serde_json::to_vec(&m).unwrap_or_else(|_| record.payload.clone())
            }
            Err(_) => record.payload.clone(),
        };
    (payload, true)
}

impl EventPublisher {
    /// Runs until `cancel`; then waits (at most [`STOP_FLUSH`]) for the events
    /// in flight to be acknowledged and disconnects.
    pub async fn run(mut self, cancel: CancellationToken) {
        let notify = self.outbox.notifier(&self.camera);
        let mut backoff = Backoff::default();
        let mut conn: Option<Connection> = None;
        let mut outage_logged = false;
        let mut mqtt_alive = true;
        let mut states_alive = self.states.is_some();
        loop {
            if self.mqtt.borrow().conflict.is_some() {
                // Another process holds the instance_id: make way (dropping the
                // connection loses nothing; the outbox keeps the events).
                conn = None;
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = self.mqtt.changed(), if mqtt_alive => mqtt_alive = r.is_ok(),
                }
                continue;
            }
            let c = conn.get_or_insert_with(|| Connection::new(&self.settings));
            let states_changed = async {
                match self.states.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.mqtt.changed(), if mqtt_alive => mqtt_alive = r.is_ok(),
                _ = notify.notified() => {}
                ok = states_changed, if states_alive => states_alive = ok,
                event = c.eventloop.poll() => match event {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        c.lost();
                        c.up = true;
                        backoff.reset();
                        if outage_logged {
                            tracing::info!(camera = %self.camera, waiting = self.outbox.pending(&self.camera), "event connection back; delivering the outbox");
                        }
                        outage_logged = false;
                    }
                    Ok(event) => self.track(c, &event),
                    Err(e) => {
                        c.lost();
                        if !outage_logged {
                            tracing::warn!(camera = %self.camera, error = %e, "event connection lost; events wait in the outbox");
                            outage_logged = true;
                        }
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = crate::mqtt::reconnect::wait(backoff.next_delay(), &self.settings.host, self.settings.port) => {}
                        }
                    }
                },
            }
            self.fill(c);
        }
        if let Some(c) = conn {
            self.finish(c).await;
        }
    }

    /// Follows the packets: a packet id for what was published last, an
    /// acknowledgement removes its event from the outbox.
    fn track(&self, c: &mut Connection, event: &Event) {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(sent) = c.unassigned.pop_front() {
                    c.in_flight.insert(*pkid, sent);
                }
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(Sent::Event { seq, delayed }) = c.in_flight.remove(&ack.pkid) {
                    self.outbox.remove(&self.camera, seq);
                    if delayed {
                        self.metrics.outbox_delayed.inc();
                    }
                }
            }
            _ => {}
        }
    }

    /// Hands events to the client up to the window, then the states that
    /// changed once nothing older is left to send.
    fn fill(&self, c: &mut Connection) {
        if !c.up {
            return;
        }
        let room = WINDOW.saturating_sub(c.busy());
        if room > 0 {
            for (seq, record) in self.outbox.next(&self.camera, c.cursor, room) {
                let (payload, delayed) = delivered_payload(&record, now_ms());
                if !crate::mqtt::emitter::fits_in_a_packet(&record.topic, &payload) {
                    // It could never go out, and would block every event after it.
                    tracing::error!(camera = %self.camera, bytes = payload.len(), "event larger than one MQTT packet; dropped");
                    self.outbox.drop_event(&self.camera, seq);
                    c.cursor = Some(seq);
                    continue;
                }
                if c.client
                    .try_publish(record.topic.clone(), QoS::AtLeastOnce, false, payload)
                    .is_err()
                {
                    break;
                }
                c.unassigned.push_back(Sent::Event { seq, delayed });
                c.cursor = Some(seq);
            }
        }
        let Some(rx) = &self.states else {
            return;
        };
        if self.outbox.waiting_after(&self.camera, c.cursor) {
            return;
        }
        // Undecided: an empty retained message removes a previous run's state.
        let due: Vec<(String, Vec<u8>)> = rx
            .borrow()
            .iter()
            .filter(|(topic, payload)| {
                c.published.get(*topic).map(Vec::as_slice)
                    != Some(payload.as_deref().unwrap_or(&[]))
            })
            .map(|(topic, payload)| (topic.clone(), payload.clone().unwrap_or_default()))
            .collect();
        for (topic, payload) in due {
            if c.client
                .try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                .is_err()
            {
                return;
            }
            c.unassigned.push_back(Sent::State);
            c.published.insert(topic, payload);
        }
    }

    /// At a stop: lets the events in flight be acknowledged (bounded), then
    /// disconnects and reads until the broker closes the connection.
    async fn finish(&self, mut c: Connection) {
        if !c.up {
            return;
        }
        let flush = async {
            while c.busy() > 0 {
                match c.eventloop.poll().await {
                    Ok(event) => self.track(&mut c, &event),
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(STOP_FLUSH, flush).await;
        if c.client.try_disconnect().is_ok() {
            let closed = async { while c.eventloop.poll().await.is_ok() {} };
            let _ = tokio::time::timeout(Duration::from_millis(500), closed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_delivered_late_says_so_and_keeps_its_fields() {
        let record = Record {
            topic: "care/events/a".into(),
            produced_ms: 1_000_000,
            payload:
                br#"{"type":"person_left","event_id":"a-1","timestamp":"2026-11-28T03:12:00.000Z"}"#
                    .to_vec(),
        };
        let (on_time, delayed) = delivered_payload(&record, 1_000_400);
        assert!(!delayed);
        assert_eq!(on_time, record.payload, "on time: sent as it is");
        let (late, delayed) = delivered_payload(&record, 1_063_250);
        assert!(delayed);
        let v: serde_json::Value = serde_json::from_slice(&late).expect("json");
        assert_eq!(v["delayed"], true);
        assert_eq!(v["delay_s"], 63.25);
        assert_eq!(v["event_id"], "a-1");
        assert_eq!(v["timestamp"], "2026-11-28T03:12:00.000Z", "original time");
    }
}
