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

use std::convert::Infallible;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{self, Body, Bytes};
use axum::extract::{Extension, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::command::{Command, ControlMessage};
use crate::control::{ControlPlane, RoomTable};
use crate::health::Registry;
use crate::live::{self, LiveFeed, Viewer};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The page while the daemon starts (warm-up): it reloads itself.
const STARTING_PAGE: &str = "<!doctype html><meta http-equiv=\"refresh\" content=\"2\"><title>Orion</title><p>Orion is starting; this page reloads by itself.</p>\n";
/// Longest wait for a command's reply (a model swap takes up to two startup
/// timeouts).
const COMMAND_WAIT: Duration = Duration::from_secs(120);
/// How long a control call's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Control-call body bytes buffered at once over all connections; a body that
/// does not fit is answered 503 (busy) unread.
pub const BODY_BUDGET: usize = 4 * 1024 * 1024;
/// A comment line on an idle live-view stream, so that a gone viewer is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The cookie that carries the token for the page's GET requests.
const COOKIE: &str = "orion_token";

/// Where the UI appears once the cameras are up (until then its routes say
/// `starting`).
pub type UiSlot = OnceLock<Arc<Ui>>;

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
    /// The camera's room: its zones and alerts.
    pub room: Arc<dyn RoomTable>,
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
    /// Room for control-call bodies ([`BODY_BUDGET`] bytes).
    bodies: Semaphore,
}

/// The UI's routes, behind the access check ([`gate`]).
pub fn router(slot: Arc<UiSlot>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/api/cameras", get(cameras))
        .route("/api/status", get(status))
        .route("/api/live", get(watch))
        .route(
            "/api/command",
            post(command).fallback(|| async {
                error(StatusCode::METHOD_NOT_ALLOWED, "control calls are POST")
            }),
        )
        .route_layer(middleware::from_fn_with_state(slot, gate))
}

/// The one access check of every UI route (see the module doc): `starting`
/// until the UI is up, 401 without access; hands the handlers the [`Ui`], and
/// sets the cookie when the token came in the address.
async fn gate(State(slot): State<Arc<UiSlot>>, mut req: Request, next: Next) -> Response {
    let Some(ui) = slot.get().cloned() else {
        // The page itself asks again until the cameras are up.
        let (content_type, body) = if req.uri().path() == "/" {
            ("text/html; charset=utf-8", STARTING_PAGE)
        } else {
            ("text/plain", "starting\n")
        };
        let headers = [
            (header::CONTENT_TYPE, content_type),
            (header::RETRY_AFTER, "2"),
        ];
        return (StatusCode::SERVICE_UNAVAILABLE, headers, body).into_response();
    };
    let access = ui.access(req.method(), req.uri(), req.headers());
    if access == Access::Denied {
        return ui.denied(req.headers());
    }
    req.extensions_mut().insert(ui.clone());
    let mut response = next.run(req).await;
    if access == Access::AllowedSetCookie
        && let Some(token) = &ui.token
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string() + "\n",
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"success": false, "message": message}))
}

/// A request refused with a status and a message (answered as [`error`]).
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

fn refused<T>(status: StatusCode, why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(status, why.into()))
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

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a browser's `Origin`, when there is one, is this server's own (the
/// page's own calls are same-origin; a page elsewhere is refused even where it
/// could make the browser send the cookie).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    match (authority, header_str(headers, header::HOST)) {
        (Some(a), Some(host)) => a.eq_ignore_ascii_case(host),
        _ => false,
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    header_str(headers, header::COOKIE)?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The query parameters the UI reads (percent-decoded).
#[derive(Debug, Default, Deserialize)]
struct Params {
    camera: Option<String>,
    token: Option<String>,
}

impl Params {
    fn of(uri: &Uri) -> Self {
        Query::<Params>::try_from_uri(uri)
            .map(|q| q.0)
            .unwrap_or_default()
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
    fn access(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Access {
        if !same_origin(headers) {
            return Access::Denied;
        }
        let Some(token) = &self.token else {
            let host_ok = header_str(headers, header::HOST).is_some_and(loopback_host);
            return if host_ok {
                Access::Allowed
            } else {
                Access::Denied
            };
        };
        let matches = |given: Option<&str>| {
            given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
        };
        if matches(headers.get("x-orion-token").and_then(|v| v.to_str().ok())) {
            return Access::Allowed;
        }
        if method != Method::GET {
            return Access::Denied;
        }
        if matches(cookie(headers, COOKIE)) {
            Access::Allowed
        } else if matches(Params::of(uri).token.as_deref()) {
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
            bodies: Semaphore::new(BODY_BUDGET),
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

    /// The camera a request names (`?camera=`), or the first.
    fn camera(&self, uri: &Uri) -> Result<Arc<UiCamera>, Refused> {
        let cameras = self.cameras();
        let found = match Params::of(uri).camera {
            Some(id) => cameras.into_iter().find(|c| c.instance_id == id),
            None => cameras.into_iter().next(),
        };
        found.map_or_else(|| refused(StatusCode::NOT_FOUND, "no such camera"), Ok)
    }

    fn denied(&self, headers: &HeaderMap) -> Response {
        let message = if !same_origin(headers) {
            "cross-origin requests are refused"
        } else if self.token.is_some() {
            "token required: open the page with ?token=..., or send X-Orion-Token"
        } else {
            "the UI without a token answers only requests to a loopback host"
        };
        error(StatusCode::UNAUTHORIZED, message)
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
            "zones": c.room.zones(),
        })
    }

    /// Reads a control call's body: `Content-Length` bytes, at most the
    /// camera's command limit (refused from the head beyond it), within the
    /// budget and [`BODY_TIMEOUT`].
    async fn read_body(
        &self,
        c: &UiCamera,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Bytes, Refused> {
        if headers.contains_key(header::TRANSFER_ENCODING) {
            return refused(
                StatusCode::BAD_REQUEST,
                "send bodies with Content-Length (no Transfer-Encoding)",
            );
        }
        let Ok(length) = header_str(headers, header::CONTENT_LENGTH)
            .unwrap_or("0")
            .trim()
            .parse::<usize>()
        else {
            return refused(StatusCode::BAD_REQUEST, "Content-Length is not a number");
        };
        if length > c.max_command_bytes {
            let why = format!(
                "a control call is at most {} bytes; got {length}",
                c.max_command_bytes
            );
            return refused(StatusCode::PAYLOAD_TOO_LARGE, why);
        }
        let Some(_room) = u32::try_from(length)
            .ok()
            .and_then(|n| self.bodies.try_acquire_many(n).ok())
        else {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: too many requests at once; send it again",
            );
        };
        match tokio::time::timeout(BODY_TIMEOUT, body::to_bytes(body, length)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => refused(StatusCode::BAD_REQUEST, "the body did not arrive"),
            Err(_) => refused(StatusCode::REQUEST_TIMEOUT, "the body did not arrive"),
        }
    }
}

async fn cameras(Extension(ui): Extension<Arc<Ui>>) -> Response {
    json_response(StatusCode::OK, &ui.cameras_json())
}

async fn status(Extension(ui): Extension<Arc<Ui>>, uri: Uri) -> Response {
    match ui.camera(&uri) {
        Ok(c) => json_response(StatusCode::OK, &ui.status_json(&c).await),
        Err(no) => no.into_response(),
    }
}

/// A server-sent event stream of one camera's live feed (`frame`, `result`)
/// until the viewer goes or the camera does.
async fn watch(Extension(ui): Extension<Arc<Ui>>, uri: Uri) -> Response {
    let c = match ui.camera(&uri) {
        Ok(c) => c,
        Err(no) => return no.into_response(),
    };
    let Some(viewer) = c.feed.watch() else {
        let why = format!("{} viewers already watch this camera", live::MAX_VIEWERS);
        return error(StatusCode::SERVICE_UNAVAILABLE, &why);
    };
    Sse::new(live_events(c.feed.clone(), viewer))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// The viewer's events: an opening comment, then frames and results.
fn live_events(
    feed: Arc<LiveFeed>,
    viewer: Viewer,
) -> impl Stream<Item = Result<Event, Infallible>> {
    use futures_util::StreamExt as _;
    let opening = futures_util::stream::once(async { Ok(Event::default().comment("live")) });
    let events = futures_util::stream::unfold((feed, viewer), |(feed, mut viewer)| async move {
        let event = next_event(&feed, &mut viewer).await?;
        Some((Ok(event), (feed, viewer)))
    });
    opening.chain(events)
}

async fn next_event(feed: &LiveFeed, viewer: &mut Viewer) -> Option<Event> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = feed.closed() => return None,
            r = viewer.frames.changed() => {
                r.ok()?;
                let frame = viewer.frames.borrow_and_update().clone();
                // The one gate every picture passes: one encoded before
                // privacy mode came on is never sent once it is on.
                if let Some(f) = frame
                    && !(f.jpeg.is_some() && feed.private())
                {
                    return Some(Event::default().event("frame").data(live::frame_json(&f)));
                }
            }
            r = viewer.results.recv() => match r {
                Ok(json) => return Some(Event::default().event("result").data(&*json)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            },
            r = viewer.room.changed() => {
                r.ok()?;
                let room = viewer.room.borrow_and_update().clone();
                if let Some(json) = room {
                    return Some(Event::default().event("room").data(&*json));
                }
            }
        }
    }
}

/// Queues the body as a command on the camera's control handler and waits
/// for its reply.
async fn command(
    Extension(ui): Extension<Arc<Ui>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let c = match ui.camera(&uri) {
        Ok(c) => c,
        Err(no) => return no.into_response(),
    };
    let json_body = header_str(&headers, header::CONTENT_TYPE)
        .is_some_and(|t| t.starts_with("application/json"));
    if !json_body {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "control calls are JSON (Content-Type: application/json)",
        );
    }
    let payload = match ui.read_body(&c, &headers, body).await {
        Ok(bytes) => bytes.to_vec(),
        Err(no) => return no.into_response(),
    };
    let (tx, rx) = oneshot::channel();
    let message = ControlMessage {
        payload,
        retained: false,
        oversize: None,
        reply_to: Some(tx),
    };
    if c.control.try_send(message).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many control messages at once; send it again",
        );
    }
    match tokio::time::timeout(COMMAND_WAIT, rx).await {
        Ok(Ok(reply)) => match serde_json::to_value(&reply) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialize the reply",
            ),
        },
        _ => error(
            StatusCode::GATEWAY_TIMEOUT,
            "no reply from the control handler",
        ),
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    header::HeaderName::from_static(n),
                    HeaderValue::from_str(v).expect("value"),
                )
            })
            .collect()
    }

    #[test]
    fn an_origin_must_be_the_servers_own() {
        let host = ("host", "127.0.0.1:8080");
        assert!(
            same_origin(&headers(&[host])),
            "no Origin: not a browser's call"
        );
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        for evil in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "null",
            "http://127.0.0.1:8080.evil.example",
        ] {
            assert!(!same_origin(&headers(&[host, ("origin", evil)])), "{evil}");
        }
    }

    #[test]
    fn query_parameters_are_percent_decoded_and_cookies_read() {
        let uri: Uri = "/api/live?camera=room%2D1&token=a%2Bb+c"
            .parse()
            .expect("uri");
        let params = Params::of(&uri);
        assert_eq!(params.camera.as_deref(), Some("room-1"));
        assert_eq!(params.token.as_deref(), Some("a+b c"));
        assert!(
            Params::of(&"/api/live".parse().expect("uri"))
                .camera
                .is_none()
        );
        let h = headers(&[("cookie", "a=1; orion_token=xyz")]);
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "nope"), None);
    }

    #[test]
    fn the_token_opens_every_route_and_only_the_header_opens_control_calls() {
        let token = "0123456789abcdef".to_string();
        let registry = Arc::new(Registry::new(Vec::new(), Vec::new()));
        let ui = Ui::new(Some(token.clone()), true, 5.0, registry);
        let uri = |s: &str| -> Uri { s.parse().expect("uri") };
        let host = ("host", "box:8080");
        let access = |method: Method, u: &str, h: &[(&'static str, &str)]| {
            ui.access(&method, &uri(u), &headers(h))
        };
        assert_eq!(access(Method::GET, "/", &[host]), Access::Denied);
        assert_eq!(
            access(Method::GET, "/?token=0123456789abcdef", &[host]),
            Access::AllowedSetCookie
        );
        assert_eq!(
            access(Method::GET, "/?token=0123456789abcdeF", &[host]),
            Access::Denied
        );
        let cookie = format!("orion_token={token}");
        assert_eq!(
            access(Method::GET, "/", &[host, ("cookie", &cookie)]),
            Access::Allowed
        );
        assert_eq!(
            access(Method::POST, "/api/command", &[host, ("cookie", &cookie)]),
            Access::Denied
        );
        assert_eq!(
            access(Method::POST, "/api/command?token=0123456789abcdef", &[host]),
            Access::Denied
        );
        assert_eq!(
            access(
                Method::POST,
                "/api/command",
                &[host, ("x-orion-token", &token)]
            ),
            Access::Allowed
        );
        let evil = ("origin", "http://evil.example");
        assert_eq!(
            access(
                Method::POST,
                "/api/command",
                &[host, evil, ("x-orion-token", &token)]
            ),
            Access::Denied
        );
    }
}
