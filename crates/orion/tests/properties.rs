//! Property tests (proptest, bounded case counts) of the two parsers that take
//! untrusted input: the control command parser (anything on the control topic)
//! and the worker codec (anything on a worker's stdout). Neither may panic,
//! allocate beyond its bounds, or accept what it should not.
//!
//! The test run uses 2,000 cases per property; `scripts/fuzz.sh` runs the same
//! properties with `ORION_FUZZ_CASES` (default 100,000) as a fuzzing campaign.

use orion::command::{COMMANDS, parse};
use orion_protocol::{FrameReader, decode_from_worker, encode, golden};
use proptest::prelude::*;
use serde_json::{Value, json};

const MAX_COMMAND: usize = 65536;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z_]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,16}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn command_message() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        prop::sample::select(COMMANDS.iter().map(|c| c.name).collect::<Vec<_>>())
            .prop_map(Value::from),
        json_value(),
    ];
    let params = prop_oneof![
        Just(None),
        json_value().prop_map(Some),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "rate_hz",
                "size",
                "rois",
                "strategy",
                "alpha",
                "velocity_threshold",
                "velocity_factor",
                "max_expansion",
                "miss_limit",
                "x",
            ]),
            json_value(),
            0..4,
        )
        .prop_map(|m| Some(Value::Object(
            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
        ))),
    ];
    (name, params, prop::option::of(json_value())).prop_map(|(name, params, request_id)| {
        let mut m = json!({"command": name});
        if let Some(p) = params {
            m["params"] = p;
        }
        if let Some(r) = request_id {
            m["request_id"] = r;
        }
        m
    })
}

/// Cases per property: 2,000 in the test run, `ORION_FUZZ_CASES` in a campaign.
fn cases() -> u32 {
    std::env::var("ORION_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    // Bounded and self-contained: a fixed number of cases, no regression files
    // (a failure prints its minimal case, which becomes a named regression test).
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn command_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        match parse(&bytes, MAX_COMMAND) {
            Ok(req) => prop_assert!(COMMANDS.iter().any(|c| c.name == req.name)),
            Err(rej) => prop_assert!(!rej.message.is_empty()),
        }
    }

    #[test]
    fn command_parser_answers_every_structured_message(msg in command_message()) {
        let bytes = serde_json::to_vec(&msg).unwrap();
        match parse(&bytes, MAX_COMMAND) {
            Ok(req) => {
                prop_assert_eq!(Some(req.name), msg["command"].as_str());
                // An accepted request id is echoed as it came.
                if let Some(id) = &req.request_id {
                    prop_assert_eq!(id, &msg["request_id"]);
                }
            }
            Err(rej) => {
                prop_assert!(!rej.message.is_empty());
                prop_assert!(rej.message.len() < 4096, "messages stay short: {}", rej.message.len());
            }
        }
    }

    #[test]
    fn codec_never_panics_and_stays_bounded(
        stream in prop::collection::vec(any::<u8>(), 0..8192),
        chunks in prop::collection::vec(1usize..600, 1..40),
    ) {
        let max = 1024;
        let mut reader = FrameReader::new(max);
        let mut pos = 0;
        let mut i = 0;
        'feed: while pos < stream.len() {
            let n = chunks[i % chunks.len()].min(reader.wanted()).min(stream.len() - pos);
            i += 1;
            reader.push(&stream[pos..pos + n]);
            pos += n;
            loop {
                match reader.next_body() {
                    Ok(Some(body)) => {
                        prop_assert!(body.len() <= max);
                        let _ = decode_from_worker(&body);
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            prop_assert!(reader.buffered() <= max + 4);
        }
    }

    #[test]
    fn corrupted_worker_messages_are_errors_not_panics(
        which in 0usize..4,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (_, msg) = golden::from_worker().swap_remove(which);
        let mut bytes = Vec::new();
        encode(&msg, &mut bytes).unwrap();
        let body = &mut bytes[4..];
        for (at, value) in flips {
            let i = at.index(body.len());
            body[i] = value;
        }
        let _ = decode_from_worker(body);
    }
}
