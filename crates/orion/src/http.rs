//! The HTTP server: `GET /health`, `/readiness`, `/metrics`, and, when the UI is
//! on, the live view's page and API (`crate::ui`), on axum and hyper.
//!
//! Owns the listener, the connections and the health routes; the UI's routes
//! and their token check are `crate::ui`'s. Limits, so that memory stays
//! bounded whatever connects: at most [`MAX_CONNECTIONS`] connections (beyond,
//! a new one is closed at once); a request head of at most [`MAX_HEAD`] bytes
//! (431) that arrives within [`READ_TIMEOUT`]; `Connection: close` on every
//! answer; a body only where a route reads one (the UI's control call, within
//! its own limits; a `GET` with a body is refused from its head). A viewer whose
//! socket takes a write for longer than [`WRITE_TIMEOUT`] is dropped. It never
//! blocks the pipeline: the routes read atomics and watch channels, and control
//! calls are queued like MQTT's.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::{Registry, Status};
use crate::ui::UiSlot;

/// Longest request head (request line and headers, without the blank line).
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a request head may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection whose socket takes one write for longer than this is dropped
/// (a live-view viewer that stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for health HTTP on {addr}: {cause}")]
pub struct BindError {
    addr: SocketAddr,
    cause: io::Error,
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
    registry: Arc<Registry>,
    ui: Option<Arc<UiSlot>>,
    cancel: CancellationToken,
) {
    serve_at_most(MAX_CONNECTIONS, listener, router(registry, ui), cancel).await;
}

/// Every route: the health routes, and the UI's when it is on.
fn router(registry: Arc<Registry>, ui: Option<Arc<UiSlot>>) -> Router {
    let only_get = || async { text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n") };
    let health = Router::new()
        .route("/health", get(alive).fallback(only_get))
        .route("/readiness", get(readiness).fallback(only_get))
        .route("/metrics", get(metrics).fallback(only_get))
        .with_state(registry);
    let routes = match ui {
        Some(slot) => health.merge(crate::ui::router(slot)),
        None => health,
    };
    routes
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found; try /health, /readiness or /metrics\n",
            )
        })
        .layer(middleware::from_fn(no_body_on_get))
        .layer(middleware::map_response(no_store))
}

/// [`serve`] with at most `max_connections` at once.
async fn serve_at_most(
    max_connections: usize,
    listener: TcpListener,
    app: Router,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut full_log = crate::logging::RateLimit::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "health accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
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
        let app = app.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = serve_connection(stream, app) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "health connection failed");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// One request on one connection, then the connection closes.
async fn serve_connection(stream: TcpStream, app: Router) -> Result<(), hyper::Error> {
    let io = TokioIo::new(WriteTimeout::new(stream, WRITE_TIMEOUT));
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        // hyper counts the blank line that ends the head.
        .max_header_size(MAX_HEAD + 4)
        .keep_alive(false)
        .title_case_headers(true)
        .serve_connection(io, TowerToHyperService::new(app))
        .await
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn alive() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"alive\"}\n",
    )
        .into_response()
}

async fn readiness(State(registry): State<Arc<Registry>>) -> Response {
    let report = registry.report();
    let code = if report.status == Status::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into()) + "\n";
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        registry.render(),
    )
        .into_response()
}

/// A `GET` (or `HEAD`) takes no body: one announced is refused from the head,
/// unread.
async fn no_body_on_get(req: Request, next: Next) -> Response {
    let reads = !matches!(*req.method(), Method::GET | Method::HEAD);
    let headers = req.headers();
    let announced = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if reads || !announced {
        return next.run(req).await;
    }
    let why = format!("{} {} takes no body\n", req.method(), req.uri().path());
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "text/plain")],
        why,
    )
        .into_response()
}

/// Every answer: never cached, never sniffed as another type.
async fn no_store(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A socket whose writes fail once one has waited longer than `limit` (hyper
/// has no write timeout of its own).
struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            waiting: None,
        }
    }

    /// `Pending` for at most `limit` in a row, then a timed-out error.
    fn bounded<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("a write waited more than {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bounded(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.bounded(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.bounded(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::metrics::Metrics;

    async fn server_with(
        max_connections: usize,
        registry: Arc<Registry>,
        ui: Option<Arc<UiSlot>>,
    ) -> (u16, CancellationToken) {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cancel = CancellationToken::new();
        tokio::spawn(serve_at_most(
            max_connections,
            listener,
            router(registry, ui),
            cancel.clone(),
        ));
        (port, cancel)
    }

    async fn server_at_most(max_connections: usize) -> (u16, CancellationToken) {
        let registry = Arc::new(Registry::new(Vec::new(), Vec::new()));
        server_with(max_connections, registry, None).await
    }

    /// Sends `request`; the answer's status code and whole text (None: closed
    /// without one).
    async fn answer(port: u16, request: &[u8]) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(request).await.ok()?;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out));
        read.await.ok()?.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let code = text.split(' ').nth(1)?.parse().ok()?;
        Some((code, text))
    }

    async fn status_of(port: u16, request: &[u8]) -> Option<u16> {
        answer(port, request).await.map(|(code, _)| code)
    }

    /// A connection that sent the request line and nothing more.
    async fn half_a_head(port: u16) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(b"GET /health HTTP/1.1\r\n")
            .await
            .expect("write");
        s
    }

    /// A GET of `path` to a loopback host.
    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
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
    async fn routes() {
        let camera = Arc::new(Metrics::for_camera("cam-a"));
        let (status, watch) = crate::status::channels(Duration::from_secs(10), false);
        let registry = Arc::new(Registry::new(vec![(camera, watch)], Vec::new()));
        let (port, cancel) = server_with(MAX_CONNECTIONS, registry, None).await;
        let (code, text) = answer(port, get("/health").as_bytes())
            .await
            .expect("answer");
        assert_eq!(code, 200);
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.contains("\r\nCache-Control: no-store\r\n"), "{text}");
        assert!(text.ends_with("{\"status\":\"alive\"}\n"), "{text}");
        assert_eq!(
            status_of(port, get("/readiness").as_bytes()).await,
            Some(503)
        );
        status.running.send_replace(true);
        let (code, text) = answer(port, get("/readiness").as_bytes())
            .await
            .expect("answer");
        assert_eq!(code, 200);
        assert!(text.contains("\"status\":\"degraded\""), "{text}");
        assert_eq!(status_of(port, get("/nope").as_bytes()).await, Some(404));
        assert_eq!(
            status_of(port, get("/%68ealth").as_bytes()).await,
            Some(404)
        );
        let post = b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(status_of(port, post).await, Some(405));
        let (_, text) = answer(port, get("/metrics").as_bytes())
            .await
            .expect("answer");
        assert!(
            text.contains("orion_running{camera=\"cam-a\"} 1\n"),
            "{text}"
        );
        cancel.cancel();
    }

    #[tokio::test]
    async fn until_the_ui_is_up_its_routes_say_starting_and_the_page_reloads() {
        let registry = Arc::new(Registry::new(Vec::new(), Vec::new()));
        let slot = Arc::new(UiSlot::new());
        let (port, cancel) = server_with(8, registry, Some(slot)).await;
        let (code, page) = answer(port, get("/").as_bytes()).await.expect("answer");
        assert_eq!(code, 503);
        assert!(page.contains("Retry-After: 2\r\n"), "{page}");
        assert!(page.contains("http-equiv=\"refresh\""), "{page}");
        let (code, api) = answer(port, get("/api/cameras").as_bytes())
            .await
            .expect("answer");
        assert_eq!(code, 503);
        assert!(api.ends_with("\r\n\r\nstarting\n"), "{api}");
        assert_eq!(status_of(port, get("/health").as_bytes()).await, Some(200));
        cancel.cancel();
    }

    #[tokio::test]
    async fn the_head_is_bounded_at_its_limit_and_a_get_takes_no_body() {
        let (port, cancel) = server_at_most(MAX_CONNECTIONS).await;
        assert_eq!(status_of(port, &head_of(MAX_HEAD)).await, Some(200));
        assert_eq!(status_of(port, &head_of(MAX_HEAD + 1)).await, Some(431));
        let with_body = b"GET /health HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(status_of(port, with_body).await, Some(413));
        let chunked = b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(status_of(port, chunked).await, Some(413));
        cancel.cancel();
    }

    #[tokio::test]
    async fn beyond_the_connection_limit_new_connections_are_closed_until_one_goes() {
        const MAX: usize = 8;
        let (port, cancel) = server_at_most(MAX).await;
        let mut idle = Vec::new();
        for _ in 0..MAX {
            // Half a head: the connection holds its slot.
            idle.push(half_a_head(port).await);
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

    #[tokio::test(start_paused = true)]
    async fn a_head_that_does_not_arrive_in_time_ends_the_connection() {
        let (port, cancel) = server_at_most(MAX_CONNECTIONS).await;
        let mut s = half_a_head(port).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(READ_TIMEOUT * 2, s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "closed after the head timeout");
        assert!(
            !String::from_utf8_lossy(&out).contains(" 200 "),
            "no answer"
        );
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_too_long_fails() {
        // A peer that reads nothing: its pipe fills, and the next write waits.
        let (near, _far) = tokio::io::duplex(64);
        let mut socket = WriteTimeout::new(near, WRITE_TIMEOUT);
        socket.write_all(&[0; 64]).await.expect("fits the pipe");
        let started = tokio::time::Instant::now();
        let err = socket.write_all(&[0; 1]).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), WRITE_TIMEOUT);
    }
}
