//! The bookkeeping of the component's bump allocator (`allocator`): pure
//! arithmetic on addresses, so that it is tested natively.
//!
//! A bump allocator hands out the bytes after the last block it handed
//! out and takes back only that last block. An instance evaluates one
//! delivery and is then thrown away, memory and all, so what a general
//! allocator spends on reusing freed blocks buys nothing here: with talc
//! it was about 7 µs of a small push's 48 (BENCHMARKS.md, part 5, eleventh
//! pass). What is freed out of order stays taken until the instance ends;
//! a growing buffer is the last block while it grows, so it grows in place,
//! and a buffer that moves leaves behind less than it then takes, so the
//! waste is bounded by what a delivery takes in all.

/// An address range handed out from the start, block after block: the
/// arena first, then each run of pages `memory.grow` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bump {
    /// The first byte not handed out.
    next: usize,
    /// The end of the current range (exclusive).
    end: usize,
    /// Where the last block handed out starts (`next` when there is none,
    /// or when it was given back or replaced by a new range).
    last: usize,
}

impl Bump {
    /// An empty allocator: the first request needs a range ([`Bump::add_range`]).
    pub(crate) const fn empty() -> Bump {
        Bump {
            next: 0,
            end: 0,
            last: 0,
        }
    }

    /// The end of the current range, where pages grown next would join it.
    pub(crate) fn end(&self) -> usize {
        self.end
    }

    /// Makes `base..end` the range blocks come from. A range that starts
    /// where the current one ends extends it (a block may then span both);
    /// any other replaces it, and what was left of the old one is not used.
    pub(crate) fn add_range(&mut self, base: usize, end: usize) {
        if base == self.end && self.end != 0 {
            self.end = end;
        } else {
            self.next = base;
            self.end = end;
            self.last = base;
        }
    }

    /// The address of `size` bytes aligned to `align` (a power of two),
    /// taken from the current range, or `None` when they do not fit there.
    pub(crate) fn take(&mut self, size: usize, align: usize) -> Option<usize> {
        let start = self.next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        self.last = start;
        Some(start)
    }

    /// Whether `ptr` is the last block handed out (and not given back).
    fn is_last(&self, ptr: usize) -> bool {
        ptr == self.last && ptr != self.next
    }

    /// Takes back the block at `ptr` if it is the last one handed out;
    /// any other stays taken.
    pub(crate) fn give_back(&mut self, ptr: usize) {
        if self.is_last(ptr) {
            self.next = ptr;
        }
    }

    /// Resizes the block of `old_size` bytes at `ptr` to `new_size` where
    /// it stands: the last block handed out if the range has room (its
    /// tail given back when it shrinks), any other only to shrink (its
    /// tail then stays taken). Else `false`, and nothing changes.
    pub(crate) fn resize_in_place(&mut self, ptr: usize, old_size: usize, new_size: usize) -> bool {
        if !self.is_last(ptr) {
            return new_size <= old_size;
        }
        match ptr.checked_add(new_size) {
            Some(end) if end <= self.end && new_size > 0 => {
                self.next = end;
                true
            }
            _ => false,
        }
    }

    /// Bytes a block of `size` bytes at `ptr`, the last one, lacks for
    /// `new_size` in the current range: what growing memory at
    /// [`Bump::end`] must add for [`Bump::resize_in_place`] to grow it.
    /// `None` when it is not the last block (or the sum overflows).
    pub(crate) fn shortfall(&self, ptr: usize, new_size: usize) -> Option<usize> {
        if !self.is_last(ptr) {
            return None;
        }
        Some(ptr.checked_add(new_size)?.saturating_sub(self.end))
    }
}

#[cfg(test)]
mod tests {
    use super::Bump;

    fn with_range(base: usize, end: usize) -> Bump {
        let mut bump = Bump::empty();
        bump.add_range(base, end);
        bump
    }

    #[test]
    fn blocks_follow_one_another_aligned_and_stop_at_the_range_end() {
        let mut bump = with_range(1000, 1100);
        assert_eq!(bump.take(10, 1), Some(1000));
        assert_eq!(bump.take(8, 8), Some(1016));
        assert_eq!(bump.take(0, 4), Some(1024));
        assert_eq!(bump.take(76, 1), Some(1024));
        assert_eq!(bump.take(1, 1), None, "the range is full");
        assert_eq!(bump.take(usize::MAX, 1), None);
        assert_eq!(bump.take(1, 1 << 40), None);
    }

    #[test]
    fn an_empty_allocator_has_nothing_to_hand_out() {
        let mut bump = Bump::empty();
        assert_eq!(bump.take(1, 1), None);
        assert_eq!(bump.take(0, 1), Some(0));
    }

    #[test]
    fn only_the_last_block_is_given_back() {
        let mut bump = with_range(0, 100);
        let a = bump.take(10, 1).unwrap();
        let b = bump.take(10, 1).unwrap();
        bump.give_back(a);
        assert_eq!(bump.take(10, 1), Some(20), "a stays taken");
        let c = 20;
        bump.give_back(c);
        assert_eq!(bump.take(5, 1), Some(20), "c was the last block");
        bump.give_back(b);
        assert_eq!(bump.take(1, 1), Some(25), "b is not the last block");
        bump.give_back(25);
        bump.give_back(25);
        assert_eq!(
            bump.take(1, 1),
            Some(25),
            "a second give-back of the same block is a no-op"
        );
    }

    #[test]
    fn the_last_block_grows_and_shrinks_in_place_within_the_range() {
        let mut bump = with_range(0, 100);
        let a = bump.take(10, 1).unwrap();
        assert!(bump.resize_in_place(a, 10, 60));
        let b = bump.take(1, 1).unwrap();
        assert_eq!(b, 60, "after a's new end");
        assert!(!bump.resize_in_place(a, 60, 61), "no longer the last block");
        assert!(
            bump.resize_in_place(a, 60, 20),
            "it shrinks where it stands"
        );
        assert!(
            !bump.resize_in_place(b, 1, 41),
            "past the range's end: b is still the last block, after a's old end"
        );
        assert!(bump.resize_in_place(b, 1, 40));
        assert!(bump.resize_in_place(b, 40, 2));
        assert_eq!(
            bump.take(1, 1),
            Some(62),
            "the last block's tail is given back"
        );
        assert!(!bump.resize_in_place(62, 1, usize::MAX));
        assert!(!bump.resize_in_place(62, 1, 0));
    }

    #[test]
    fn a_range_that_continues_the_current_one_extends_it() {
        let mut bump = with_range(0, 100);
        let a = bump.take(90, 1).unwrap();
        assert_eq!(bump.shortfall(a, 150), Some(50));
        assert_eq!(bump.shortfall(a, 80), Some(0));
        bump.add_range(100, 200);
        assert!(
            bump.resize_in_place(a, 90, 150),
            "the block spans both ranges"
        );
        assert_eq!(bump.take(50, 1), Some(150));
        assert_eq!(bump.end(), 200);
    }

    #[test]
    fn a_range_elsewhere_replaces_the_current_one() {
        let mut bump = with_range(0, 100);
        let a = bump.take(90, 1).unwrap();
        bump.add_range(4096, 8192);
        assert_eq!(bump.shortfall(a, 10), None, "a belongs to the old range");
        assert!(!bump.resize_in_place(a, 90, 91));
        bump.give_back(a);
        assert_eq!(bump.take(8, 8), Some(4096));
        assert_eq!(bump.end(), 8192);
    }
}
