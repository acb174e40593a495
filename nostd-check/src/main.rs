//! Type-checks kcl-core in a `#![no_std]` binary: any std leaking into the core (or its
//! dependencies) fails with a duplicate `panic_impl` lang item. Run with `cargo check`, not
//! `cargo build`: the host target has no start files to link a freestanding binary.
#![no_std]
#![no_main]

use kcl_core::{BasicRecord, Config, Instant, Worker, WorkerId};

/// A firmware brings its own allocator; this one only has to exist for the type check.
struct NoAllocator;

// SAFETY: never hands out memory; a null pointer is the documented way to fail.
unsafe impl core::alloc::GlobalAlloc for NoAllocator {
    unsafe fn alloc(&self, _: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
}

#[global_allocator]
static ALLOCATOR: NoAllocator = NoAllocator;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The entry point a firmware would call.
#[unsafe(no_mangle)]
pub extern "C" fn main() -> i32 {
    match Worker::<BasicRecord>::new(
        Config::default(),
        WorkerId::new("firmware"),
        1,
        Instant::ZERO,
    ) {
        Ok(mut w) => {
            let mut n = 0;
            while w.poll_command().is_some() {
                n += 1;
            }
            n
        }
        Err(_) => -1,
    }
}
