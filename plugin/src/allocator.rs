//! The component's memory allocator (wasm32 only): talc, first from an
//! arena in the module's own static memory, then from `memory.grow`.
//!
//! Rust's default wasm allocator (dlmalloc) takes its first bytes from
//! `memory.grow`, never from the linear memory the module starts with, so
//! every delivery grew memory at least once. In a pooled wasmtime slot a
//! growth is an `mprotect` (and the slot's shrink back at the next
//! instance another), each a TLB shootdown on every core of the host
//! (BENCHMARKS.md, part 5). The arena is part of the module's initial
//! memory, so a typical delivery allocates without growing it; what does
//! not fit grows memory as before, up to the host's memory limit, and an
//! allocation past that limit still fails (the component traps).

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use talc::base::binning::Binning;
use talc::base::Talc;
use talc::cell::TalcSyncCell;
use talc::source::Source;
use talc::wasm::WasmBinning;

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

#[global_allocator]
static ALLOCATOR: TalcSyncCell<ArenaThenGrow, WasmBinning> =
    TalcSyncCell::new_wasm(ArenaThenGrow {
        arena_claimed: false,
        grown_end: None,
    });

/// Where talc gets memory: the arena the first time it runs out, then
/// pages from `memory.grow`, each growth extending the last grown heap
/// (one heap, so a growing buffer can still be reallocated in place).
#[derive(Debug)]
struct ArenaThenGrow {
    arena_claimed: bool,
    /// The end of the heap made of grown pages, once there is one.
    grown_end: Option<NonNull<u8>>,
}

// SAFETY: `acquire` allocates nothing (no Rust allocator, no container) and
// hands talc only memory nothing else uses: the arena, which no code but
// this names, and pages `memory.grow` has just added.
unsafe impl Source for ArenaThenGrow {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        if !talc.source.arena_claimed {
            talc.source.arena_claimed = true;
            // SAFETY: the arena is claimed once, here, and used by talc alone.
            let claimed = unsafe { talc.claim((&raw mut ARENA).cast(), ARENA_BYTES) };
            if claimed.is_some() {
                return Ok(());
            }
        }
        // Enough pages for the allocation with room to spare for talc's own
        // bookkeeping and any alignment padding (at most a page more than
        // needed): an undersized growth would only be asked for again.
        let needed = layout
            .size()
            .checked_add(layout.align())
            .and_then(|n| n.checked_add(WASM_PAGE_BYTES))
            .ok_or(())?;
        let pages = needed.div_ceil(WASM_PAGE_BYTES);
        let previous_pages = core::arch::wasm32::memory_grow::<0>(pages);
        if previous_pages == usize::MAX {
            return Err(());
        }
        // Unreachable under the host's memory limit, but checked: the end
        // of a 4 GiB memory does not fit a wasm32 address.
        let base_address = previous_pages.checked_mul(WASM_PAGE_BYTES).ok_or(())?;
        let bytes = pages.checked_mul(WASM_PAGE_BYTES).ok_or(())?;
        if base_address.checked_add(bytes).is_none() {
            return Err(());
        }
        let base = base_address as *mut u8;
        let end = base.wrapping_add(bytes);
        if let Some(old_end) = talc.source.grown_end.take() {
            if old_end.as_ptr() == base {
                // SAFETY: `base..end` was just added to memory, right after
                // the heap that ends at `old_end`.
                talc.source.grown_end = Some(unsafe { talc.extend(old_end, end) });
                return Ok(());
            }
        }
        // SAFETY: `base..end` was just added to memory and is used by
        // nothing else.
        talc.source.grown_end = unsafe { talc.claim(base, bytes) };
        talc.source.grown_end.map(|_| ()).ok_or(())
    }
}
