//! The component's memory allocator (wasm32 only): a bump allocator
//! ([`crate::bump`]) over an arena in the module's own static memory, and
//! talc over pages from `memory.grow` for what does not fit there.
//!
//! Rust's default wasm allocator (dlmalloc) takes its first bytes from
//! `memory.grow`, never from the linear memory the module starts with, so
//! every delivery grew memory at least once. In a pooled wasmtime slot a
//! growth is an `mprotect` (and the slot's shrink back at the next
//! instance another), each a TLB shootdown on every core of the host
//! (BENCHMARKS.md, part 5). The arena is part of the module's initial
//! memory, so a typical delivery allocates without growing it.
//!
//! In the arena, blocks are handed out one after another and only the last
//! one is taken back: an instance evaluates one delivery and is thrown
//! away, so reusing freed blocks buys a small delivery nothing, and talc's
//! bookkeeping for it cost about 7 µs of a small push's 48 (BENCHMARKS.md,
//! part 5, eleventh pass). A block that does not fit in what is left of
//! the arena comes from talc, which reuses what is freed: a delivery whose
//! parsers free many blocks out of order (per stack, per service) loses at
//! most the arena to them, and otherwise uses as much memory as with talc
//! alone, up to the host's memory limit, past which an allocation fails
//! (the component traps).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use talc::wasm::{new_wasm_dynamic_allocator, WasmDynamicTalc};

use crate::bump::Bump;

// The allocator's state has no lock: it relies on the component having
// one thread, which wasm32 without the `atomics` feature guarantees (and
// talc's `new_wasm` checks too).
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

/// The arena: zero-initialized static memory (`.bss`), so it costs the
/// module no bytes and the instance no copy, only the pages it touches.
static mut ARENA: [MaybeUninit<u8>; ARENA_BYTES] = [MaybeUninit::uninit(); ARENA_BYTES];

/// The global allocator: the arena's bump allocator, touched by nothing
/// but the [`GlobalAlloc`] methods below, and talc for the grown pages.
struct Allocator {
    arena: UnsafeCell<Bump>,
    grown: WasmDynamicTalc,
}

// SAFETY: the component has one thread (wasm32 without atomics, checked
// above), and no method below holds a reference to the arena's state
// across a call to another allocator method, so no two references to it
// are ever live at once.
unsafe impl Sync for Allocator {}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator {
    arena: UnsafeCell::new(Bump::empty()),
    grown: new_wasm_dynamic_allocator(),
};

impl Allocator {
    /// The arena's state, for one step of one method. Its range is set by
    /// the first allocation ([`Self::alloc_slow`]); until then it holds
    /// nothing, so a block freed before is talc's.
    ///
    /// # Safety
    /// No other reference to the state may be live: the caller is a
    /// [`GlobalAlloc`] method, which the component's one thread never
    /// enters twice at once, and drops the reference before it calls
    /// another.
    #[allow(clippy::mut_from_ref)]
    unsafe fn arena(&self) -> &mut Bump {
        // SAFETY: as the caller promises.
        unsafe { &mut *self.arena.get() }
    }

    /// [`GlobalAlloc::alloc`] when the arena has no room: the first call
    /// gives the arena its range and tries again; after that, talc. Out of
    /// line, so that the arena's path, the one a small delivery takes,
    /// stays small where it is inlined.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`].
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a `GlobalAlloc` method; the reference ends before talc's call.
        let arena = unsafe { self.arena() };
        if !arena.has_range() {
            let start = (&raw mut ARENA) as usize;
            arena.set_range(start, start + ARENA_BYTES);
            if let Some(block) = arena.take(layout.size(), layout.align()) {
                return block as *mut u8;
            }
        }
        // SAFETY: as the caller promises.
        unsafe { self.grown.alloc(layout) }
    }

    /// [`GlobalAlloc::dealloc`] to talc, out of line like [`Self::alloc_slow`].
    ///
    /// # Safety
    /// As [`GlobalAlloc::dealloc`], for a block talc handed out.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_grown(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller promises.
        unsafe { self.grown.dealloc(ptr, layout) }
    }

    /// [`GlobalAlloc::realloc`] in talc, out of line like [`Self::alloc_slow`].
    ///
    /// # Safety
    /// As [`GlobalAlloc::realloc`], for a block talc handed out.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_grown(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promises.
        unsafe { self.grown.realloc(ptr, layout, new_size) }
    }
}

// SAFETY: a block comes either from the arena, whose bump allocator hands
// out aligned blocks of the arena that overlap no block still taken (one is
// handed out again only once the last block was given back or shrunk), or
// from talc, over pages nothing else uses; a block is given back to the
// allocator whose range holds it.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a `GlobalAlloc` method; the reference ends here.
        let taken = unsafe { self.arena() }.take(layout.size(), layout.align());
        match taken {
            Some(block) => block as *mut u8,
            // SAFETY: `layout` is the caller's, as `alloc` requires.
            None => unsafe { self.alloc_slow(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a `GlobalAlloc` method; each reference to the arena's
        // state ends with its statement, before talc is called.
        if unsafe { self.arena() }.contains(ptr as usize) {
            // SAFETY: as above.
            unsafe { self.arena() }.give_back(ptr as usize);
        } else {
            // SAFETY: a block outside the arena came from talc, with this
            // layout, as the caller promises.
            unsafe { self.dealloc_grown(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let address = ptr as usize;
        // SAFETY: a `GlobalAlloc` method; each reference to the arena's
        // state ends with its statement, before another method is called.
        if !unsafe { self.arena() }.contains(address) {
            // SAFETY: a block outside the arena came from talc, with this
            // layout, as the caller promises.
            return unsafe { self.realloc_grown(ptr, layout, new_size) };
        }
        // SAFETY: as above.
        if unsafe { self.arena() }.resize_in_place(address, layout.size(), new_size) {
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: `new_layout` has a non-zero size (`realloc`'s caller
        // promises `new_size > 0`).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: `ptr` holds `layout.size()` bytes the caller owns;
            // `new` is a block just handed out, so it overlaps no block
            // still taken, `ptr`'s included.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: a `GlobalAlloc` method; the reference ends here.
            unsafe { self.arena() }.give_back(address);
        }
        new
    }
}
