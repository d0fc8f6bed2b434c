//! The produce path's record batch validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(headers) = strom_storage::batch::validate(data, 1 << 20) {
        // Whatever validates must describe bytes that are really there.
        let total: usize = headers.iter().map(|h| h.total_size()).sum();
        assert_eq!(total, data.len());
    }
});
