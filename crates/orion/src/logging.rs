//! Log hygiene: one line per event whatever text comes from outside, long values
//! cut, and repeated warnings rate-limited.
//!
//! Commands, worker stderr and camera errors are text someone else wrote. Written
//! as they are, a newline in them forges a second log line (`...\n2026-11-28T00:00
//! ERROR orion::worker: INJECTED`) and a flood of them floods the disk. This module
//! owns the log writer that escapes every control character inside an event (the
//! newline that ends the event stays), [`cut`] for long values, and [`RateLimit`]
//! for warnings that can repeat thousands of times a second. It never drops an
//! event silently: a rate-limited warning says how many it stood for.

use std::io::Write;
use std::time::{Duration, Instant};

/// Libraries quieter than the level asked for: the embedded broker logs every
/// client that disconnects as an error (`router-drop`), the MQTT client and
/// the outbox store talk at info about their routine.
const QUIET_LIBRARIES: [(&str, &str); 4] = [
    ("rumqttd", "off"),
    ("rumqttc", "warn"),
    ("fjall", "warn"),
    ("lsm_tree", "warn"),
];

/// Levels from the quietest.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The log filter for `RUST_LOG` (`None`: not set): its directives, after the
/// quiet libraries' levels (never louder than the level asked for everything)
/// unless it names that library itself. So `RUST_LOG=debug` is Orion's debug
/// without the broker's noise, `RUST_LOG=error` is errors only, and
/// `RUST_LOG=debug,rumqttd=info` still shows the broker.
pub fn log_filter(rust_log: Option<&str>) -> String {
    let asked = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let rank = |level: &str| {
        LEVELS
            .iter()
            .position(|l| l.eq_ignore_ascii_case(level.trim()))
    };
    // The level for everything else: the last bare level; without one,
    // tracing shows errors only.
    let general = asked.split(',').filter_map(rank).next_back().unwrap_or(1);
    let named = |library: &str| {
        asked
            .split(',')
            .any(|d| d.split(['=', '[']).next().unwrap_or("").trim() == library)
    };
    let mut filter: Vec<String> = QUIET_LIBRARIES
        .iter()
        .filter(|(library, _)| !named(library))
        .map(|(library, level)| {
            let level = rank(level).map_or(general, |l| l.min(general));
            format!("{library}={}", LEVELS[level])
        })
        .collect();
    filter.push(asked.to_string());
    filter.join(",")
}

/// Longest log line written; the rest of a longer event is cut with a marker.
pub const MAX_LINE: usize = 8 * 1024;
/// How much of a value from outside a log line quotes.
pub const MAX_VALUE: usize = 256;

/// `s` cut to at most `max` bytes (at a character boundary) with an ellipsis and
/// the full length when it was longer.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// Characters that change how a line reads without showing themselves:
/// bidirectional overrides and isolates (U+202E turns text around), zero-width
/// characters, line and paragraph separators, the byte order mark.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Escapes control characters in one formatted event: `\n` -> `\\n`, `\r` ->
/// `\\r`, other C0 and C1 controls -> `\\x1b` style, invisible formatting
/// characters (bidirectional overrides, zero-width) -> `\\u{202e}` style; the
/// final newline of the event stays. Bytes that are not UTF-8 become U+FFFD.
/// Cuts the line at [`MAX_LINE`].
pub fn escape_event(event: &[u8]) -> Vec<u8> {
    let (body, newline) = match event.strip_suffix(b"\n") {
        Some(b) => (b, true),
        None => (event, false),
    };
    let mut out = Vec::with_capacity(body.len().min(MAX_LINE) + 32);
    let mut utf8 = [0u8; 4];
    for c in String::from_utf8_lossy(body).chars() {
        if out.len() >= MAX_LINE {
            out.extend_from_slice(format!("... (line cut at {MAX_LINE} bytes)").as_bytes());
            break;
        }
        match c {
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.push(b'\t'),
            c if c.is_control() => {
                out.extend_from_slice(format!("\\x{:02x}", u32::from(c)).as_bytes());
            }
            c if invisible(c) => {
                out.extend_from_slice(format!("\\u{{{:04x}}}", u32::from(c)).as_bytes());
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    if newline {
        out.push(b'\n');
    }
    out
}

/// The daemon's log writer: stderr, one escaped line per event. The formatting
/// layer hands over each event in one write.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapedStderr {
    type Writer = EscapedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EscapedWriter
    }
}

pub struct EscapedWriter;

impl Write for EscapedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(&escape_event(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// At most one log line per `window` for one kind of warning; the next line
/// allowed says how many were held back.
#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimit {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(n)` when a line may be written now (`n` were held back since the
    /// last one), `None` when this occurrence is only counted.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.window => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }

    /// The suffix for a line that [`RateLimit::allow`] let through.
    pub fn and_more(&self, held_back: u64) -> String {
        if held_back == 0 {
            String::new()
        } else {
            format!(
                " (and {held_back} more in the last {} s)",
                self.window.as_secs()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quiet_libraries_stay_quiet_unless_named() {
        assert_eq!(
            log_filter(None),
            "rumqttd=off,rumqttc=warn,fjall=warn,lsm_tree=warn,info"
        );
        // Never louder than asked.
        assert_eq!(
            log_filter(Some("error")),
            "rumqttd=off,rumqttc=error,fjall=error,lsm_tree=error,error"
        );
        assert_eq!(
            log_filter(Some("debug,rumqttd=info,rumqttc::state=trace")),
            "rumqttc=warn,fjall=warn,lsm_tree=warn,debug,rumqttd=info,rumqttc::state=trace"
        );
        assert_eq!(
            log_filter(Some("orion=debug")),
            "rumqttd=off,rumqttc=error,fjall=error,lsm_tree=error,orion=debug"
        );
        assert_eq!(log_filter(Some(" ")), log_filter(None));
    }

    #[test]
    fn an_event_stays_one_line() {
        let forged = b"INFO control command message=x\n2026-11-28T00:00:00.000000Z ERROR orion::worker: INJECTED fake\n";
        let out = escape_event(forged);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(out.ends_with(b"INJECTED fake\n"));
        assert!(String::from_utf8_lossy(&out).contains("x\\n2026-11-28"));
        assert_eq!(escape_event(b"a\x1b[31mb\r\n"), b"a\\x1b[31mb\\r\n");
        assert_eq!(escape_event(b"tab\there\n"), b"tab\there\n");
        // Text that reads differently than it is: shown for what it is.
        let turned = "zone=\u{202E}deb\u{202C} id=\u{200B}x\u{2028}y \u{85}é\n";
        assert_eq!(
            String::from_utf8_lossy(&escape_event(turned.as_bytes())),
            "zone=\\u{202e}deb\\u{202c} id=\\u{200b}x\\u{2028}y \\x85é\n"
        );
        assert_eq!(
            escape_event(b"bad \xff byte\n"),
            "bad \u{FFFD} byte\n".as_bytes()
        );
        let long = vec![b'a'; MAX_LINE * 2];
        let out = escape_event(&long);
        assert!(out.len() < MAX_LINE + 64, "{}", out.len());
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        assert_eq!(cut("short", 256), "short");
        let s = "é".repeat(200); // 400 bytes
        let c = cut(&s, 257);
        assert!(
            c.starts_with(&"é".repeat(128)) && c.ends_with("... (400 bytes)"),
            "{c}"
        );
    }

    #[test]
    fn repeated_warnings_are_counted_not_written() {
        let mut r = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.allow(t0), Some(0));
        for i in 1..=14_071 {
            assert_eq!(r.allow(t0 + Duration::from_micros(i)), None);
        }
        let n = r.allow(t0 + Duration::from_secs(11)).expect("a new window");
        assert_eq!(n, 14_071);
        assert_eq!(r.and_more(n), " (and 14071 more in the last 10 s)");
    }
}
