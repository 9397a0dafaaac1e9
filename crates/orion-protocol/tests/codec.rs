//! Codec behaviour on hostile and fragmented input.

use orion_protocol::{CodecError, FrameReader, FromWorker, decode_from_worker, encode, golden};

fn encoded_results() -> Vec<u8> {
    let mut out = Vec::new();
    for (_, msg) in golden::from_worker() {
        encode(&msg, &mut out).unwrap();
    }
    out
}

#[test]
fn reassembles_messages_split_at_every_possible_size() {
    let stream = encoded_results();
    let expected: Vec<FromWorker> = golden::from_worker().into_iter().map(|(_, m)| m).collect();
    for chunk in [1, 2, 3, 5, 7, 64, 4096] {
        let mut reader = FrameReader::new(1024);
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            reader.push(piece);
            while let Some(body) = reader.next_body().unwrap() {
                got.push(decode_from_worker(&body).unwrap());
            }
        }
        assert_eq!(got, expected, "chunk size {chunk}");
        assert_eq!(reader.buffered(), 0);
    }
}

#[test]
fn wanted_never_asks_past_the_current_message() {
    let stream = encoded_results();
    let mut reader = FrameReader::new(1024);
    let mut pos = 0;
    let mut count = 0;
    while pos < stream.len() {
        let n = reader.wanted().min(stream.len() - pos);
        reader.push(&stream[pos..pos + n]);
        pos += n;
        while let Some(_body) = reader.next_body().unwrap() {
            count += 1;
        }
        assert!(reader.buffered() <= 1024 + 4);
    }
    assert_eq!(count, golden::from_worker().len());
}

#[test]
fn rejects_oversized_length_before_the_body_arrives() {
    let mut reader = FrameReader::new(1024);
    // A 4 GiB length prefix followed by a few bytes: must be refused at once,
    // without reserving memory for the announced body.
    reader.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    match reader.next_body() {
        Err(CodecError::TooLong { len, max }) => {
            assert_eq!(len, u32::MAX as usize);
            assert_eq!(max, 1024);
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    assert!(
        reader.buffered() < 16,
        "nothing beyond the pushed bytes is held"
    );
}

#[test]
fn rejects_zero_length() {
    let mut reader = FrameReader::new(1024);
    reader.push(&[0, 0, 0, 0]);
    assert!(matches!(reader.next_body(), Err(CodecError::Empty)));
}

#[test]
fn garbage_body_is_a_decode_error_not_a_panic() {
    for body in [
        &b"\xc1"[..],
        b"\x81\xa4type\xa5bogus",
        b"\x93\x01\x02\x03",
        b"\xff\xff\xff",
    ] {
        assert!(
            matches!(decode_from_worker(body), Err(CodecError::Decode(_))),
            "{body:?}"
        );
    }
}

#[test]
fn truncated_message_stays_pending() {
    let stream = encoded_results();
    let mut reader = FrameReader::new(1024);
    reader.push(&stream[..10]);
    assert!(reader.next_body().unwrap().is_none());
    assert!(reader.wanted() > 0);
}
