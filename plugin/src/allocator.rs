//! The component's memory allocator (wasm32 only): a bump allocator
//! ([`crate::bump`]), first over an arena in the module's own static
//! memory, then over pages from `memory.grow`.
//!
//! Rust's default wasm allocator (dlmalloc) takes its first bytes from
//! `memory.grow`, never from the linear memory the module starts with, so
//! every delivery grew memory at least once. In a pooled wasmtime slot a
//! growth is an `mprotect` (and the slot's shrink back at the next
//! instance another), each a TLB shootdown on every core of the host
//! (BENCHMARKS.md, part 5). The arena is part of the module's initial
//! memory, so a typical delivery allocates without growing it; what does
//! not fit grows memory, up to the host's memory limit, and an allocation
//! past that limit fails (the component traps).
//!
//! An instance evaluates one delivery and is thrown away, so blocks are
//! handed out one after another and only the last one is taken back
//! ([`crate::bump`] says why that is enough). It replaced talc, which
//! reused freed blocks at a cost of about 7 µs per small delivery
//! (BENCHMARKS.md, part 5, eleventh pass).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use crate::bump::Bump;

// The allocator's state has no lock: it relies on the component having
// one thread, which wasm32 without the `atomics` feature guarantees.
#[cfg(target_feature = "atomics")]
compile_error!("the component's allocator assumes one thread: build without the atomics feature");

/// Bytes of the arena in static memory: a delivery that allocates no more
/// than this never grows linear memory. A push body is copied in whole and
/// parsed beside it, about 1.5 times its size in all (an 8.5 KiB GitHub push
/// touches 8 pages of memory, a 257 KiB one 95), so pushes up to about
/// 80 KiB fit. It is no larger because every page of it a delivery ever
/// writes is reset on every later use of the same pooled slot: the host's
/// reset finds the pages written since the slot was mapped, not since its
/// last instance, so one large delivery would make every small one after it
/// zero the whole arena again (768 KiB of it cost a small push 25-30 µs,
/// BENCHMARKS.md, part 5, eighth pass). Pages grown past the initial memory
/// are outside a small instance's reset.
pub const ARENA_BYTES: usize = 128 * 1024;

/// WebAssembly's page: the unit of `memory.grow`.
const WASM_PAGE_BYTES: usize = 64 * 1024;

/// The arena: zero-initialized static memory (`.bss`), so it costs the
/// module no bytes and the instance no copy, only the pages it touches.
static mut ARENA: [MaybeUninit<u8>; ARENA_BYTES] = [MaybeUninit::uninit(); ARENA_BYTES];

/// The global allocator: the bump allocator's state, touched by nothing
/// but the [`GlobalAlloc`] methods below.
struct Allocator(UnsafeCell<Bump>);

// SAFETY: the component has one thread (wasm32 without atomics, checked
// above), and no method below calls another allocator method while it
// holds the state, so no two references to it are ever live at once.
unsafe impl Sync for Allocator {}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator(UnsafeCell::new(Bump::empty()));

/// Grows linear memory by enough pages for `bytes` more and hands them to
/// `bump`, which extends its range when they follow it. `false` when
/// memory cannot grow (the host's memory limit) or the sizes overflow.
fn grow(bump: &mut Bump, bytes: usize) -> bool {
    let pages = bytes.div_ceil(WASM_PAGE_BYTES);
    let previous_pages = core::arch::wasm32::memory_grow::<0>(pages);
    if previous_pages == usize::MAX {
        return false;
    }
    // Unreachable under the host's memory limit, but checked: the end of
    // a 4 GiB memory does not fit a wasm32 address.
    let range = previous_pages
        .checked_mul(WASM_PAGE_BYTES)
        .and_then(|base| Some((base, base.checked_add(pages.checked_mul(WASM_PAGE_BYTES)?)?)));
    match range {
        Some((base, end)) => {
            bump.add_range(base, end);
            true
        }
        None => false,
    }
}

/// Where linear memory ends now: where the pages grown next begin.
fn memory_end() -> usize {
    core::arch::wasm32::memory_size::<0>().saturating_mul(WASM_PAGE_BYTES)
}

impl Allocator {
    /// The state, for the one method call that uses it.
    ///
    /// # Safety
    /// No other reference to the state may be live: the caller is a
    /// [`GlobalAlloc`] method, which the component's one thread never
    /// enters twice at once.
    #[allow(clippy::mut_from_ref)]
    unsafe fn bump(&self) -> &mut Bump {
        // SAFETY: as the caller promises.
        unsafe { &mut *self.0.get() }
    }
}

/// A block of `size` bytes aligned to `align` from `bump`: from its range,
/// else from pages grown for it; null when memory cannot grow.
fn take(bump: &mut Bump, size: usize, align: usize) -> *mut u8 {
    if bump.end() == 0 {
        let arena = (&raw mut ARENA) as usize;
        bump.add_range(arena, arena + ARENA_BYTES);
    }
    if let Some(block) = bump.take(size, align) {
        return block as *mut u8;
    }
    // Enough for the block wherever the new pages start, aligned, and a
    // page to spare so that small blocks after it do not grow memory again
    // at once (each growth is an `mprotect` in the host).
    let needed = size
        .checked_add(align)
        .and_then(|n| n.checked_add(WASM_PAGE_BYTES));
    match needed {
        Some(needed) if grow(bump, needed) => bump
            .take(size, align)
            .map_or(core::ptr::null_mut(), |block| block as *mut u8),
        _ => core::ptr::null_mut(),
    }
}

// SAFETY: every block handed out lies in the arena or in pages grown for
// this allocator (nothing else grows memory or names the arena), within
// one range, aligned as asked, and no block overlaps another still taken:
// a block is handed out again only once the last block was given back or
// resized (`Bump`).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a `GlobalAlloc` method, the state's only user now.
        let bump = unsafe { self.bump() };
        take(bump, layout.size(), layout.align())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: a `GlobalAlloc` method, the state's only user now.
        let bump = unsafe { self.bump() };
        bump.give_back(ptr as usize);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: a `GlobalAlloc` method, the state's only user now.
        let bump = unsafe { self.bump() };
        let address = ptr as usize;
        if bump.resize_in_place(address, layout.size(), new_size) {
            return ptr;
        }
        // The last block, at the end of memory: pages grown now follow
        // it, so it grows where it stands (a body or a buffer growing).
        if let Some(shortfall) = bump.shortfall(address, new_size) {
            if bump.end() == memory_end()
                && grow(bump, shortfall)
                && bump.resize_in_place(address, layout.size(), new_size)
            {
                return ptr;
            }
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let new = take(bump, new_layout.size(), new_layout.align());
        if !new.is_null() {
            // SAFETY: `ptr` holds `layout.size()` bytes the caller owns,
            // `new` at least `new_size` freshly handed out after every
            // block still taken, so the two do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}
