//! Golden byte fixtures: the encoded form of the canonical messages must not change
//! by accident. Regenerate on purpose with `ORION_BLESS_FIXTURES=1 cargo test -p orion-protocol`
//! (and update the Python side, whose tests read the same files).

use std::path::PathBuf;

use orion_protocol::{decode_from_worker, decode_to_worker, encode, golden};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn check(name: &str, encoded: &[u8]) {
    let path = fixture(name);
    if std::env::var_os("ORION_BLESS_FIXTURES").is_some() {
        std::fs::write(&path, encoded).expect("write fixture");
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (bless with ORION_BLESS_FIXTURES=1)",
            path.display()
        )
    });
    assert_eq!(
        encoded,
        expected.as_slice(),
        "encoding of {name} differs from its fixture"
    );
}

#[test]
fn to_worker_messages_match_fixtures_and_round_trip() {
    for (name, msg) in golden::to_worker() {
        let mut out = Vec::new();
        encode(&msg, &mut out).unwrap();
        check(name, &out);
        let decoded = decode_to_worker(&out[4..]).unwrap();
        assert_eq!(decoded, msg, "{name} does not round-trip");
    }
}

#[test]
fn from_worker_messages_match_fixtures_and_round_trip() {
    for (name, msg) in golden::from_worker() {
        let mut out = Vec::new();
        encode(&msg, &mut out).unwrap();
        check(name, &out);
        let decoded = decode_from_worker(&out[4..]).unwrap();
        assert_eq!(decoded, msg, "{name} does not round-trip");
    }
}

#[test]
fn header_is_big_endian_body_length() {
    let (_, msg) = golden::from_worker().remove(0);
    let mut out = Vec::new();
    encode(&msg, &mut out).unwrap();
    let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
    assert_eq!(len, out.len() - 4);
}
