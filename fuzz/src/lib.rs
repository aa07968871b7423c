//! What the fuzz targets run: the harness and request shapes of the
//! property tests (included from `tests/prop`), judged by the same
//! properties; a broken property panics, which libFuzzer records as a crash.

#[path = "../../tests/prop/harness.rs"]
pub mod harness;
#[path = "../../tests/prop/shape.rs"]
pub mod shape;

use std::sync::LazyLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use customer_knowledge::api::{
    from_timestamp,
    page_token::{PageTokens, page_size},
    parse_resume_token, resume_token, timestamp,
};
pub use harness::Service;
use harness::{Harness, PRINCIPALS, Shape, judge, judge_status_size, methods_of};
use shape::Shapes;

static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::new);
static SHAPES: LazyLock<Shapes> = LazyLock::new(Shapes::new);
/// `CK_FUZZ_STATUS_SIZE=1` adds `harness::judge_status_size` to the checks.
static CHECK_STATUS_SIZE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("CK_FUZZ_STATUS_SIZE").is_some_and(|v| v == "1"));

/// The most request messages one input sends to a client-streaming method.
const MAX_STREAM: usize = 4;

/// One call of a method of `service`:
///
/// - `data[0]` picks the method;
/// - `data[1]`: its low four bits pick the caller (`harness::principal`;
///   10 to 15 are the caller with every role, so that requests get past the
///   access checks), its high bit says how the rest makes the request:
///   clear, the rest is the request's bytes; set, the rest is a tape for
///   `shape::Shapes::near_valid`;
/// - a client-streaming method gets one message per 0xFF-separated part of
///   the rest (at most four).
pub fn fuzz_service(service: Service, data: &[u8]) {
    let [pick, how, rest @ ..] = data else {
        return;
    };
    let methods = methods_of(service);
    let method = methods[usize::from(*pick) % methods.len()];
    let principal = match usize::from(how & 0x0f) {
        n if n < PRINCIPALS => n,
        _ => 0,
    };
    let parts: Vec<&[u8]> = match method.shape {
        Shape::ClientStreaming => rest.split(|b| *b == 0xff).take(MAX_STREAM).collect(),
        Shape::Unary | Shape::ServerStreaming => vec![rest],
    };
    let messages = parts
        .into_iter()
        .map(|part| {
            if how & 0x80 == 0 {
                part.to_vec()
            } else {
                SHAPES.near_valid(method.input, part)
            }
        })
        .collect();
    let outcome = HARNESS.call(method, messages, harness::principal(principal));
    if let Err(why) = judge(&outcome) {
        panic!("{} as principal({principal}): {why}", method.name);
    }
    // Off by default: while statuses can outgrow the client's header limit
    // (a known finding), every run would stop at the first one.
    if *CHECK_STATUS_SIZE {
        if let Err(why) = judge_status_size(&outcome) {
            panic!("{} as principal({principal}): {why}", method.name);
        }
    }
}

/// The token parsers and timestamp conversion on arbitrary input:
/// `data[0]` picks what is checked, the rest is split at the first 0xFF
/// into two strings (lossy UTF-8) or read as numbers.
pub fn fuzz_tokens(data: &[u8]) {
    let [pick, rest @ ..] = data else {
        return;
    };
    let (a, b) = match rest.iter().position(|b| *b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let tokens = PageTokens::new(b"0123456789abcdef0123456789abcdef");
    match pick % 5 {
        // Any text as a page token: refused unless empty.
        0 => match tokens.decode(&a, &b) {
            Ok(None) => assert!(a.is_empty()),
            Ok(Some(cursor)) => panic!("{a:?} decoded to cursor {cursor:?}"),
            Err(_) => {}
        },
        // A page token round-trips in its own query only.
        1 => {
            let token = tokens.encode(&a, &b);
            match tokens.decode(&token, &b) {
                Ok(cursor) => assert_eq!(cursor.as_deref(), Some(&*a)),
                Err(_) => assert!(token.len() > 1024, "{token:?} refused"),
            }
            let other = format!("{b}.");
            assert!(tokens.decode(&token, &other).is_err());
        }
        // Any text, or any base64 of bytes, as a resume token: at most one
        // stream takes it, and then as the position it names.
        2 | 3 => {
            let token = if pick % 5 == 2 {
                a.to_string()
            } else {
                URL_SAFE_NO_PAD.encode(rest)
            };
            let taken: Vec<_> = ["v1", "k1"]
                .into_iter()
                .filter_map(|kind| Some((kind, parse_resume_token(kind, &token).ok()?)))
                .collect();
            assert!(taken.len() <= 1, "{token:?} resumes two streams");
            for (kind, cursor) in taken {
                assert_eq!(
                    parse_resume_token(kind, &resume_token(kind, cursor)).ok(),
                    Some(cursor)
                );
            }
        }
        // Timestamps and page sizes from raw numbers.
        _ => {
            let mut bytes = [0u8; 16];
            for (slot, b) in bytes.iter_mut().zip(rest) {
                *slot = *b;
            }
            let seconds = i64::from_le_bytes(bytes[..8].try_into().unwrap());
            let nanos = i32::from_le_bytes(bytes[8..12].try_into().unwrap());
            let ts = prost_types::Timestamp { seconds, nanos };
            if let Some(time) = from_timestamp(&ts) {
                assert_eq!(timestamp(time), ts);
            }
            let requested = i32::from_le_bytes(bytes[12..16].try_into().unwrap());
            match page_size(requested) {
                Ok(size) => assert!(requested >= 0 && (1..=1000).contains(&size)),
                Err(_) => assert!(requested < 0),
            }
        }
    }
}
