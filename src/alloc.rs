//! The process allocator: the system allocator, except that huge requests
//! get lazily committed mappings, so that a hostile length prefix cannot
//! abort the broker.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(n)`
//! with the element count read off the wire, before it decodes a single
//! element (upstream: kafka-protocol-rs PRs #152/#161/#200, not released).
//! Eight bytes claiming 50 million topics ask for ~65 GB; the kernel's
//! overcommit heuristic refuses that, and Rust aborts the process on a
//! failed allocation. Mapped with MAP_NORESERVE the same request costs
//! address space only: the decoder touches a page or two, runs out of
//! input, returns an error, and the mapping is released.
//!
//! Legitimate allocations of this size do not occur (requests are capped by
//! `socket_request_max_bytes`, 100 MiB by default); if one did, it would
//! work the same, paying for pages as it touches them.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Requests at least this large are mapped rather than malloc'd.
const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

/// The broker's global allocator (installed in lib.rs).
pub struct Allocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

/// An anonymous, zeroed, lazily committed mapping; null on failure.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing aliases nothing; failure is reported as MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every pointer handed out is either the system allocator's (for
// layouts that are not huge) or a fresh mapping of at least `size` bytes
// aligned to a page (for huge ones), and each is returned to whoever made
// it: the test `is_huge(layout)` gives the same answer at alloc and dealloc
// because Rust passes the same layout to both.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map(layout.size())` above. munmap
            // only fails for invalid arguments, which this is not.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from the system allocator with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded up to the
        // alignment, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` has a non-zero size (new_size > 0 per the
        // GlobalAlloc contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_capacity_that_is_never_filled_costs_no_memory() {
        // 64 GiB of capacity: more than this machine has, so the system
        // allocator would fail and abort the process.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.extend([1, 2, 3]);
        assert_eq!(v.iter().sum::<u64>(), 6);
        // Shrinking moves it back to the system allocator.
        v.shrink_to_fit();
        assert_eq!(v, [1, 2, 3]);
    }
}
