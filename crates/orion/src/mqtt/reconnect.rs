//! Waiting to reconnect to the broker: the back-off delay, cut short as soon
//! as the broker's port, which refused a TCP connection, accepts one again (a
//! cheap probe every [`PROBE_EVERY`], jittered; a port that accepts all along,
//! as with wrong credentials, waits the whole delay), so that events go out within seconds of the
//! broker's return however long the outage was, and many connections that lost
//! the same broker do not retry in lock-step.
//!
//! Owns nothing; it never sends anything over the probe connection (it is
//! closed at once) and never connects anywhere but the configured broker.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backoff::jittered;

/// How often the broker's port is tried while waiting (jittered).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A probe that takes longer than this counts as "not back".
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Waits `delay` (jittered), or less: until a TCP connection to `host:port`
/// succeeds after one failed (the broker came back).
pub async fn wait(delay: Duration, host: &str, port: u16) {
    let until = Instant::now() + jittered(delay);
    // At once: whether the port refuses now (it may be back before the first
    // jittered probe; accepted already, the failure was not the port's).
    let mut refused = !port_accepts(host, port).await;
    loop {
        let probe_at = (Instant::now() + jittered(PROBE_EVERY)).min(until);
        tokio::time::sleep_until(probe_at).await;
        if Instant::now() >= until {
            return;
        }
        match port_accepts(host, port).await {
            true if refused => return,
            true => {}
            false => refused = true,
        }
    }
}

/// Whether `host:port` accepts a TCP connection (closed at once).
async fn port_accepts(host: &str, port: u16) -> bool {
    let probe = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect((host, port)));
    matches!(probe.await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broker_that_comes_back_cuts_the_wait_short() {
        // A port nothing listens on: bound, then closed, then listened on again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let waiting = tokio::spawn(wait(Duration::from_secs(60), "127.0.0.1", port));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!waiting.is_finished(), "refused: still waiting");
        let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        tokio::time::timeout(Duration::from_secs(20), waiting)
            .await
            .expect("returned within probes of the return, not after the back-off")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn a_port_that_accepted_all_along_waits_the_whole_delay() {
        // Wrong credentials, say: the broker is there and refuses us in MQTT.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let started = Instant::now();
        wait(Duration::from_secs(8), "127.0.0.1", port).await;
        assert!(started.elapsed() >= Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_broker_the_whole_delay_is_waited() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let started = Instant::now();
        wait(Duration::from_secs(8), "127.0.0.1", port).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(6) && waited <= Duration::from_secs(10),
            "{waited:?}"
        );
    }
}
