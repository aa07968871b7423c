//! Page tokens (`api::page_token`), resume tokens of the watch streams
//! (`api::resume_token`) and timestamp conversion (`api::from_timestamp`):
//! round trips, and arbitrary input decoded without a panic, without a token
//! of another query or stream, and refused as INVALID_ARGUMENT.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use customer_knowledge::{
    api::{
        from_timestamp,
        page_token::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageTokens, page_size},
        parse_resume_token, resume_token, timestamp,
    },
    error::Error,
};
use proptest::{collection::vec, prelude::*, test_runner::TestRunner};
use tonic::{Code, Status};

use crate::config;

fn run<S: Strategy>(
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// A refusal of caller input: INVALID_ARGUMENT naming `field`.
fn refused(err: Error, field: &str) -> Result<(), proptest::test_runner::TestCaseError> {
    let status = Status::from(err);
    prop_assert_eq!(status.code(), Code::InvalidArgument);
    prop_assert!(
        status.message().contains(field),
        "the message names {}: {}",
        field,
        status.message()
    );
    Ok(())
}

/// Strings a token parser may meet: anything, base64-ish text, and real
/// tokens with an edit.
fn token_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=+/-]{0,64}",
        "[A-Za-z0-9_-]{1000,1100}",
        (vec(any::<u8>(), 0..80)).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
    ]
}

/// The longest page token `decode` reads.
const MAX_TOKEN_LEN: usize = 1024;

#[test]
fn page_tokens_round_trip_within_their_query() {
    run(
        (".{0,200}", ".{0,200}", ".{0,200}", vec(any::<u8>(), 1..64)),
        |(cursor, context, other_context, key)| {
            let tokens = PageTokens::new(&key);
            let token = tokens.encode(&cursor, &context);
            if token.len() <= MAX_TOKEN_LEN {
                prop_assert_eq!(tokens.decode(&token, &context).ok(), Some(Some(cursor)));
            } else {
                refused(tokens.decode(&token, &context).unwrap_err(), "page_token")?;
            }
            if other_context != context {
                refused(
                    tokens.decode(&token, &other_context).unwrap_err(),
                    "page_token",
                )?;
            }
            let mut other_key = key.clone();
            other_key[0] ^= 1;
            refused(
                PageTokens::new(&other_key)
                    .decode(&token, &context)
                    .unwrap_err(),
                "page_token",
            )?;
            Ok(())
        },
    );
}

#[test]
fn a_changed_page_token_is_refused() {
    run(
        (
            ".{0,100}",
            ".{0,100}",
            any::<prop::sample::Index>(),
            0..8u32,
        ),
        |(cursor, context, at, bit)| {
            let tokens = PageTokens::new(b"0123456789abcdef0123456789abcdef");
            let mut raw = URL_SAFE_NO_PAD
                .decode(tokens.encode(&cursor, &context))
                .unwrap();
            let i = at.index(raw.len());
            raw[i] ^= 1 << bit;
            refused(
                tokens
                    .decode(&URL_SAFE_NO_PAD.encode(&raw), &context)
                    .unwrap_err(),
                "page_token",
            )
        },
    );
}

#[test]
fn arbitrary_page_tokens_are_refused_without_panic() {
    let tokens = PageTokens::new(b"0123456789abcdef0123456789abcdef");
    run((token_text(), ".{0,50}"), |(token, context)| {
        match tokens.decode(&token, &context) {
            Ok(None) => prop_assert!(token.is_empty()),
            // A forged token would need the HMAC key.
            Ok(Some(cursor)) => prop_assert!(false, "{token:?} decoded to {cursor:?}"),
            Err(e) => refused(e, "page_token")?,
        }
        Ok(())
    });
}

#[test]
fn next_page_trims_to_the_limit_and_resumes_after_the_last_row() {
    let tokens = PageTokens::new(b"0123456789abcdef0123456789abcdef");
    run((vec(0u32..1000, 0..60), 1i64..50), |(rows, limit)| {
        let mut page = rows.clone();
        let token = tokens.next_page(&mut page, limit, "ctx", |r| r.to_string());
        if rows.len() as i64 <= limit {
            prop_assert_eq!(&page, &rows);
            prop_assert!(token.is_empty());
        } else {
            prop_assert_eq!(page.len() as i64, limit);
            prop_assert_eq!(&page[..], &rows[..limit as usize]);
            let cursor = tokens.decode(&token, "ctx").unwrap();
            prop_assert_eq!(cursor, Some(page.last().unwrap().to_string()));
        }
        Ok(())
    });
}

#[test]
fn page_sizes_are_bounded_or_refused() {
    run(any::<i32>(), |requested| {
        match page_size(requested) {
            Ok(size) => {
                prop_assert!(requested >= 0);
                prop_assert!((1..=MAX_PAGE_SIZE).contains(&size));
                if requested == 0 {
                    prop_assert_eq!(size, DEFAULT_PAGE_SIZE);
                }
            }
            Err(e) => {
                prop_assert!(requested < 0);
                refused(e, "page_size")?;
            }
        }
        Ok(())
    });
}

/// The resume-token kinds of the two watch streams (interactions, knowledge).
const STREAMS: [&str; 2] = ["v1", "k1"];

#[test]
fn resume_tokens_round_trip_within_their_stream() {
    run(
        (0..STREAMS.len(), any::<i64>(), any::<i64>()),
        |(stream, txid, sequence)| {
            let token = resume_token(STREAMS[stream], (txid, sequence));
            prop_assert_eq!(
                parse_resume_token(STREAMS[stream], &token).ok(),
                Some((txid, sequence))
            );
            let other = STREAMS[1 - stream];
            refused(
                parse_resume_token(other, &token).unwrap_err(),
                "resume_token",
            )?;
            Ok(())
        },
    );
}

/// Text that decodes like a resume token: `kind:txid:sequence` with any
/// parts.
fn near_resume_token() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("v1".to_string()), Just("k1".to_string()), ".{0,4}"],
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just("9223372036854775808".to_string()),
            Just("-9223372036854775809".to_string()),
            Just("+1".to_string()),
            ".{0,24}",
        ],
        prop_oneof![any::<i64>().prop_map(|n| n.to_string()), ".{0,24}"],
        prop_oneof![Just(String::new()), Just(":".to_string()), ".{0,8}"],
    )
        .prop_map(|(kind, txid, seq, tail)| {
            URL_SAFE_NO_PAD.encode(format!("{kind}:{txid}:{seq}{tail}"))
        })
}

#[test]
fn arbitrary_resume_tokens_never_parse_as_another_stream() {
    run(prop_oneof![token_text(), near_resume_token()], |token| {
        let parsed: Vec<_> = STREAMS
            .iter()
            .map(|kind| parse_resume_token(kind, &token))
            .collect();
        // At most one stream takes a token.
        prop_assert!(parsed.iter().filter(|p| p.is_ok()).count() <= 1);
        for (kind, result) in STREAMS.iter().zip(parsed) {
            match result {
                // What it resumes from is what a token of that
                // position says.
                Ok(cursor) => prop_assert_eq!(
                    parse_resume_token(kind, &resume_token(kind, cursor)).ok(),
                    Some(cursor)
                ),
                Err(e) => refused(e, "resume_token")?,
            }
        }
        Ok(())
    });
}

#[test]
fn timestamps_convert_inside_the_proto_range_and_round_trip() {
    const FIRST: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let seconds = prop_oneof![
        any::<i64>(),
        FIRST - 2..FIRST + 2,
        LAST - 2..LAST + 2,
        -100_000i64..100_000,
    ];
    let nanos = prop_oneof![any::<i32>(), -2..2i32, 999_999_998..1_000_000_002i32];
    run((seconds, nanos), |(seconds, nanos)| {
        let ts = prost_types::Timestamp { seconds, nanos };
        let inside = (FIRST..=LAST).contains(&seconds) && (0..1_000_000_000).contains(&nanos);
        match from_timestamp(&ts) {
            Some(time) => {
                prop_assert!(inside);
                prop_assert_eq!(timestamp(time), ts);
            }
            None => prop_assert!(!inside),
        }
        Ok(())
    });
}
