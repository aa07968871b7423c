//! Page tokens, resume tokens, timestamps and page sizes on arbitrary input
//! (see `customer_knowledge_fuzz::fuzz_tokens`).

#![no_main]

use customer_knowledge_fuzz::fuzz_tokens;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_tokens(data));
