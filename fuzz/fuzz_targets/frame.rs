//! The connection's frame reader: arbitrary bytes arriving in arbitrary
//! pieces must give frames, "need more", or an error — never a panic, and
//! never a frame larger than the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strom::protocol::frame::{bytes_wanted, take_frame};

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = (split as usize).min(rest.len());
    let mut buf = BytesMut::new();
    for piece in [&rest[..cut], &rest[cut..]] {
        buf.extend_from_slice(piece);
        let _ = bytes_wanted(&buf, MAX);
        loop {
            match take_frame(&mut buf, MAX) {
                Ok(Some(frame)) => assert!(frame.len() <= MAX),
                Ok(None) | Err(_) => break,
            }
        }
    }
});
