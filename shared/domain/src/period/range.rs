//! Inclusive ranges of periods of one type, and iterating them.

use super::*;

/// An inclusive range of periods of one type, `start <= end`.
///
/// A range always holds at least one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodRange {
    start: Period,
    end: Period,
}

impl PeriodRange {
    /// The periods from `start` to `end`, both included.
    ///
    /// # Errors
    ///
    /// - [`PeriodError::Mixed`] if `start` and `end` have different types.
    /// - [`PeriodError::StartAfterEnd`] (with canonical strings) if `start`
    ///   is after `end`.
    pub fn new(start: Period, end: Period) -> Result<Self, PeriodError> {
        if start.kind != end.kind {
            return Err(PeriodError::Mixed(start.kind, end.kind));
        }
        if start.start > end.start {
            return Err(PeriodError::StartAfterEnd {
                start: start.canonical(),
                end: end.canonical(),
            });
        }
        Ok(PeriodRange { start, end })
    }

    /// The range holding only `p`.
    #[must_use]
    pub const fn single(p: Period) -> Self {
        PeriodRange { start: p, end: p }
    }

    /// The type of the periods in the range.
    #[must_use]
    pub const fn kind(&self) -> PeriodType {
        self.start.kind
    }

    /// The first period (inclusive).
    #[must_use]
    pub const fn start(&self) -> Period {
        self.start
    }

    /// The last period (inclusive).
    #[must_use]
    pub const fn end(&self) -> Period {
        self.end
    }

    /// Number of periods in the range, at least 1. O(1).
    #[must_use]
    pub fn len(&self) -> u64 {
        // Non-negative by construction, so `unsigned_abs` is exact.
        self.start.periods_until(&self.end).unsigned_abs() + 1
    }

    /// Always `false`: a range holds at least one period. Present because
    /// types with `len` are expected to have it.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Whether `p` is one of the range's periods (same type, within bounds).
    #[must_use]
    pub fn contains(&self, p: &Period) -> bool {
        p.kind == self.kind() && self.start <= *p && *p <= self.end
    }

    /// Whether every period of `other` is in this range (same type).
    #[must_use]
    pub fn contains_range(&self, other: &PeriodRange) -> bool {
        self.contains(&other.start) && self.contains(&other.end)
    }

    /// The periods of the range in order.
    #[must_use]
    pub fn iter(&self) -> PeriodIter {
        PeriodIter {
            kind: self.kind(),
            front: self.start.index(),
            back: self.end.index(),
            remaining: self.len(),
        }
    }

    /// Index of `p` within the range (0-based), or `None` if it is not
    /// contained. O(1).
    #[must_use]
    pub fn index_of(&self, p: &Period) -> Option<u64> {
        self.contains(p)
            .then(|| self.start.periods_until(p).unsigned_abs())
    }

    /// Splits into consecutive sub-ranges of at most `n` periods each,
    /// counted from the range's start; only the last may be shorter.
    ///
    /// `n == 0` is treated as 1 rather than panicking, since a chunk size
    /// often comes from configuration.
    #[must_use]
    pub fn chunks(&self, n: u64) -> Vec<PeriodRange> {
        self.split_at_boundaries(n, self.start.index())
    }

    /// Splits into consecutive sub-ranges that never cross a boundary of the
    /// grid of `n`-period blocks starting at `origin` (the blocks are
    /// `origin.offset(k * n) ..= origin.offset(k * n + n - 1)` for every
    /// integer `k`). This matches a storage layout whose time axis starts at
    /// `origin` with chunks of `n` periods, so each sub-range touches exactly
    /// one storage chunk. `origin` may lie inside, before or after the range.
    ///
    /// `n == 0` is treated as 1, as in [`PeriodRange::chunks`].
    ///
    /// # Errors
    ///
    /// [`PeriodError::Mixed`] if `origin` has a different type than the range.
    pub fn chunks_aligned(&self, origin: &Period, n: u64) -> Result<Vec<PeriodRange>, PeriodError> {
        if origin.kind != self.kind() {
            return Err(PeriodError::Mixed(self.kind(), origin.kind));
        }
        Ok(self.split_at_boundaries(n, origin.index()))
    }

    /// The overlap of the two ranges, or `None` if they are disjoint or of
    /// different types.
    #[must_use]
    pub fn intersect(&self, other: &PeriodRange) -> Option<PeriodRange> {
        if self.kind() != other.kind() {
            return None;
        }
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start <= end).then_some(PeriodRange { start, end })
    }

    /// Splits at every index `origin + k * n`. Index arithmetic is done in
    /// `i128` so that huge `n` or distant origins cannot overflow.
    fn split_at_boundaries(&self, n: u64, origin: i64) -> Vec<PeriodRange> {
        let size = i128::from(n.max(1));
        let origin = i128::from(origin);
        let last = i128::from(self.end.index());
        let mut lo = i128::from(self.start.index());
        let mut out = Vec::new();
        while lo <= last {
            let block_end = origin + ((lo - origin).div_euclid(size) + 1) * size - 1;
            let hi = block_end.min(last);
            out.push(PeriodRange {
                start: self.period_at(lo),
                end: self.period_at(hi),
            });
            lo = hi + 1;
        }
        out
    }

    /// The period at linear index `index`, which must lie within the range.
    fn period_at(&self, index: i128) -> Period {
        i64::try_from(index)
            .ok()
            .and_then(|i| from_index(self.kind(), i))
            .expect("index lies between the range's own start and end")
    }
}

impl IntoIterator for PeriodRange {
    type Item = Period;
    type IntoIter = PeriodIter;

    fn into_iter(self) -> PeriodIter {
        self.iter()
    }
}

impl IntoIterator for &PeriodRange {
    type Item = Period;
    type IntoIter = PeriodIter;

    fn into_iter(self) -> PeriodIter {
        self.iter()
    }
}

/// Iterator over the periods of a [`PeriodRange`], from [`PeriodRange::iter`].
///
/// Each step is O(1), including `nth`, so skipping through long hourly
/// ranges is cheap.
#[derive(Debug, Clone)]
pub struct PeriodIter {
    kind: PeriodType,
    /// Index of the next period from the front.
    front: i64,
    /// Index of the next period from the back.
    back: i64,
    /// Periods not yet yielded; tracked separately so that `front`/`back`
    /// never need to cross each other.
    remaining: u64,
}

impl PeriodIter {
    /// The period at `index`; it always exists because it lies between two
    /// periods that do.
    fn at(&self, index: i64) -> Period {
        from_index(self.kind, index).expect("index lies within an existing range")
    }
}

impl Iterator for PeriodIter {
    type Item = Period;

    fn next(&mut self) -> Option<Period> {
        if self.remaining == 0 {
            return None;
        }
        let p = self.at(self.front);
        self.front += 1;
        self.remaining -= 1;
        Some(p)
    }

    fn nth(&mut self, n: usize) -> Option<Period> {
        let skip = u64::try_from(n).unwrap_or(u64::MAX);
        if skip >= self.remaining {
            self.remaining = 0;
            return None;
        }
        // `skip < remaining`, so the new front still lies within the range.
        self.front += i64::try_from(skip).expect("skip is below the range length");
        self.remaining -= skip;
        self.next()
    }

    fn last(mut self) -> Option<Period> {
        // O(1) instead of walking the whole range.
        self.next_back()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match usize::try_from(self.remaining) {
            Ok(n) => (n, Some(n)),
            Err(_) => (usize::MAX, None),
        }
    }
}

impl DoubleEndedIterator for PeriodIter {
    fn next_back(&mut self) -> Option<Period> {
        if self.remaining == 0 {
            return None;
        }
        let p = self.at(self.back);
        self.back -= 1;
        self.remaining -= 1;
        Some(p)
    }
}

impl FusedIterator for PeriodIter {}
