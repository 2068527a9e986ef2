//! Mergeable group accumulators, group statistics, Welch's t-test, the delta-method interval
//! of the relative difference and the minimum detectable effect.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// A sum with Neumaier compensation: the rounding error of every addition is kept aside, so
/// sums of many values (and of merged partial sums) stay accurate to about one rounding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub(crate) fn merge(&mut self, other: &CompensatedSum) {
        self.add(other.sum);
        self.compensation += other.compensation;
    }

    pub(crate) fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// The mergeable state of one metric in one group: count, sum and sum of squares of the
/// per-key values (plus min and max, so a constant metric gets a variance of exactly 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetricAccumulator {
    n: u64,
    sum: CompensatedSum,
    sum_sq: CompensatedSum,
    min: f64,
    max: f64,
}

impl MetricAccumulator {
    /// Adds one key's value.
    pub(crate) fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.n += 1;
        self.sum.add(x);
        self.sum_sq.add(x * x);
    }

    /// Adds the keys of another accumulator (disjoint key sets).
    pub(crate) fn merge(&mut self, other: &MetricAccumulator) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        self.n += other.n;
        self.sum.merge(&other.sum);
        self.sum_sq.merge(&other.sum_sq);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The statistics of the accumulated values.
    pub(crate) fn stats(&self, metric: &str) -> GroupStats {
        let n = self.n;
        let mean = (n > 0).then(|| self.sum.value() / n as f64);
        let variance = (n >= 2).then(|| {
            if self.min == self.max {
                return 0.0;
            }
            let s = self.sum.value();
            let nf = n as f64;
            ((self.sum_sq.value() - s * s / nf) / (nf - 1.0)).max(0.0)
        });
        GroupStats {
            metric: metric.to_owned(),
            n,
            mean,
            variance,
        }
    }
}

/// One metric's statistics over the keys of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupStats {
    /// The metric's name.
    pub metric: String,
    /// Keys with a value (all sample keys, except for `average`, which leaves out keys without
    /// non-null values).
    pub n: u64,
    /// Mean of the keys' values; `None` when `n == 0`.
    pub mean: Option<f64>,
    /// Sample variance (divided by `n - 1`); `None` when `n < 2`.
    pub variance: Option<f64>,
}

/// Welch's two-sample t-test of `treatment` against `baseline`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Welch {
    pub(crate) difference: Option<f64>,
    pub(crate) relative_difference: Option<f64>,
    pub(crate) t: Option<f64>,
    pub(crate) df: Option<f64>,
    pub(crate) p_value: Option<f64>,
    pub(crate) ci: Option<(f64, f64)>,
    /// Standard error of the difference; `None` as `t`.
    pub(crate) se: Option<f64>,
    /// Delta-method standard error of the relative difference; `None` as `t` and when the
    /// baseline mean is 0.
    pub(crate) relative_se: Option<f64>,
}

impl Welch {
    /// The `1 - alpha` interval of the difference, `diff ± t(1 - alpha/2, df) · se`.
    pub(crate) fn interval(&self, alpha: f64) -> Option<(f64, f64)> {
        let q = t_quantile(self.df?, alpha)?;
        let (d, se) = (self.difference?, self.se?);
        Some((d - q * se, d + q * se))
    }

    /// The `1 - alpha` interval of the relative difference by the delta method,
    /// `rel ± t(1 - alpha/2, df) · se_rel`, with the quantile of the absolute interval.
    pub(crate) fn relative_interval(&self, alpha: f64) -> Option<(f64, f64)> {
        let q = t_quantile(self.df?, alpha)?;
        let (r, se) = (self.relative_difference?, self.relative_se?);
        Some((r - q * se, r + q * se))
    }
}

fn t_quantile(df: f64, alpha: f64) -> Option<f64> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(dist.inverse_cdf(1.0 - alpha / 2.0)).filter(|q| q.is_finite())
}

/// The smallest absolute difference a two-sided level-`alpha` test detects with probability
/// `power` at standard error `se` (normal approximation):
/// `(z(1 - alpha/2) + z(power)) · se`.
pub(crate) fn minimum_detectable_effect(se: f64, alpha: f64, power: f64) -> Option<f64> {
    let z = Normal::standard();
    let ok = |p: f64| p > 0.0 && p < 1.0;
    if !(ok(alpha) && ok(power) && se.is_finite() && se >= 0.0) {
        return None;
    }
    Some((z.inverse_cdf(1.0 - alpha / 2.0) + z.inverse_cdf(power)) * se)
}

/// Compares two groups: difference of means, relative difference (none when the baseline mean
/// is 0), and, when both groups have `n >= 2` and the standard error is positive, Welch's t,
/// the Welch–Satterthwaite degrees of freedom, the two-sided p-value and the
/// `1 - alpha` confidence interval `diff ± t(1 - alpha/2, df) · se`; and, when the baseline
/// mean is not 0, the delta-method standard error of the relative difference
/// `mean_t / mean_b - 1`: `se_rel² = var_t / (n_t · mean_b²) + mean_t² · var_b / (n_b · mean_b⁴)`
/// (first-order Taylor expansion of the ratio of two independent means; Deng, Knoblich and Lu
/// 2018, "Applying the Delta Method in Metric Analytics").
pub(crate) fn welch(treatment: &GroupStats, baseline: &GroupStats, alpha: f64) -> Welch {
    let mut out = Welch::default();
    let (Some(mt), Some(mb)) = (treatment.mean, baseline.mean) else {
        return out;
    };
    let diff = mt - mb;
    out.difference = Some(diff);
    out.relative_difference = (mb != 0.0).then(|| diff / mb);
    let (Some(vt), Some(vb)) = (treatment.variance, baseline.variance) else {
        return out;
    };
    let at = vt / treatment.n as f64;
    let ab = vb / baseline.n as f64;
    let se2 = at + ab;
    let se = se2.sqrt();
    if !(se > 0.0 && se.is_finite()) {
        return out;
    }
    // Welch–Satterthwaite, written scale-free so tiny variances do not underflow.
    let (rt, rb) = (at / se2, ab / se2);
    let df = 1.0 / (rt * rt / (treatment.n as f64 - 1.0) + rb * rb / (baseline.n as f64 - 1.0));
    let t = diff / se;
    if !(t.is_finite() && df.is_finite() && df > 0.0 && alpha > 0.0 && alpha < 1.0) {
        return out;
    }
    let Ok(dist) = StudentsT::new(0.0, 1.0, df) else {
        return out;
    };
    let p = (2.0 * dist.sf(t.abs())).min(1.0);
    out.t = Some(t);
    out.df = Some(df);
    out.p_value = Some(p);
    out.se = Some(se);
    if mb != 0.0 {
        let rel_se = (at / (mb * mb) + mt * mt * ab / (mb * mb * mb * mb)).sqrt();
        out.relative_se = rel_se.is_finite().then_some(rel_se);
    }
    out.ci = out.interval(alpha);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(values: &[f64]) -> GroupStats {
        let mut acc = MetricAccumulator::default();
        for &v in values {
            acc.push(v);
        }
        acc.stats("m")
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn mean_and_sample_variance() {
        let s = stats_of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.n, 8);
        assert_eq!(s.mean, Some(5.0));
        assert_eq!(s.variance, Some(32.0 / 7.0));
    }

    #[test]
    fn variance_none_below_two() {
        assert_eq!(stats_of(&[]).mean, None);
        assert_eq!(stats_of(&[]).variance, None);
        let one = stats_of(&[3.5]);
        assert_eq!((one.n, one.mean, one.variance), (1, Some(3.5), None));
    }

    #[test]
    fn constant_values_have_zero_variance() {
        let s = stats_of(&[0.1; 1000]);
        assert_eq!(s.variance, Some(0.0));
    }

    #[test]
    fn large_offset_keeps_precision() {
        let values: Vec<f64> = (0..1000).map(|i| 1e6 + (i % 2) as f64).collect();
        let s = stats_of(&values);
        // 500 zeros and 500 ones around 1e6: variance = 0.25 * 1000 / 999.
        assert!(close(s.variance.unwrap_or(0.0), 250.0 / 999.0, 1e-9));
    }

    #[test]
    fn merge_equals_whole() {
        let values = [1.0, 2.5, 3.0, 0.0, 10.0, 7.25];
        let mut whole = MetricAccumulator::default();
        let mut a = MetricAccumulator::default();
        let mut b = MetricAccumulator::default();
        for (i, &v) in values.iter().enumerate() {
            whole.push(v);
            if i % 2 == 0 { a.push(v) } else { b.push(v) }
        }
        a.merge(&b);
        assert_eq!(a.stats("m"), whole.stats("m"));
        let mut empty = MetricAccumulator::default();
        empty.merge(&whole);
        assert_eq!(empty, whole);
    }

    /// Hand-computed example. Treatment {3, 4, 5, 8} (mean 5, var 14/3), baseline
    /// {1, 2, 2, 3, 2} (mean 2, var 0.5).
    /// se² = 14/12 + 0.5/5 = 19/15, se = 1.125462..., t = 3 / se = 2.665570...
    /// df = (19/15)² / ((14/12)²/3 + (0.1)²/4) = 1.604444... / 0.456204... = 3.516947...,
    /// two-sided p = 0.064182..., t(0.975, df) = 2.933504...
    /// The p-value and quantile were cross-checked with `python3` using only the math module:
    /// Simpson integration of the Student t density (1e6 intervals) and bisection.
    #[test]
    fn welch_matches_hand_computation() {
        let t = stats_of(&[3.0, 4.0, 5.0, 8.0]);
        let b = stats_of(&[1.0, 2.0, 2.0, 3.0, 2.0]);
        let w = welch(&t, &b, 0.05);
        assert_eq!(w.difference, Some(3.0));
        assert_eq!(w.relative_difference, Some(1.5));
        let se = (19.0f64 / 15.0).sqrt();
        assert!(close(w.t.unwrap_or(0.0), 3.0 / se, 1e-12));
        assert!(close(w.df.unwrap_or(0.0), PY_DF, 1e-9));
        assert!(close(w.p_value.unwrap_or(0.0), PY_P, 1e-6));
        let (lo, hi) = w.ci.unwrap_or((0.0, 0.0));
        assert!(close(lo, 3.0 - PY_Q * se, 1e-6));
        assert!(close(hi, 3.0 + PY_Q * se, 1e-6));
    }

    /// The same example's relative difference 3 / 2 = 1.5 by the delta method:
    /// se_rel² = (14/3)/4 / 2² + 5² · 0.5/5 / 2⁴ = 0.291667 + 0.15625, se_rel = 0.669266;
    /// interval 1.5 ± 2.933504 · se_rel (scipy.stats.t.ppf(0.975, df) for the quantile). The
    /// 99% interval of the difference is 3 ± t(0.995, df) · se (scipy).
    #[test]
    fn relative_interval_by_the_delta_method() {
        let t = stats_of(&[3.0, 4.0, 5.0, 8.0]);
        let b = stats_of(&[1.0, 2.0, 2.0, 3.0, 2.0]);
        let w = welch(&t, &b, 0.05);
        assert!(close(
            w.relative_se.unwrap_or(0.0),
            0.6692657668420421,
            1e-12
        ));
        let (lo, hi) = w.relative_interval(0.05).unwrap_or((0.0, 0.0));
        assert!(close(lo, -0.46329410679613914, 1e-7));
        assert!(close(hi, 3.4632941067961394, 1e-7));
        let (lo, hi) = w.interval(0.01).unwrap_or((0.0, 0.0));
        assert!(close(lo, -2.701455594764444, 1e-7));
        assert!(close(hi, 8.701455594764443, 1e-7));
        assert_eq!(w.interval(0.05), w.ci);
        assert_eq!(w.interval(0.0), None);
    }

    #[test]
    fn relative_interval_needs_a_nonzero_baseline() {
        let zero = stats_of(&[0.0, 0.0, 0.0]);
        let w = welch(&stats_of(&[1.0, 3.0]), &zero, 0.05);
        assert!(w.se.is_some());
        assert_eq!((w.relative_se, w.relative_interval(0.05)), (None, None));
    }

    /// The textbook factor z(0.975) + z(0.8) = 1.959964 + 0.841621 = 2.801585 (scipy).
    #[test]
    fn minimum_detectable_effect_is_the_textbook_factor() {
        let mde = minimum_detectable_effect(0.5, 0.05, 0.8).unwrap_or(0.0);
        assert!(close(mde, 0.5 * 2.8015852181129683, 1e-9));
        assert_eq!(minimum_detectable_effect(0.0, 0.05, 0.8), Some(0.0));
        assert_eq!(minimum_detectable_effect(1.0, 0.05, 1.0), None);
        assert_eq!(minimum_detectable_effect(f64::NAN, 0.05, 0.8), None);
    }

    const PY_DF: f64 = 3.516947432514715;
    const PY_P: f64 = 0.06418179811500624;
    const PY_Q: f64 = 2.9335044522897835;

    #[test]
    fn welch_none_cases() {
        let one = stats_of(&[1.0]);
        let two = stats_of(&[1.0, 3.0]);
        let w = welch(&one, &two, 0.05);
        assert_eq!(w.difference, Some(-1.0));
        assert_eq!((w.t, w.df, w.p_value, w.ci), (None, None, None, None));

        let flat_a = stats_of(&[1.0, 1.0, 1.0]);
        let flat_b = stats_of(&[2.0, 2.0]);
        let w = welch(&flat_a, &flat_b, 0.05);
        assert_eq!(w.difference, Some(-1.0));
        assert_eq!(w.relative_difference, Some(-0.5));
        assert_eq!((w.t, w.p_value), (None, None));

        let zero = stats_of(&[0.0, 0.0, 0.0]);
        let w = welch(&two, &zero, 0.05);
        assert_eq!(w.relative_difference, None);
        assert!(w.t.is_some(), "one positive variance is enough");

        let empty = stats_of(&[]);
        assert_eq!(welch(&empty, &two, 0.05), Welch::default());
    }

    #[test]
    fn welch_is_significant_on_a_clear_effect() {
        let a: Vec<f64> = (0..200).map(|i| 10.0 + (i % 5) as f64).collect();
        let b: Vec<f64> = (0..200).map(|i| 8.0 + (i % 5) as f64).collect();
        let w = welch(&stats_of(&a), &stats_of(&b), 0.05);
        assert!(w.p_value.unwrap_or(1.0) < 1e-20);
        let (lo, hi) = w.ci.unwrap_or((0.0, 0.0));
        assert!(lo < 2.0 && 2.0 < hi && lo > 0.0);
    }
}
