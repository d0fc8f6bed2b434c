//! Request header parsing and the body decoder of every served API.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strom::protocol::{decode_body, parse_request, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Request(req)) = parse_request(Bytes::copy_from_slice(data)) {
        let _ = decode_body(&req);
    }
});
