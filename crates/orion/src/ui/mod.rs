//! The live view (docs/ui.md): a page served by the health HTTP server that shows
//! each camera's live frame with the detections, ROIs and zones drawn over it,
//! its status, and controls that go through the camera's control handler (the
//! same validation, order and replies as MQTT).
//!
//! Owns the UI routes (`/`, `/ui/*`, `/api/*`) and the token check; the live
//! feeds are `crate::live`'s. It never changes the sensor itself: every change is a
//! command queued to the control handler. It never writes a frame to disk, and
//! encodes JPEG only while someone watches.
//!
//! Access: without `ui.token` (only allowed on a loopback listener) requests
//! must name a loopback host (a web page elsewhere cannot reach the sensor by
//! DNS rebinding). With a token, every request needs it: GETs in the
//! `X-Orion-Token` header, the `orion_token` cookie (set when the page is opened
//! with `?token=`), or `?token=`; control calls only in the header (a cross-site
//! form cannot set it), compared in constant time. A request that carries an
//! `Origin` (a browser's) must come from this server's own origin, token or not.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::command::{Command, ControlMessage};
use crate::control::{ControlPlane, ZoneTable};
use crate::health::Registry;
use crate::live::{self, LiveFeed};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Longest wait for a command's reply (a model swap takes up to two startup
/// timeouts).
const COMMAND_WAIT: Duration = Duration::from_secs(120);
/// The cookie that carries the token for the page's GET requests.
const COOKIE: &str = "orion_token";

/// One camera as the UI sees it.
pub struct UiCamera {
    pub instance_id: String,
    pub room_id: String,
    pub width: u32,
    pub height: u32,
    /// The camera's control handler queue (shared with MQTT).
    pub control: mpsc::Sender<ControlMessage>,
    pub max_command_bytes: usize,
    /// Read-only status (`get_status`) without a queued command.
    pub plane: Arc<ControlPlane>,
    pub zones: Arc<dyn ZoneTable>,
    pub feed: Arc<LiveFeed>,
}

/// The UI of a running daemon.
pub struct Ui {
    pub token: Option<String>,
    pub show_video: bool,
    pub max_fps: f64,
    /// Cameras come and go while the daemon runs (a reload).
    cameras: RwLock<Vec<Arc<UiCamera>>>,
    pub registry: Arc<Registry>,
}

/// A parsed HTTP request (head and body).
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter (no percent-decoding: ids and tokens are plain).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.header("cookie")?
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// What the UI answers.
pub enum Response {
    Full {
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// A server-sent event stream of one camera's live feed.
    Live(Arc<LiveFeed>),
}

fn full(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
    Response::Full {
        status,
        content_type,
        headers: Vec::new(),
        body: body.into(),
    }
}

fn json_response(status: u16, v: &Value) -> Response {
    full(status, "application/json", v.to_string() + "\n")
}

fn error(status: u16, message: &str) -> Response {
    json_response(status, &json!({"success": false, "message": message}))
}

/// Equal in time independent of where they differ (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// Whether `host` (a Host header) names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a browser's `Origin`, when there is one, is this server's own (the
/// page's own calls are same-origin; a page elsewhere is refused even where it
/// could make the browser send the cookie).
fn same_origin(req: &Request) -> bool {
    let Some(origin) = req.header("origin") else {
        return true;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (authority, req.header("host")) {
        (Some(a), Some(host)) => a.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// How a request is allowed, if it is.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Allowed,
    /// Allowed, and the token came in the query: set the cookie.
    AllowedSetCookie,
    Denied,
}

impl Ui {
    /// Whether `path` is one of the UI's.
    pub fn owns(path: &str) -> bool {
        path == "/" || path.starts_with("/ui/") || path.starts_with("/api/")
    }

    fn access(&self, req: &Request) -> Access {
        if !same_origin(req) {
            return Access::Denied;
        }
        let Some(token) = &self.token else {
            let host_ok = req.header("host").is_some_and(loopback_host);
            return if host_ok {
                Access::Allowed
            } else {
                Access::Denied
            };
        };
        let matches = |given: Option<&str>| {
            given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
        };
        if matches(req.header("x-orion-token")) {
            return Access::Allowed;
        }
        if req.method != "GET" {
            return Access::Denied;
        }
        if matches(req.cookie(COOKIE)) {
            Access::Allowed
        } else if matches(req.param("token")) {
            Access::AllowedSetCookie
        } else {
            Access::Denied
        }
    }

    pub fn new(
        token: Option<String>,
        show_video: bool,
        max_fps: f64,
        registry: Arc<Registry>,
    ) -> Self {
        Self {
            token,
            show_video,
            max_fps,
            cameras: RwLock::new(Vec::new()),
            registry,
        }
    }

    pub fn add_camera(&self, camera: UiCamera) {
        self.cameras_mut().push(Arc::new(camera));
    }

    pub fn remove_camera(&self, instance_id: &str) {
        self.cameras_mut().retain(|c| c.instance_id != instance_id);
    }

    /// Lists the cameras in the order of `ids` (the config's).
    pub fn sort_cameras(&self, ids: &[String]) {
        self.cameras_mut()
            .sort_by_key(|c| ids.iter().position(|id| *id == c.instance_id));
    }

    fn cameras(&self) -> Vec<Arc<UiCamera>> {
        self.cameras.read().expect("ui cameras poisoned").clone()
    }

    fn cameras_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<UiCamera>>> {
        self.cameras.write().expect("ui cameras poisoned")
    }

    fn camera(&self, req: &Request) -> Option<Arc<UiCamera>> {
        let cameras = self.cameras();
        match req.param("camera") {
            Some(id) => cameras.into_iter().find(|c| c.instance_id == id),
            None => cameras.into_iter().next(),
        }
    }

    /// Checks a request from its head alone (before any body is read): the
    /// largest body its route takes (0: none), or the refusal to answer.
    pub fn admit(&self, req: &Request) -> Result<usize, Response> {
        if self.access(req) == Access::Denied {
            return Err(self.denied(req));
        }
        Ok(match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/api/command") => self
                .cameras()
                .iter()
                .map(|c| c.max_command_bytes)
                .max()
                .unwrap_or(0),
            _ => 0,
        })
    }

    fn denied(&self, req: &Request) -> Response {
        let message = if !same_origin(req) {
            "cross-origin requests are refused"
        } else if self.token.is_some() {
            "token required: open the page with ?token=..., or send X-Orion-Token"
        } else {
            "the UI without a token answers only requests to a loopback host"
        };
        error(401, message)
    }

    /// Answers one UI request.
    pub async fn handle(&self, req: &Request) -> Response {
        let access = self.access(req);
        if access == Access::Denied {
            return self.denied(req);
        }
        let mut response = self.route(req).await;
        if access == Access::AllowedSetCookie
            && let (Some(token), Response::Full { headers, .. }) = (&self.token, &mut response)
        {
            headers.push((
                "Set-Cookie",
                format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
            ));
        }
        response
    }

    async fn route(&self, req: &Request) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => full(200, "text/html; charset=utf-8", INDEX_HTML),
            ("GET", "/ui/app.js") => full(200, "text/javascript; charset=utf-8", APP_JS),
            ("GET", "/ui/app.css") => full(200, "text/css; charset=utf-8", APP_CSS),
            ("GET", "/api/cameras") => json_response(200, &self.cameras_json()),
            ("GET", "/api/status") => match self.camera(req) {
                Some(c) => json_response(200, &self.status_json(&c).await),
                None => error(404, "no such camera"),
            },
            ("GET", "/api/live") => match self.camera(req) {
                Some(c) if c.feed.viewers() >= live::MAX_VIEWERS => error(
                    503,
                    &format!("{} viewers already watch this camera", live::MAX_VIEWERS),
                ),
                Some(c) => Response::Live(c.feed.clone()),
                None => error(404, "no such camera"),
            },
            ("POST", "/api/command") => match self.camera(req) {
                Some(c) => self.command(&c, req).await,
                None => error(404, "no such camera"),
            },
            (_, "/api/command") => error(405, "control calls are POST"),
            _ => error(404, "not found"),
        }
    }

    fn cameras_json(&self) -> Value {
        json!({
            "show_video": self.show_video,
            "max_fps": self.max_fps,
            "cameras": self.cameras().iter().map(|c| json!({
                "instance_id": c.instance_id,
                "room_id": c.room_id,
                "width": c.width,
                "height": c.height,
            })).collect::<Vec<_>>(),
        })
    }

    /// The camera's health report and its `get_status` data, and its zones.
    async fn status_json(&self, c: &UiCamera) -> Value {
        let report = self.registry.report();
        let health = report
            .cameras
            .iter()
            .find(|r| r.instance_id == c.instance_id)
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        let mut status = c.plane.execute(&Command::GetStatus).await.data;
        if let Some(map) = status.as_object_mut() {
            // The page needs none of it (it is redacted anyway).
            map.remove("config");
        }
        json!({
            "health": health,
            "workers": report.workers,
            "status": status,
            "zones": c.zones.zones(),
        })
    }

    /// Queues the body as a command on the camera's control handler and waits
    /// for its reply.
    async fn command(&self, c: &UiCamera, req: &Request) -> Response {
        let json_body = req
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"));
        if !json_body {
            return error(
                415,
                "control calls are JSON (Content-Type: application/json)",
            );
        }
        let (tx, rx) = oneshot::channel();
        let oversize = (req.body.len() > c.max_command_bytes).then_some(req.body.len());
        let message = ControlMessage {
            payload: if oversize.is_some() {
                Vec::new()
            } else {
                req.body.clone()
            },
            retained: false,
            oversize,
            reply_to: Some(tx),
        };
        if c.control.try_send(message).is_err() {
            return error(
                503,
                "busy: too many control messages at once; send it again",
            );
        }
        match tokio::time::timeout(COMMAND_WAIT, rx).await {
            Ok(Ok(reply)) => match serde_json::to_value(&reply) {
                Ok(v) => json_response(200, &v),
                Err(_) => error(500, "cannot serialize the reply"),
            },
            _ => error(504, "no reply from the control handler"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn only_loopback_hosts_without_a_token() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "127.0.0.2",
            "localhost",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "192.168.1.5:8080",
            "localhost.evil.example",
            "",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn an_origin_must_be_the_servers_own() {
        let req = |origin: Option<&str>| Request {
            method: "POST".into(),
            path: "/api/command".into(),
            headers: [("host", Some("127.0.0.1:8080")), ("origin", origin)]
                .into_iter()
                .filter_map(|(n, v)| Some((n.to_string(), v?.to_string())))
                .collect(),
            ..Request::default()
        };
        assert!(same_origin(&req(None)), "no Origin: not a browser's call");
        assert!(same_origin(&req(Some("http://127.0.0.1:8080"))));
        for evil in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "null",
            "http://127.0.0.1:8080.evil.example",
        ] {
            assert!(!same_origin(&req(Some(evil))), "{evil}");
        }
    }

    #[test]
    fn query_and_cookie_parameters() {
        let req = Request {
            method: "GET".into(),
            path: "/api/live".into(),
            query: "camera=room-1&token=abc".into(),
            headers: vec![("cookie".into(), "a=1; orion_token=xyz".into())],
            body: Vec::new(),
        };
        assert_eq!(req.param("camera"), Some("room-1"));
        assert_eq!(req.param("token"), Some("abc"));
        assert_eq!(req.param("nope"), None);
        assert_eq!(req.cookie(COOKIE), Some("xyz"));
    }
}
