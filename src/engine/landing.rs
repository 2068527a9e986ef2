//! Where a rule's buckets land: for each bucket from 1 to 100, the partition that takes it,
//! worked out once when the rule is compiled.
//!
//! The SDKs walk the partitions for each key, adding up their sizes, and take the first
//! whose running total reaches the key's bucket (`control` when none does). A key's bucket
//! is as good as random, so such a walk's exit was mispredicted for one key in two on a
//! 50/50 split, once the long chain of multiplications of the hash had resolved. Looked up
//! in a table, the partition is a load that no branch waits for: on the performance issue's
//! workload, 47 ns an evaluation walked and 43 ns looked up.

/// The entry of a bucket that no partition takes (the key gets `control`).
const NONE: u8 = u8::MAX;

/// The partition of each bucket of a rule.
#[derive(Debug)]
pub(crate) enum Landing {
    /// Every bucket lands in this partition (`NONE`: in none): the key need not be hashed.
    /// Most rules (a list of keys, a segment, a rule serving one treatment) have no
    /// percentage split, and their table would be 100 bytes of the same entry.
    Every(u8),
    /// The partition of bucket `b`, at `b - 1`.
    ByBucket(Box<[u8; 100]>),
}

impl Landing {
    /// The landing of partitions of `sizes`. Returns it with the positions in `sizes` of the
    /// partitions that take at least one bucket, in order: the landing names those by
    /// their index in that list (a partition that takes none is never answered, and at most
    /// 100 take one).
    pub(crate) fn new(sizes: impl IntoIterator<Item = i64>) -> (Landing, Vec<usize>) {
        let mut by_bucket = [NONE; 100];
        let mut taking = Vec::new();
        let (mut total, mut next) = (0i64, 1i64);
        for (position, size) in sizes.into_iter().enumerate() {
            total = total.saturating_add(size);
            let last = total.min(100);
            if last < next {
                continue;
            }
            let index = u8::try_from(taking.len()).unwrap_or(NONE);
            taking.push(position);
            // Buckets `next..=last`, at `next - 1..last` (both in 1..=100).
            if let Some(buckets) = by_bucket.get_mut(next as usize - 1..last as usize) {
                buckets.fill(index);
            }
            next = last + 1;
        }
        let first = by_bucket[0];
        let landing = if by_bucket.iter().all(|&i| i == first) {
            Landing::Every(first)
        } else {
            Landing::ByBucket(Box::new(by_bucket))
        };
        (landing, taking)
    }

    /// The partition every bucket lands in, when it is the same one for all (`Some(None)`:
    /// none takes any): the key need not be hashed.
    #[inline]
    pub(crate) fn every(&self) -> Option<Option<usize>> {
        match self {
            Landing::Every(i) => Some(index(*i)),
            Landing::ByBucket(_) => None,
        }
    }

    /// The partition `bucket` (1 to 100) lands in, if one does.
    #[inline]
    pub(crate) fn at(&self, bucket: u8) -> Option<usize> {
        match self {
            Landing::Every(i) => index(*i),
            Landing::ByBucket(by_bucket) => {
                let entry = usize::from(bucket)
                    .checked_sub(1)
                    .and_then(|i| by_bucket.get(i));
                index(entry.copied().unwrap_or(NONE))
            }
        }
    }

    /// Whether keys of different buckets get different treatments, where `treatment` is the
    /// treatment of a partition (`None`: no partition, `control`).
    pub(crate) fn splits<'a>(&self, treatment: impl Fn(Option<usize>) -> &'a str) -> bool {
        match self {
            Landing::Every(_) => false,
            Landing::ByBucket(by_bucket) => {
                let first = treatment(index(by_bucket[0]));
                by_bucket.iter().any(|&i| treatment(index(i)) != first)
            }
        }
    }
}

/// The partition an entry names.
#[inline(always)]
fn index(entry: u8) -> Option<usize> {
    (entry != NONE).then_some(usize::from(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partition the SDKs give `bucket`: the first whose running total reaches it.
    fn walked(sizes: &[i64], bucket: i64) -> Option<usize> {
        let mut total = 0i64;
        sizes.iter().position(|s| {
            total = total.saturating_add(*s);
            bucket <= total
        })
    }

    /// The partition (its position in `sizes`) the landing gives `bucket`.
    fn landed(sizes: &[i64], bucket: u8) -> Option<usize> {
        let (landing, taking) = Landing::new(sizes.iter().copied());
        landing.at(bucket).and_then(|i| taking.get(i).copied())
    }

    #[test]
    fn a_partition_taking_every_bucket_is_found_without_hashing() {
        let cases: &[(&[i64], Option<Option<usize>>)] = &[
            (&[100], Some(Some(0))),
            (&[100, 0], Some(Some(0))),
            (&[0, 100], Some(Some(0))),
            (&[0, 0, 100, 0], Some(Some(0))),
            (&[150], Some(Some(0))),
            (&[50, 50], None),
            (&[99, 1], None),
            (&[0, 99], None),
            (&[60], None),
            (&[], Some(None)),
            (&[0], Some(None)),
            (&[-5, 5], Some(None)),
        ];
        for (sizes, expected) in cases {
            let (landing, taking) = Landing::new(sizes.iter().copied());
            assert_eq!(landing.every(), *expected, "{sizes:?}");
            if let Some(every) = expected {
                for b in 1..=100 {
                    let p = every.and_then(|i| taking.get(i).copied());
                    assert_eq!(p, walked(sizes, i64::from(b)), "{sizes:?} {b}");
                    assert_eq!(landing.at(b), *every, "{sizes:?} {b}");
                }
            }
        }
    }

    #[test]
    fn more_partitions_than_buckets() {
        // 300 partitions of size 0 before the one that takes every bucket, and 150 of
        // size 1 (of which the first 100 take one bucket each).
        let mut sizes = vec![0; 300];
        sizes.push(100);
        assert_eq!(landed(&sizes, 1), Some(300));
        assert_eq!(landed(&sizes, 100), Some(300));
        let ones = vec![1; 150];
        for b in 1..=100u8 {
            assert_eq!(landed(&ones, b), Some(usize::from(b) - 1));
        }
        assert_eq!(Landing::new(ones).1.len(), 100);
    }

    proptest::proptest! {
        /// A bucket lands where the SDKs put it, whatever the sizes: out of range, negative
        /// (a running total that falls and rises again), adding up to less or more than 100.
        #[test]
        fn a_bucket_lands_in_the_first_partition_whose_total_reaches_it(
            sizes in proptest::collection::vec(-120i64..=150, 0..8),
        ) {
            for b in 1..=100u8 {
                proptest::prop_assert_eq!(
                    landed(&sizes, b),
                    walked(&sizes, i64::from(b)),
                    "{:?} {}", sizes, b
                );
            }
        }

        /// A rule splits when two buckets get different treatments.
        #[test]
        fn a_rule_splits_when_two_buckets_differ(
            sizes in proptest::collection::vec(-20i64..=120, 0..5),
            names in proptest::collection::vec(0usize..3, 5),
        ) {
            let treatments = ["on", "off", "on"];
            let of = |p: Option<usize>| {
                p.map_or("control", |i| treatments[names[i % names.len()] % 3])
            };
            let (landing, taking) = Landing::new(sizes.iter().copied());
            let expected = (1..=100i64)
                .map(|b| of(walked(&sizes, b)))
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 1;
            let got = landing.splits(|i| of(i.and_then(|i| taking.get(i).copied())));
            proptest::prop_assert_eq!(got, expected, "{:?}", sizes);
        }
    }
}
