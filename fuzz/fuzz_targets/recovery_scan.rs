//! The scanner recovery runs over a segment after a crash: it must stop at
//! the first bad byte with a reason, and never claim bytes it did not see.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_storage::batch::BatchIter;

fuzz_target!(|data: &[u8]| {
    let mut iter = BatchIter::new(data, true);
    let mut end = 0;
    for batch in iter.by_ref() {
        assert!(batch.position >= end);
        end = batch.position + batch.header.total_size();
        assert!(end <= data.len());
    }
    assert!(iter.position() <= data.len());
});
