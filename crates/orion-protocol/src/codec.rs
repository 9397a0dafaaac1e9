//! Framing: `u32` big-endian body length, then the MsgPack body.
//!
//! [`FrameReader`] reassembles bodies from reads of any size (a pipe hands out
//! whatever it has) and rejects a declared length above its maximum as soon as the
//! four header bytes are in, before allocating anything for the body. It never holds
//! more than one maximum-size body plus one read chunk.

use serde::Serialize;

use crate::messages::{FromWorker, ToWorker};

const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message length {len} exceeds the maximum of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("empty message (length 0)")]
    Empty,
    #[error("malformed message body: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Appends one framed message (header and body) to `out`.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    rmp_serde::encode::write_named(out, msg)?;
    let body_len = out.len() - start - HEADER_LEN;
    let len = u32::try_from(body_len).map_err(|_| CodecError::TooLong {
        len: body_len,
        max: u32::MAX as usize,
    })?;
    out[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Decodes one body (without its header) sent by a worker.
pub fn decode_from_worker(body: &[u8]) -> Result<FromWorker, CodecError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Decodes one body (without its header) sent to a worker; used by tests and tools.
pub fn decode_to_worker(body: &[u8]) -> Result<ToWorker<'static>, CodecError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Reassembles message bodies from a byte stream.
#[derive(Debug)]
pub struct FrameReader {
    max_len: usize,
    buf: Vec<u8>,
    /// Body length announced by the header at the front of `buf`, once checked.
    pending: Option<usize>,
}

impl FrameReader {
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            buf: Vec::new(),
            pending: None,
        }
    }

    /// Bytes received but not yet returned as a body.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the message at the front needs (at least 1); lets the
    /// caller read no more than what completes it.
    pub fn wanted(&self) -> usize {
        match self.pending {
            Some(len) => (HEADER_LEN + len).saturating_sub(self.buf.len()).max(1),
            None => HEADER_LEN.saturating_sub(self.buf.len()).max(1),
        }
    }

    /// Adds received bytes. Call [`FrameReader::next_body`] until it returns `None`
    /// before pushing more, so that a bad header is seen before the body arrives.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete body, `None` when more bytes are needed, or an error
    /// for a length that is zero or above the maximum (the stream is then unusable:
    /// there is no way to find the next message boundary).
    pub fn next_body(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        let len = match self.pending {
            Some(len) => len,
            None => {
                let Some(header) = self.buf.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                let mut be = [0u8; HEADER_LEN];
                be.copy_from_slice(header);
                let len = u32::from_be_bytes(be) as usize;
                if len == 0 {
                    return Err(CodecError::Empty);
                }
                if len > self.max_len {
                    return Err(CodecError::TooLong {
                        len,
                        max: self.max_len,
                    });
                }
                self.pending = Some(len);
                len
            }
        };
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let rest = self.buf.split_off(HEADER_LEN + len);
        let mut body = std::mem::replace(&mut self.buf, rest);
        body.drain(..HEADER_LEN);
        self.pending = None;
        Ok(Some(body))
    }
}
