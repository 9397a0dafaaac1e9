//! The HTTP server: `GET /health`, `/readiness`, `/metrics`, and, when the UI is
//! on, the live view's page and API (`crate::ui`).
//!
//! A deliberately small HTTP/1.1 responder (a handful of routes do not justify a
//! web framework): one task per connection, at most [`MAX_CONNECTIONS`] of them
//! (beyond, a new connection is closed at once), `Connection: close` on every
//! answer. Nothing but the request head (at most [`MAX_HEAD`] bytes) is read
//! before the route and, for the UI, the token are known; a body only where the
//! route takes one (a control call, at most the camera's command limit), within
//! [`BODY_BUDGET`] bytes buffered over all connections; head and body each
//! within 5 seconds. So memory stays bounded whatever connects. A live-view
//! stream stays open until the viewer goes or the server stops. It never blocks
//! the pipeline: it reads atomics and watch channels, and queues control calls
//! like MQTT does.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::{Registry, Status};
use crate::ui::{Request, Response, Ui};

/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Request body bytes buffered at once over all connections; a body that
/// does not fit is answered 503 (busy) unread.
pub const BODY_BUDGET: usize = 4 * 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A live-view viewer that takes longer than this for one event is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A comment line on an idle live-view stream, so that a gone viewer is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where the UI appears once the cameras are up (until then its routes say
/// `starting`).
pub type UiSlot = OnceLock<Arc<Ui>>;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for health HTTP on {addr}: {cause}")]
pub struct BindError {
    addr: SocketAddr,
    cause: std::io::Error,
}

/// Binds the listener; returns it so that the caller learns the real address (port 0).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|cause| BindError { addr, cause })
}

/// Serves until `cancel` fires. `ui`: whether the UI is on, and where it appears.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Registry>,
    ui: Option<Arc<UiSlot>>,
    cancel: CancellationToken,
) {
    serve_at_most(MAX_CONNECTIONS, listener, metrics, ui, cancel).await;
}

/// [`serve`] with at most `max_connections` at once.
async fn serve_at_most(
    max_connections: usize,
    listener: TcpListener,
    metrics: Arc<Registry>,
    ui: Option<Arc<UiSlot>>,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let bodies = Arc::new(Semaphore::new(BODY_BUDGET));
    let mut full_log = crate::logging::RateLimit::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    if let Some(held_back) = full_log.allow(std::time::Instant::now()) {
                        tracing::warn!(
                            "health HTTP: {max_connections} connections open; new ones are closed at once{}",
                            full_log.and_more(held_back)
                        );
                    }
                    continue;
                };
                let metrics = metrics.clone();
                let cancel = cancel.clone();
                let ui = ui.clone();
                let bodies = bodies.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = handle(stream, &metrics, ui.as_deref(), &bodies, &cancel) => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "health connection failed");
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "health accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    connections.close();
    connections.wait().await;
}

/// Reads the request head (at most [`MAX_HEAD`] bytes; nothing after it is
/// asked for, though one read may bring some): the parsed head, and the
/// bytes after it. `Err(status)` for what cannot be read as one.
async fn read_head(stream: &mut TcpStream) -> Result<(Request, Vec<u8>), u16> {
    let mut data = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let mut searched = 0;
    loop {
        if let Some(at) = data[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = searched + at;
            if end > MAX_HEAD {
                return Err(431);
            }
            let req = parse_head(&data[..end]).ok_or(400u16)?;
            return Ok((req, data[end + 4..].to_vec()));
        }
        searched = data.len().saturating_sub(3);
        // The terminator may follow the longest head: 4 bytes more at most.
        let room = (MAX_HEAD + 4).saturating_sub(data.len()).min(buf.len());
        if room == 0 {
            return Err(431);
        }
        let n = stream.read(&mut buf[..room]).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        data.extend_from_slice(&buf[..n]);
    }
}

/// Reads the body a route allows: at most `limit` bytes of `Content-Length`
/// (0: the route takes none), reserved from `budget` before it is read.
async fn read_body<'a>(
    stream: &mut TcpStream,
    req: &mut Request,
    mut body: Vec<u8>,
    limit: usize,
    budget: &'a Semaphore,
) -> Result<Option<SemaphorePermit<'a>>, (u16, String)> {
    if req.header("transfer-encoding").is_some() {
        return Err((
            400,
            "send bodies with Content-Length (no Transfer-Encoding)\n".into(),
        ));
    }
    let length: usize = match req.header("content-length") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| (400, "Content-Length is not a number\n".to_string()))?,
        None => 0,
    };
    if length == 0 {
        return Ok(None);
    }
    if length > limit {
        let why = if limit == 0 {
            format!("{} {} takes no body\n", req.method, req.path)
        } else {
            format!("a body here is at most {limit} bytes; got {length}\n")
        };
        return Err((413, why));
    }
    let permit = u32::try_from(length)
        .ok()
        .and_then(|n| budget.try_acquire_many(n).ok())
        .ok_or_else(|| {
            (
                503,
                "busy: too many requests at once; send it again\n".to_string(),
            )
        })?;
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        while body.len() < length {
            let want = (length - body.len()).min(buf.len());
            let n = stream.read(&mut buf[..want]).await.map_err(|_| 400u16)?;
            if n == 0 {
                return Err(400);
            }
            body.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await;
    match read.unwrap_or(Err(408)) {
        Ok(()) => {
            body.truncate(length);
            req.body = body;
            Ok(Some(permit))
        }
        Err(status) => Err((status, "the body did not arrive\n".into())),
    }
}

/// The request line and headers (names in lower case).
fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Bad Request",
    }
}

async fn write_full(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

async fn handle(
    mut stream: TcpStream,
    metrics: &Registry,
    ui: Option<&UiSlot>,
    bodies: &Semaphore,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await;
    let (mut req, after_head) = match head.unwrap_or(Err(408)) {
        Ok(r) => r,
        Err(status) => {
            return write_full(&mut stream, status, "text/plain", &[], b"bad request\n").await;
        }
    };
    // The route (and the UI's access) decide whether a body is read at all.
    let ui = match ui {
        Some(slot) if Ui::owns(&req.path) => match slot.get() {
            Some(ui) => Some(ui),
            None => {
                return write_full(&mut stream, 503, "text/plain", &[], b"starting\n").await;
            }
        },
        _ => None,
    };
    let body_limit = match ui.map(|ui| ui.admit(&req)) {
        None => 0,
        Some(Ok(limit)) => limit,
        Some(Err(refused)) => return respond(&mut stream, refused, cancel).await,
    };
    let _body = match read_body(&mut stream, &mut req, after_head, body_limit, bodies).await {
        Ok(permit) => permit,
        Err((status, why)) => {
            return write_full(&mut stream, status, "text/plain", &[], why.as_bytes()).await;
        }
    };
    if let Some(ui) = ui {
        let response = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = ui.handle(&req) => r,
        };
        return respond(&mut stream, response, cancel).await;
    }
    let (status, content_type, body) = route(&req, metrics);
    write_full(&mut stream, status, content_type, &[], body.as_bytes()).await
}

async fn respond(
    stream: &mut TcpStream,
    response: Response,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    match response {
        Response::Full {
            status,
            content_type,
            headers,
            body,
        } => write_full(stream, status, content_type, &headers, &body).await,
        Response::Live(feed) => live(stream, &feed, cancel).await,
    }
}

/// A live-view stream: server-sent events (`frame`, `result`) until the viewer
/// goes, is too slow, or the server stops.
async fn live(
    stream: &mut TcpStream,
    feed: &Arc<crate::live::LiveFeed>,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n: live\n\n";
    stream.write_all(head.as_bytes()).await?;
    let mut viewer = feed.watch();
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = feed.closed() => break,
            r = viewer.frames.changed() => {
                if r.is_err() {
                    break;
                }
                let frame = viewer.frames.borrow_and_update().clone();
                match frame {
                    Some(f) => crate::live::frame_event(&f),
                    None => continue,
                }
            }
            r = viewer.results.recv() => match r {
                Ok(json) => format!("event: result\ndata: {json}\n\n"),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            _ = keep_alive.tick() => ": keep-alive\n\n".to_string(),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(event.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    stream.shutdown().await
}

fn route(req: &Request, metrics: &Registry) -> (u16, &'static str, String) {
    if req.method != "GET" {
        return (405, "text/plain", "only GET is served\n".into());
    }
    let json = "application/json";
    match req.path.as_str() {
        "/health" => (200, json, "{\"status\":\"alive\"}\n".into()),
        "/readiness" => {
            let report = metrics.report();
            let code = if report.status == Status::Unhealthy {
                503
            } else {
                200
            };
            let body = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into());
            (code, json, body + "\n")
        }
        "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
        _ => (
            404,
            "text/plain",
            "not found; try /health, /readiness or /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::Metrics;

    fn req(head: &[u8]) -> Request {
        parse_head(head).expect("request line")
    }

    #[test]
    fn heads_parse_into_method_path_query_and_headers() {
        let r = parse_head(b"POST /api/command?camera=a&x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Orion-Token:  abc \r\nContent-Length: 12").expect("parses");
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/api/command")
        );
        assert_eq!(r.param("camera"), Some("a"));
        assert_eq!(r.header("host"), Some("127.0.0.1:8080"));
        assert_eq!(r.header("x-orion-token"), Some("abc"));
        assert_eq!(r.header("content-length"), Some("12"));
        assert!(parse_head(b"").is_none());
    }

    #[test]
    fn routes() {
        let camera = std::sync::Arc::new(Metrics::for_camera("cam-a"));
        let (status, watch) = crate::status::channels(std::time::Duration::from_secs(10));
        let m = Registry::new(vec![(camera, watch)], Vec::new());
        assert_eq!(route(&req(b"GET /health HTTP/1.1"), &m).0, 200);
        assert_eq!(route(&req(b"GET /readiness HTTP/1.1"), &m).0, 503);
        status.running.send_replace(true);
        let (code, _, body) = route(&req(b"GET /readiness HTTP/1.1"), &m);
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        assert_eq!(route(&req(b"GET /nope HTTP/1.1"), &m).0, 404);
        assert_eq!(route(&req(b"POST /health HTTP/1.1"), &m).0, 405);
        let (_, _, body) = route(&req(b"GET /metrics HTTP/1.1"), &m);
        assert!(
            body.contains("orion_running{camera=\"cam-a\"} 1\n"),
            "{body}"
        );
    }

    async fn server() -> (u16, CancellationToken) {
        server_at_most(MAX_CONNECTIONS).await
    }

    async fn server_at_most(max_connections: usize) -> (u16, CancellationToken) {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let registry = Arc::new(Registry::new(Vec::new(), Vec::new()));
        let cancel = CancellationToken::new();
        tokio::spawn(serve_at_most(
            max_connections,
            listener,
            registry,
            None,
            cancel.clone(),
        ));
        (port, cancel)
    }

    /// Sends `request` and reads the status code of the answer (None: closed
    /// without one).
    async fn status_of(port: u16, request: &[u8]) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(request).await.ok()?;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out));
        read.await.ok()?.ok()?;
        String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    }

    fn head_of(len: usize) -> Vec<u8> {
        let start = b"GET /health HTTP/1.1\r\nX-Pad: ".to_vec();
        let pad = len - start.len();
        let mut h = start;
        h.extend(std::iter::repeat_n(b'a', pad));
        h.extend_from_slice(b"\r\n\r\n");
        h
    }

    #[tokio::test]
    async fn the_head_is_bounded_at_its_limit_and_a_body_only_where_a_route_takes_one() {
        let (port, cancel) = server().await;
        assert_eq!(status_of(port, &head_of(MAX_HEAD)).await, Some(200));
        assert_eq!(status_of(port, &head_of(MAX_HEAD + 1)).await, Some(431));
        let with_body = b"GET /health HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(status_of(port, with_body).await, Some(413));
        let chunked = b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(status_of(port, chunked).await, Some(400));
        cancel.cancel();
    }

    #[tokio::test]
    async fn beyond_the_connection_limit_new_connections_are_closed_until_one_goes() {
        const MAX: usize = 8;
        let (port, cancel) = server_at_most(MAX).await;
        let mut idle = Vec::new();
        for _ in 0..MAX {
            let mut s = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            // Half a head: the connection holds its slot.
            s.write_all(b"GET /health HTTP/1.1\r\n")
                .await
                .expect("write");
            idle.push(s);
        }
        // Accepted in order: this one comes after all of them.
        assert_eq!(
            status_of(port, b"GET /health HTTP/1.1\r\n\r\n").await,
            None,
            "a connection beyond the limit is closed unanswered"
        );
        drop(idle.pop());
        // The freed slot: once the server has seen the close.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while status_of(port, b"GET /health HTTP/1.1\r\n\r\n").await != Some(200) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a freed slot is used again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
    }
}
