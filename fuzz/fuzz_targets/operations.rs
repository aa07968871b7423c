//! google.longrunning.Operations (as the service serves it): the first byte picks the method, the second the caller and
//! whether the rest is a request's bytes or a tape for a near-valid request
//! (see `customer_knowledge_fuzz::fuzz_service`).

#![no_main]

use customer_knowledge_fuzz::{Service, fuzz_service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_service(Service::Operations, data));
