//! Property tests of request handling (issue "Reliability", item 7): every
//! request type of every service, decoded from arbitrary bytes or built near
//! valid with extreme values, and the page and resume tokens. The properties:
//! no panic, no unbounded allocation, and every rejected input answers a
//! client-error status, never INTERNAL or UNKNOWN.
//!
//! No database is needed (see `harness.rs`): `cargo test --test prop`.
//! Each property runs `DEFAULT_CASES` cases; `PROPTEST_CASES=5000 cargo test
//! --release --test prop` runs a longer search. `fuzz/` holds the cargo-fuzz
//! targets over the same harness (`scripts/fuzz.sh`).

mod alloc;
mod findings;
mod harness;
mod services;
mod shape;
mod tokens;
mod transport;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

use proptest::test_runner::Config;

/// Cases per property unless `PROPTEST_CASES` says otherwise: the whole
/// target stays under a minute in a debug build on two busy cores.
pub const DEFAULT_CASES: u32 = 256;

/// The runner settings of every property: `PROPTEST_CASES` or the default,
/// and no regression files (a failure prints its shrunk input).
pub fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let defaults = Config::default();
    Config {
        cases,
        failure_persistence: None,
        // Shrinking a failure with megabyte-sized strings can take long:
        // ten seconds, unless PROPTEST_MAX_SHRINK_TIME (ms) says otherwise.
        max_shrink_time: match defaults.max_shrink_time {
            0 => 10_000,
            set => set,
        },
        ..defaults
    }
}
