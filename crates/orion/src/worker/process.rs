//! One worker child process and its three pipes, and the shared memory its
//! frames go through.

// The frames' shared memory and the child's process group need syscalls.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::time::Duration;

use orion_protocol::{CodecError, FrameReader, FromWorker, ToWorker, decode_from_worker, encode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Longest stderr line kept; the rest of a longer line is cut.
const MAX_LOG_LINE: usize = 4096;
/// Largest single read from the worker's stdout.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start worker `{program}`: {cause}")]
    Spawn {
        program: String,
        cause: std::io::Error,
    },
    #[error("worker closed its output (process exited)")]
    Exited,
    #[error("cannot read worker output: {0}")]
    Read(std::io::Error),
    #[error("cannot write to worker: {0}")]
    Write(std::io::Error),
    #[error("worker broke the protocol: {0}")]
    Protocol(#[from] CodecError),
}

/// The file descriptor number a worker finds its shared-memory region at.
pub const SHM_FD: i32 = 3;

/// A shared-memory region for frames: an anonymous memory file (memfd), mapped
/// read-write here and handed to the worker as file descriptor [`SHM_FD`]. It
/// has one slot per frame in flight: the supervisor writes a slot only when the
/// worker has answered the frame that was in it. Unmapped and closed on drop;
/// the kernel frees it when the worker has closed it too.
pub struct SharedFrames {
    fd: std::os::fd::OwnedFd,
    ptr: *mut u8,
    len: usize,
    slot_len: usize,
}

// SAFETY: the mapping is owned by this value and only reached through `&mut self`
// (one writer, the supervisor task that owns the process).
unsafe impl Send for SharedFrames {}

impl SharedFrames {
    /// A region of `slots` slots of `slot_len` bytes.
    pub fn create(slot_len: usize, slots: usize) -> std::io::Result<Self> {
        let len = slot_len * slots.max(1);
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain syscalls on a new descriptor we own; the name is a C string.
        unsafe {
            let raw = libc::memfd_create(c"orion-frames".as_ptr(), libc::MFD_CLOEXEC);
            if raw < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
            if libc::ftruncate(raw, len as libc::off_t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Self {
                fd,
                ptr: ptr.cast(),
                len,
                slot_len,
            })
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` into slot `slot`.
    pub fn write(
        &mut self,
        slot: usize,
        data: &[u8],
    ) -> Result<orion_protocol::ShmSlice, ProcessError> {
        let offset = slot * self.slot_len;
        if data.len() > self.slot_len || offset + self.slot_len > self.len {
            return Err(ProcessError::Write(std::io::Error::other(format!(
                "frame of {} bytes does not fit slot {slot} of {} bytes",
                data.len(),
                self.slot_len
            ))));
        }
        // SAFETY: the slot lies inside the `len`-byte mapping and `data` fits it;
        // the regions cannot overlap (the mapping is of our own memfd).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
        Ok(orion_protocol::ShmSlice {
            offset: offset as u64,
            length: data.len() as u64,
        })
    }

    fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd as _;
        self.fd.as_raw_fd()
    }
}

impl Drop for SharedFrames {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `create`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A running worker process.
pub struct Process {
    child: Child,
    /// `None` once stdin was closed to ask the worker to stop.
    stdin: Option<ChildStdin>,
    /// Messages decoded by the reader task; closed after the first error or EOF,
    /// which is sent as the last item.
    messages: mpsc::Receiver<Result<FromWorker, ProcessError>>,
    encode_buf: Vec<u8>,
    /// Offered to the worker; used once its `ready` accepted it.
    shared: Option<SharedFrames>,
    shared_accepted: bool,
    pub pid: u32,
}

impl Process {
    /// Starts `program args...` with piped stdio and exactly the environment `env`
    /// (nothing inherited: see [`super::worker_env`]), offering a shared-memory
    /// region of `shm` = (slot bytes, slots) if given. `log_id` names the worker in
    /// its stderr log lines.
    pub fn spawn(
        program: &str,
        args: &[String],
        env: &[(String, String)],
        max_message_bytes: usize,
        shm: Option<(usize, usize)>,
        log_id: &str,
    ) -> Result<Self, ProcessError> {
        let shared = match shm.map(|(slot_len, slots)| SharedFrames::create(slot_len, slots)) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "no shared memory for frames; sending them inline");
                None
            }
            None => None,
        };
        let shm_fd = shared.as_ref().map(SharedFrames::raw_fd);
        let mut cmd = Command::new(program);
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(s) = &shared {
            cmd.env("ORION_SHM_FD", SHM_FD.to_string())
                .env("ORION_SHM_SIZE", s.len().to_string());
        }
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a terminal's Ctrl-C reaches the daemon only, which
            // then stops its workers in order.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        // If the daemon dies without running its shutdown (SIGKILL), the kernel
        // kills the worker too, so no orphan is left behind. The signal fires when
        // the spawning *thread* ends: spawn is only called from the runtime's
        // worker threads, which live as long as the daemon.
        unsafe {
            cmd.as_std_mut().pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The shared-memory region becomes the worker's descriptor 3
                // (dup2 leaves the copy without close-on-exec).
                if let Some(fd) = shm_fd {
                    if fd == SHM_FD {
                        let flags = libc::fcntl(fd, libc::F_GETFD);
                        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                    } else if libc::dup2(fd, SHM_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|cause| ProcessError::Spawn {
            program: program.to_string(),
            cause,
        })?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ProcessError::Spawn {
                program: program.to_string(),
                cause: std::io::Error::other("stdio pipes missing"),
            });
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(read_messages(stdout, max_message_bytes, tx));
        tokio::spawn(forward_logs(stderr, log_id.to_string()));
        Ok(Self {
            child,
            stdin: Some(stdin),
            messages: rx,
            encode_buf: Vec::new(),
            shared,
            shared_accepted: false,
            pid,
        })
    }

    /// Records whether the worker's `ready` accepted the shared memory.
    pub fn accept_shared(&mut self, accepted: bool) {
        self.shared_accepted = accepted && self.shared.is_some();
    }

    /// The shared-memory region, if the worker uses it.
    pub fn shared_frames(&mut self) -> Option<&mut SharedFrames> {
        if self.shared_accepted {
            self.shared.as_mut()
        } else {
            None
        }
    }

    /// Encodes and writes one message. The encode buffer is reused between frames.
    pub async fn send(&mut self, msg: &ToWorker<'_>) -> Result<(), ProcessError> {
        self.encode_buf.clear();
        encode(msg, &mut self.encode_buf)?;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| ProcessError::Write(std::io::ErrorKind::BrokenPipe.into()))?;
        stdin
            .write_all(&self.encode_buf)
            .await
            .map_err(ProcessError::Write)?;
        stdin.flush().await.map_err(ProcessError::Write)?;
        // Don't keep a frame-sized buffer around after a burst of large frames.
        if self.encode_buf.capacity() > 64 * 1024 * 1024 {
            self.encode_buf = Vec::new();
        }
        Ok(())
    }

    /// Next message from the worker; `Err(Exited)` once its output closed.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<FromWorker, ProcessError> {
        match self.messages.recv().await {
            Some(r) => r,
            None => Err(ProcessError::Exited),
        }
    }

    /// Asks the worker to stop (stdin EOF), waits up to `grace`, then kills it.
    /// Always reaps the child.
    pub async fn stop(mut self, grace: Duration) {
        self.stdin.take();
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pid = self.pid,
                "worker did not exit after stdin closed; killing"
            );
            let _ = self.child.start_kill();
        }
        let _ = self.child.wait().await;
    }

    /// Kills the worker at once and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn read_messages(
    mut stdout: tokio::process::ChildStdout,
    max_message_bytes: usize,
    tx: mpsc::Sender<Result<FromWorker, ProcessError>>,
) {
    let mut reader = FrameReader::new(max_message_bytes);
    let mut chunk = vec![0u8; READ_CHUNK];
    let end = loop {
        // Read no further than the current message needs, so a bad header is
        // caught before its "body" is buffered.
        let want = reader.wanted().min(READ_CHUNK);
        match stdout.read(&mut chunk[..want]).await {
            Ok(0) => break ProcessError::Exited,
            Ok(n) => reader.push(&chunk[..n]),
            Err(e) => break ProcessError::Read(e),
        }
        let mut failed = None;
        loop {
            match reader.next_body() {
                Ok(Some(body)) => {
                    let msg = decode_from_worker(&body).map_err(ProcessError::from);
                    let is_err = msg.is_err();
                    if tx.send(msg).await.is_err() || is_err {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(ProcessError::Protocol(e));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break e;
        }
    };
    let _ = tx.send(Err(end)).await;
}

/// Forwards stderr lines to tracing; `[ERROR]`, `[WARNING]`, `[INFO]`, `[DEBUG]`
/// prefixes pick the level (unprefixed lines are info).
/// Worker log lines written per [`LOG_WINDOW`]; more are counted and summed up
/// in one line (a worker in a print loop must not fill the disk).
const LOG_LINES_PER_WINDOW: u32 = 200;
const LOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// How much of one worker log line is kept.
const LOG_VALUE: usize = 1024;

async fn forward_logs(stderr: tokio::process::ChildStderr, worker: String) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::with_capacity(256);
    let mut window = (std::time::Instant::now(), 0u32, 0u64);
    loop {
        line.clear();
        match read_bounded_line(&mut reader, &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        if window.0.elapsed() >= LOG_WINDOW {
            if window.2 > 0 {
                tracing::warn!(worker = %worker, held_back = window.2, "worker wrote more log lines than {LOG_LINES_PER_WINDOW} in {} s; {} not written", LOG_WINDOW.as_secs(), window.2);
            }
            window = (std::time::Instant::now(), 0, 0);
        }
        if window.1 >= LOG_LINES_PER_WINDOW {
            window.2 += 1;
            continue;
        }
        window.1 += 1;
        let (level, msg) = parse_log_level(text);
        // One event per line whatever the worker wrote: the log writer escapes
        // control characters (crate::logging).
        let msg = crate::logging::cut(msg, LOG_VALUE);
        match level {
            tracing::Level::ERROR => tracing::error!(worker = %worker, "{msg}"),
            tracing::Level::WARN => tracing::warn!(worker = %worker, "{msg}"),
            tracing::Level::DEBUG => tracing::debug!(worker = %worker, "{msg}"),
            _ => tracing::info!(worker = %worker, "{msg}"),
        }
    }
    if window.2 > 0 {
        tracing::warn!(worker = %worker, held_back = window.2, "worker log lines not written at its exit: {}", window.2);
    }
}

/// Reads one line, keeping at most [`MAX_LOG_LINE`] bytes of it (the rest is read
/// and discarded). Returns the number of bytes consumed; 0 at EOF.
async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}

pub fn parse_log_level(line: &str) -> (tracing::Level, &str) {
    const PREFIXES: [(&str, tracing::Level); 5] = [
        ("[ERROR]", tracing::Level::ERROR),
        ("[WARNING]", tracing::Level::WARN),
        ("[WARN]", tracing::Level::WARN),
        ("[INFO]", tracing::Level::INFO),
        ("[DEBUG]", tracing::Level::DEBUG),
    ];
    for (prefix, level) in PREFIXES {
        if let Some(rest) = line.strip_prefix(prefix) {
            return (level, rest.trim_start());
        }
    }
    (tracing::Level::INFO, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prefixes_map_to_levels() {
        assert_eq!(
            parse_log_level("[ERROR] boom"),
            (tracing::Level::ERROR, "boom")
        );
        assert_eq!(
            parse_log_level("[WARNING] hm"),
            (tracing::Level::WARN, "hm")
        );
        assert_eq!(parse_log_level("[DEBUG] x"), (tracing::Level::DEBUG, "x"));
        assert_eq!(parse_log_level("plain"), (tracing::Level::INFO, "plain"));
    }

    #[tokio::test]
    async fn long_lines_are_cut_not_buffered() {
        let data = [vec![b'a'; 100_000], b"\nshort\n".to_vec()].concat();
        let mut reader = BufReader::new(&data[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_bounded_line(&mut reader, &mut line).await.unwrap(),
            100_001
        );
        assert_eq!(line.len(), MAX_LOG_LINE);
        line.clear();
        read_bounded_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(line, b"short\n");
    }
}
