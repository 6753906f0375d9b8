//! The bookkeeping of the bump allocator the component's allocator
//! (`allocator`) runs over its arena: pure arithmetic on addresses, so that
//! it is tested natively.
//!
//! A bump allocator hands out the bytes after the last block it handed
//! out, and takes back or grows in place only that last block; any other
//! block only shrinks where it stands, and stays taken when freed. That is all a small delivery needs, since
//! its instance is thrown away, memory and all, once it is evaluated; what
//! a general allocator spends on reusing freed blocks was about 7 µs of a
//! small push's 48 (BENCHMARKS.md, part 5, eleventh pass). It is only ever
//! the arena's allocator: memory freed out of order is lost, so blocks past
//! the arena come from an allocator that reuses them, and what is lost is
//! bounded by the arena's size, whatever a delivery does.

/// An address range handed out from its start, block after block.
#[derive(Debug)]
pub(crate) struct Bump {
    /// The range's start.
    start: usize,
    /// The first byte not handed out.
    next: usize,
    /// The range's end (exclusive).
    end: usize,
    /// Where the last block handed out starts (`next` when it was given
    /// back, or when there is none).
    last: usize,
}

impl Bump {
    /// An allocator with nothing to hand out, until [`Bump::set_range`].
    pub(crate) const fn empty() -> Bump {
        Bump {
            start: 0,
            next: 0,
            end: 0,
            last: 0,
        }
    }

    /// Whether it has a range yet.
    pub(crate) fn has_range(&self) -> bool {
        self.end != 0
    }

    /// Makes `start..end` the range blocks come from, all of it free.
    pub(crate) fn set_range(&mut self, start: usize, end: usize) {
        *self = Bump {
            start,
            next: start,
            end,
            last: start,
        };
    }

    /// Whether `ptr` lies in the range: a block this allocator handed out.
    pub(crate) fn contains(&self, ptr: usize) -> bool {
        (self.start..self.end).contains(&ptr)
    }

    /// The address of `size` bytes aligned to `align` (a power of two),
    /// taken from the range, or `None` when they do not fit in what is left.
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
}

#[cfg(test)]
mod tests {
    use super::Bump;

    fn with_range(start: usize, end: usize) -> Bump {
        let mut bump = Bump::empty();
        bump.set_range(start, end);
        bump
    }

    #[test]
    fn blocks_follow_one_another_aligned_and_stop_at_the_range_end() {
        let mut bump = with_range(1000, 1100);
        assert_eq!(bump.take(10, 1), Some(1000));
        assert_eq!(bump.take(8, 8), Some(1016));
        assert_eq!(bump.take(76, 1), Some(1024));
        assert_eq!(bump.take(1, 1), None, "the range is full");
        assert_eq!(bump.take(usize::MAX, 1), None);
        assert_eq!(bump.take(1, 1 << 40), None);
    }

    #[test]
    fn an_allocator_without_a_range_hands_out_nothing_and_holds_nothing() {
        let mut bump = Bump::empty();
        assert!(!bump.has_range());
        assert_eq!(bump.take(1, 1), None);
        assert!(!bump.contains(0));
        bump.set_range(64, 128);
        assert!(bump.has_range());
        assert!(bump.contains(64) && bump.contains(127));
        assert!(!bump.contains(63) && !bump.contains(128));
    }

    #[test]
    fn only_the_last_block_is_given_back() {
        let mut bump = with_range(0, 100);
        let a = bump.take(10, 1).unwrap();
        let b = bump.take(10, 1).unwrap();
        bump.give_back(a);
        let c = bump.take(10, 1).unwrap();
        assert_eq!(c, 20, "a stays taken");
        bump.give_back(c);
        assert_eq!(bump.take(5, 1), Some(20), "c was the last block");
        bump.give_back(b);
        assert_eq!(bump.take(1, 1), Some(25), "b is not the last block");
        bump.give_back(25);
        bump.give_back(25);
        assert_eq!(
            bump.take(1, 1),
            Some(25),
            "a second give-back of the same block changes nothing"
        );
    }

    #[test]
    fn the_last_block_grows_and_shrinks_in_place_and_others_only_shrink() {
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
}
