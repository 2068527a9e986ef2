//! CUPED: variance reduction with a pre-exposure covariate (Deng, Xu, Kohavi and Walker 2013,
//! "Improving the Sensitivity of Online Controlled Experiments by Utilizing Pre-Experiment
//! Data", WSDM 2013).
//!
//! For a metric with CUPED ([`Metric::cuped`](super::Metric::cuped)), each key's value `x` in
//! its group is paired with `y`, the same metric over the key's events of the pre-exposure
//! window `[first - L, first)` (`first` its first impression in the unit, `L` the window,
//! [`AnalysisSpecBuilder::cuped_window_ms`](super::AnalysisSpecBuilder::cuped_window_ms)).
//! Keys with both values enter the estimate (for `average`, keys without pre-exposure values
//! are left out). With the pooled within-group slope
//! `θ = Σ_g S_xy(g) / Σ_g S_yy(g)` (0 when the covariate is constant within the groups), each
//! group's adjusted mean is `mean_x - θ · (mean_y - ȳ)` and its adjusted variance
//! `var_x - 2θ · cov_xy + θ² · var_y`; the adjusted difference
//! `Δmean_x - θ · Δmean_y` is then tested with Welch's t-test as the plain difference is. The
//! variance reduction is `1 - se²_adjusted / se²` over the same keys. Pre-exposure events
//! cannot be affected by the treatment, so the adjustment keeps the estimate unbiased.
//! Events that count only in a pre-exposure window are not in
//! [`InputStats::events_attributed`](super::InputStats::events_attributed).

use serde::{Deserialize, Serialize};

use super::stats::{CompensatedSum, GroupStats, welch};

/// The mergeable joint moments of `(x, y)` over the keys of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Covariance {
    n: u64,
    x: CompensatedSum,
    y: CompensatedSum,
    xx: CompensatedSum,
    yy: CompensatedSum,
    xy: CompensatedSum,
}

/// Sample moments: means, centred sums of squares and of products (`n > 0`).
struct Moments {
    n: f64,
    mx: f64,
    my: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl Covariance {
    pub(crate) fn push(&mut self, x: f64, y: f64) {
        self.n += 1;
        self.x.add(x);
        self.y.add(y);
        self.xx.add(x * x);
        self.yy.add(y * y);
        self.xy.add(x * y);
    }

    pub(crate) fn merge(&mut self, other: &Covariance) {
        self.n += other.n;
        self.x.merge(&other.x);
        self.y.merge(&other.y);
        self.xx.merge(&other.xx);
        self.yy.merge(&other.yy);
        self.xy.merge(&other.xy);
    }

    fn moments(&self) -> Moments {
        let n = self.n as f64;
        let (sx, sy) = (self.x.value(), self.y.value());
        Moments {
            n,
            mx: sx / n,
            my: sy / n,
            sxx: (self.xx.value() - sx * sx / n).max(0.0),
            syy: (self.yy.value() - sy * sy / n).max(0.0),
            sxy: self.xy.value() - sx * sy / n,
        }
    }
}

/// The CUPED-adjusted comparison of one treatment with the baseline on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CupedEstimate {
    /// Keys of the treatment with a value and a pre-exposure value.
    pub n_treatment: u64,
    /// Keys of the baseline with both values.
    pub n_baseline: u64,
    /// The pooled within-group slope θ of the value on its pre-exposure value.
    pub theta: f64,
    /// The adjusted difference of means.
    pub difference: f64,
    /// Its `1 - alpha` Welch interval; `None` when a side has `n < 2` or the adjusted standard
    /// error is 0.
    pub confidence_interval: Option<(f64, f64)>,
    /// Its two-sided Welch p-value; `None` as the interval.
    pub p_value: Option<f64>,
    /// `1 - se²_adjusted / se²` over the same keys: the share of the variance removed;
    /// `None` when the unadjusted standard error is 0.
    pub variance_reduction: Option<f64>,
}

/// The adjusted comparison of `treatment` with `baseline`; `None` when a side has no key.
pub(crate) fn cuped(
    treatment: &Covariance,
    baseline: &Covariance,
    alpha: f64,
) -> Option<CupedEstimate> {
    if treatment.n == 0 || baseline.n == 0 {
        return None;
    }
    let (t, b) = (treatment.moments(), baseline.moments());
    let syy = t.syy + b.syy;
    // A centred sum this small against the raw sum of squares is rounding, not variation: the
    // covariate is constant within the groups.
    let raw_yy = treatment.yy.value() + baseline.yy.value();
    let theta = if syy > 1e-10 * raw_yy {
        (t.sxy + b.sxy) / syy
    } else {
        0.0
    };
    if !theta.is_finite() {
        return None;
    }
    let pooled_y = (t.my * t.n + b.my * b.n) / (t.n + b.n);
    let stats = |m: &Moments, adjusted: bool| {
        let k = if adjusted { theta } else { 0.0 };
        let variance = (m.n >= 2.0).then(|| {
            let (vx, vy, c) = (
                m.sxx / (m.n - 1.0),
                m.syy / (m.n - 1.0),
                m.sxy / (m.n - 1.0),
            );
            (vx - 2.0 * k * c + k * k * vy).max(0.0)
        });
        GroupStats {
            metric: String::new(),
            n: m.n as u64,
            mean: Some(m.mx - k * (m.my - pooled_y)),
            variance,
        }
    };
    let adjusted = welch(&stats(&t, true), &stats(&b, true), alpha);
    let raw = welch(&stats(&t, false), &stats(&b, false), alpha);
    let variance_reduction = match (adjusted.se, raw.se) {
        (Some(a), Some(r)) if r > 0.0 => Some(1.0 - (a * a) / (r * r)),
        (None, Some(r)) if r > 0.0 => Some(1.0),
        _ => None,
    };
    Some(CupedEstimate {
        n_treatment: treatment.n,
        n_baseline: baseline.n,
        theta,
        difference: adjusted.difference?,
        confidence_interval: adjusted.ci,
        p_value: adjusted.p_value,
        variance_reduction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acc(x: &[f64], y: &[f64]) -> Covariance {
        let mut c = Covariance::default();
        for (&x, &y) in x.iter().zip(y) {
            c.push(x, y);
        }
        c
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    /// The adjusted difference equals the treatment coefficient of the ANCOVA regression
    /// `x ~ 1 + treated + y` (numpy.linalg.lstsq: 1.7994454713493544, slope
    /// 1.1090573012939007); the interval, p-value and variance reduction follow the module's
    /// formulas (numpy and scipy.stats.t).
    #[test]
    fn matches_ancova_and_the_closed_form() {
        let t = acc(
            &[12.0, 15.0, 9.0, 20.0, 14.0, 11.0],
            &[10.0, 13.0, 9.0, 16.0, 12.0, 8.0],
        );
        let b = acc(&[10.0, 8.0, 13.0, 7.0, 12.0], &[11.0, 8.0, 12.0, 6.0, 12.0]);
        let c = cuped(&t, &b, 0.05).expect("an estimate");
        assert!(close(c.theta, 1.1090573012939007, 1e-12));
        assert!(close(c.difference, 1.7994454713493544, 1e-12));
        assert!(close(c.p_value.unwrap_or(0.0), 0.021721965424908944, 1e-7));
        let (lo, hi) = c.confidence_interval.unwrap_or((0.0, 0.0));
        assert!(close(lo, 0.33037527866871286, 1e-7));
        assert!(close(hi, 3.2685156640299935, 1e-7));
        assert!(close(
            c.variance_reduction.unwrap_or(0.0),
            0.8875373985100958,
            1e-10
        ));
        assert_eq!((c.n_treatment, c.n_baseline), (6, 5));
    }

    #[test]
    fn needs_keys_on_both_sides() {
        let t = acc(&[1.0, 2.0], &[1.0, 1.0]);
        assert_eq!(cuped(&t, &Covariance::default(), 0.05), None);
        let one = cuped(&acc(&[1.0], &[0.0]), &acc(&[2.0], &[0.0]), 0.05).expect("estimate");
        assert_eq!(
            (one.difference, one.p_value, one.variance_reduction),
            (-1.0, None, None)
        );
    }

    proptest! {
        /// A covariate that is constant within the groups (no pre-exposure events, say)
        /// changes nothing: θ = 0 and the estimate is the plain Welch comparison.
        #[test]
        fn a_useless_covariate_changes_nothing(
            xt in proptest::collection::vec(-1e3f64..1e3, 2..40),
            xb in proptest::collection::vec(-1e3f64..1e3, 2..40),
            (ct, cb) in (-10f64..10.0, -10f64..10.0),
        ) {
            let t = acc(&xt, &vec![ct; xt.len()]);
            let b = acc(&xb, &vec![cb; xb.len()]);
            let c = cuped(&t, &b, 0.05).expect("an estimate");
            let plain = |x: &[f64]| {
                let mut m = super::super::stats::MetricAccumulator::default();
                x.iter().for_each(|&v| m.push(v));
                m.stats("m")
            };
            let w = welch(&plain(&xt), &plain(&xb), 0.05);
            prop_assert_eq!(c.theta, 0.0);
            let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            prop_assert!(near(c.difference, w.difference.unwrap_or(f64::NAN)));
            match (c.p_value, w.p_value) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() <= 1e-9),
                (a, b) => prop_assert_eq!(a, b),
            }
            if let Some(r) = c.variance_reduction {
                prop_assert!(r.abs() <= 1e-9, "reduction {}", r);
            }
        }

        /// Merged halves have the moments of the whole.
        #[test]
        fn merge_of_halves_equals_the_whole(
            pairs in proptest::collection::vec((-1e3f64..1e3, -1e3f64..1e3), 0..50),
            cut in 0usize..50,
        ) {
            let cut = cut.min(pairs.len());
            let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
            let whole = acc(&x, &y);
            let mut a = acc(&x[..cut], &y[..cut]);
            a.merge(&acc(&x[cut..], &y[cut..]));
            prop_assert_eq!(a.n, whole.n);
            if whole.n == 0 {
                return Ok(());
            }
            let (ma, mw) = (a.moments(), whole.moments());
            for (p, q) in [(ma.sxx, mw.sxx), (ma.syy, mw.syy), (ma.sxy, mw.sxy)] {
                prop_assert!((p - q).abs() <= 1e-9 * q.abs().max(1.0), "{} {}", p, q);
            }
        }
    }
}
