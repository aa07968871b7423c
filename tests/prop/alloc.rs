//! Counts the bytes this thread holds on the heap, and their peak, so that a
//! test can bound what one handler call allocates. Calls run on the test's
//! own thread (the harness uses a current-thread runtime), so a per-thread
//! count sees all of a call's allocations and none of other tests'.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

pub struct Counting;

thread_local! {
    static IN_USE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    let _ = IN_USE.try_with(|in_use| {
        let now = in_use.get() + bytes as isize;
        in_use.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrink(bytes: usize) {
    let _ = IN_USE.try_with(|in_use| in_use.set(in_use.get() - bytes as isize));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are plain thread-locals that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is System's contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as a copy: both blocks are live for a moment.
            grow(new_size);
            shrink(layout.size());
        }
        p
    }
}

/// Runs `f` and returns its result with the most heap bytes this thread
/// held during it beyond what it held before.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = IN_USE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, (peak - start).max(0) as usize)
}

#[test]
fn the_count_sees_what_a_call_holds() {
    let (len, peak) = peak_during(|| std::hint::black_box(vec![1u8; 8 << 20]).len());
    assert_eq!(len, 8 << 20);
    assert!(peak >= 8 << 20, "peak {peak}");
    let (_, none) = peak_during(|| ());
    assert!(none < 1024, "peak {none}");
}
