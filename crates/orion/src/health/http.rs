//! The health HTTP server: `GET /health`, `/readiness`, `/metrics`.
//!
//! A deliberately small HTTP/1.1 responder (three read-only routes do not justify a
//! web framework): one task per connection, request head bounded to 8 KiB and
//! 5 seconds, `Connection: close` on every answer. It never blocks the pipeline:
//! it only reads atomics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Registry;
use super::Status;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Serves until `cancel` fires.
pub async fn serve(listener: TcpListener, metrics: Arc<Registry>, cancel: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                let cancel = cancel.clone();
                connections.spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = handle(stream, &metrics) => {
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

async fn handle(mut stream: TcpStream, metrics: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let (status, content_type, body) = if complete {
        route(&head, metrics)
    } else {
        (400, "text/plain", "bad request\n".to_string())
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn route(head: &[u8], metrics: &Registry) -> (u16, &'static str, String) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return (405, "text/plain", "only GET is served\n".into());
    }
    let json = "application/json";
    match path {
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

    use crate::health::metrics::Metrics;

    #[test]
    fn routes() {
        let camera = std::sync::Arc::new(Metrics::for_camera("cam-a"));
        let (status, watch) = crate::status::channels();
        let m = Registry {
            cameras: vec![(camera, watch)],
            workers: Vec::new(),
        };
        assert_eq!(route(b"GET /health HTTP/1.1\r\n\r\n", &m).0, 200);
        assert_eq!(route(b"GET /readiness HTTP/1.1\r\n\r\n", &m).0, 503);
        status.running.send_replace(true);
        let (code, _, body) = route(b"GET /readiness HTTP/1.1\r\n\r\n", &m);
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        assert_eq!(route(b"GET /nope HTTP/1.1\r\n\r\n", &m).0, 404);
        assert_eq!(route(b"POST /health HTTP/1.1\r\n\r\n", &m).0, 405);
        let (_, _, body) = route(b"GET /metrics HTTP/1.1\r\n\r\n", &m);
        assert!(
            body.contains("orion_running{camera=\"cam-a\"} 1\n"),
            "{body}"
        );
    }
}
