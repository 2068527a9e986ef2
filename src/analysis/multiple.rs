//! Multiple-comparison control: Benjamini–Hochberg adjusted p-values, and the interval level
//! that matches them.
//!
//! The family is every impact of one unit in one metric tier that has a p-value (every
//! treatment, label and metric of that tier). With the family's `m` p-values sorted,
//! `p(1) <= ... <= p(m)`, the adjusted p-value of rank `i` is
//! `min over j >= i of min(1, p(j) · m / j)` (Benjamini and Hochberg 1995, the step-up
//! procedure written as adjusted p-values, as R's `p.adjust(method = "BH")`). An impact is
//! significant after adjustment when its adjusted p-value is below alpha; that holds for
//! exactly the `R` smallest p-values.
//!
//! The adjusted intervals are at level `1 - alpha · max(R, 1) / m`: Harness FME's
//! `alpha · rank / m` taken at the rank of the last significant result, which is Benjamini and
//! Yekutieli's (2005) false-coverage-rate interval. With this level an adjusted interval
//! excludes 0 exactly when the adjusted p-value is below alpha (with `R = 0` every p-value is
//! at least `alpha / m`, so every interval holds 0).

/// The adjusted p-values of a family (in the input order; `None` stays `None`), and the alpha
/// of its adjusted intervals.
pub(crate) fn benjamini_hochberg(p_values: &[Option<f64>], alpha: f64) -> (Vec<Option<f64>>, f64) {
    let mut ranked: Vec<(usize, f64)> = p_values
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = ranked.len();
    let mut adjusted = vec![None; p_values.len()];
    let mut running = 1.0f64;
    for (rank, &(i, p)) in ranked.iter().enumerate().rev() {
        // p · (m / j), not p · m / j: m / j >= 1 exactly, so rounding never takes q below p.
        running = running.min(p * (m as f64 / (rank + 1) as f64)).min(1.0);
        if let Some(slot) = adjusted.get_mut(i) {
            *slot = Some(running);
        }
    }
    let rejected = adjusted.iter().flatten().filter(|&&q| q < alpha).count();
    let interval_alpha = if m == 0 {
        alpha
    } else {
        alpha * rejected.max(1) as f64 / m as f64
    };
    (adjusted, interval_alpha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    /// The 15 p-values of Benjamini and Hochberg's (1995) worked example (section 4); BH at
    /// 0.05 rejects the four smallest. Adjusted values from scipy.stats.false_discovery_control
    /// 1.17.1 (identical to R's p.adjust "BH").
    #[test]
    fn matches_the_papers_example() {
        let p = [
            0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262,
            0.5719, 0.6528, 0.7590, 1.0,
        ];
        let input: Vec<Option<f64>> = p.iter().copied().map(Some).collect();
        let (adjusted, interval_alpha) = benjamini_hochberg(&input, 0.05);
        for (got, want) in adjusted.iter().zip(SCIPY_BH) {
            assert!(close(got.unwrap_or(-1.0), want), "{got:?} != {want}");
        }
        let rejected = adjusted.iter().flatten().filter(|&&q| q < 0.05).count();
        assert_eq!(rejected, 4);
        assert!(close(interval_alpha, 0.05 * 4.0 / 15.0));
    }

    const SCIPY_BH: [f64; 15] = [
        0.0015,
        0.003,
        0.0095,
        0.035625,
        0.0603,
        0.06385714285714286,
        0.06385714285714286,
        0.0645,
        0.07650000000000001,
        0.486,
        0.5811818181818181,
        0.7148749999999999,
        0.7532307692307693,
        0.8132142857142857,
        1.0,
    ];

    #[test]
    fn keeps_order_and_missing_values() {
        let (adjusted, a) = benjamini_hochberg(&[Some(0.04), None, Some(0.01), Some(0.03)], 0.05);
        assert_eq!(adjusted[1], None);
        assert!(close(adjusted[2].unwrap_or(0.0), 0.03));
        assert!(close(adjusted[0].unwrap_or(0.0), 0.04));
        assert!(close(adjusted[3].unwrap_or(0.0), 0.04));
        assert!(close(a, 0.05));
        let (none, a) = benjamini_hochberg(&[None], 0.05);
        assert_eq!((none, a), (vec![None], 0.05));
        let (_, a) = benjamini_hochberg(&[Some(0.5), Some(0.9)], 0.05);
        assert!(close(a, 0.025), "no rejection: alpha / m");
    }

    proptest! {
        #[test]
        fn adjusted_p_values_are_monotone_bounded_and_above_raw(
            p in proptest::collection::vec(proptest::option::of(0.0f64..=1.0), 0..40),
            alpha in 0.001f64..0.5,
        ) {
            let (adjusted, interval_alpha) = benjamini_hochberg(&p, alpha);
            let pairs: Vec<(f64, f64)> = p
                .iter()
                .zip(&adjusted)
                .filter_map(|(p, q)| Some(((*p)?, (*q)?)))
                .collect();
            prop_assert_eq!(pairs.len(), p.iter().flatten().count());
            for &(raw, adj) in &pairs {
                prop_assert!(adj >= raw && adj <= 1.0);
            }
            for &(ra, aa) in &pairs {
                for &(rb, ab) in &pairs {
                    if ra <= rb {
                        prop_assert!(aa <= ab, "raw {} <= {} but adjusted {} > {}", ra, rb, aa, ab);
                    }
                }
            }
            // Significant after adjustment <=> raw p below the interval alpha (up to rounding
            // at the boundary): the adjusted intervals agree with the adjusted p-values.
            for &(raw, adj) in &pairs {
                if (raw - interval_alpha).abs() > 1e-12 {
                    prop_assert_eq!(adj < alpha, raw < interval_alpha);
                }
            }
        }
    }
}
