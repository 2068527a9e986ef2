//! Sequential testing: always-valid p-values and confidence sequences by the mixture
//! sequential probability ratio test (mSPRT) with a normal mixture, after Johari, Koomen,
//! Pekelis and Walsh (2017), "Peeking at A/B Tests: Why it matters, and what to do about it"
//! (KDD 2017), the method of Optimizely's Stats Engine.
//!
//! With the difference of means `d`, its estimated variance `V = se²` and a normal mixing
//! distribution `N(0, τ²)` over the true difference, the mixture likelihood ratio against
//! "the difference is θ" is
//!
//! `Λ(θ) = sqrt(V / (V + τ²)) · exp((d - θ)² · τ² / (2 · V · (V + τ²)))`.
//!
//! The always-valid p-value is `min(1, 1 / Λ(0))`; the confidence sequence is the set of θ
//! with `Λ(θ) < 1 / alpha`:
//!
//! `d ± sqrt(V · (V + τ²) / τ² · (2 · ln(1 / alpha) + ln((V + τ²) / V)))`.
//!
//! Both stay valid however often the report is looked at and whenever the experiment is
//! stopped: the chance that the p-value *ever* falls below alpha under no effect, or that the
//! sequence *ever* misses the true difference, is at most alpha. A caller who looks
//! repeatedly keeps the running minimum of the p-values and the running intersection of the
//! intervals (each report is one look).
//!
//! **Tuning parameter.** `τ²` is given per analysis
//! ([`AnalysisSpecBuilder::sequential`](super::AnalysisSpecBuilder::sequential)) on the scale
//! of standardized effects: the mixing variance of the difference divided by the per-key
//! standard deviation, so that one value serves every metric. For a metric, `τ²` is that
//! value times `(var_t + var_b) / 2`. Johari et al. show the test is most powerful for true
//! effects near `τ`; a value around the square of the standardized effects the experiments
//! usually see (0.01, effects of a tenth of a standard deviation) is a reasonable start.

/// The always-valid p-value and the `1 - alpha` confidence sequence of a difference `d` with
/// standard error `se`, for the mixing variance `tau_squared` on the difference's scale.
pub(crate) fn msprt(d: f64, se: f64, tau_squared: f64, alpha: f64) -> Option<(f64, (f64, f64))> {
    let v = se * se;
    let ok = d.is_finite() && v > 0.0 && v.is_finite() && tau_squared > 0.0;
    if !(ok && tau_squared.is_finite() && alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let sum = v + tau_squared;
    let log_lambda = 0.5 * (v / sum).ln() + d * d * tau_squared / (2.0 * v * sum);
    let p = (-log_lambda).exp().min(1.0);
    let half = (v * sum / tau_squared * (2.0 * (1.0 / alpha).ln() + (sum / v).ln())).sqrt();
    (p.is_finite() && half.is_finite()).then_some((p, (d - half, d + half)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    /// V = 1, τ² = 1, d = 3: Λ = sqrt(1/2) · e^(9/4) = 6.708842..., p = 0.149057...;
    /// half-width sqrt(2 · (2 ln 20 + ln 2)) = 3.656395... (python3, math module).
    #[test]
    fn matches_the_closed_form() {
        let (p, (lo, hi)) = msprt(3.0, 1.0, 1.0, 0.05).expect("a test");
        assert!(close(p, 1.0 / (0.5f64.sqrt() * 2.25f64.exp()), 1e-14));
        assert!(close(p, 0.14905701283899597, 1e-12));
        assert!(close(hi - 3.0, 3.6563948713638483, 1e-12));
        assert!(close(3.0 - lo, 3.6563948713638483, 1e-12));
    }

    #[test]
    fn no_evidence_is_a_p_value_of_one() {
        let (p, (lo, hi)) = msprt(0.0, 0.5, 0.2, 0.05).expect("a test");
        assert_eq!(p, 1.0);
        assert!(close(-lo, hi, 1e-15));
        assert_eq!(msprt(1.0, 0.0, 1.0, 0.05), None);
        assert_eq!(msprt(1.0, 1.0, 0.0, 0.05), None);
        assert_eq!(msprt(f64::NAN, 1.0, 1.0, 0.05), None);
        assert_eq!(msprt(1.0, 1.0, 1.0, 1.0), None);
    }

    /// Simulated A/A tests peeked at 100 times each: the fixed-horizon z-test at 0.05 is
    /// rejected at some look far more often than 5%; the always-valid p-value stays below.
    #[test]
    fn peeking_keeps_the_error_rate() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut normal = || {
            // Box–Muller over a xorshift stream: deterministic.
            let mut u = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            let (a, b) = (u().max(1e-300), u());
            (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
        };
        let (runs, looks, per_look) = (400, 100, 20);
        let (mut naive, mut sequential) = (0, 0);
        for _ in 0..runs {
            let (mut sum, mut n) = (0.0f64, 0.0f64);
            let (mut naive_hit, mut seq_hit) = (false, false);
            for _ in 0..looks {
                for _ in 0..per_look {
                    // Difference of one key per arm, both N(0, 1): variance 2 per pair.
                    sum += normal() - normal();
                    n += 1.0;
                }
                let se = (2.0 / n).sqrt();
                let d = sum / n;
                naive_hit |= (d / se).abs() > 1.959963984540054;
                let (p, _) = msprt(d, se, 0.01 * 2.0, 0.05).expect("a test");
                seq_hit |= p < 0.05;
            }
            naive += usize::from(naive_hit);
            sequential += usize::from(seq_hit);
        }
        assert!(
            naive > runs * 15 / 100,
            "peeking inflates the naive test: {naive}"
        );
        assert!(
            sequential <= runs * 6 / 100,
            "always valid: {sequential} of {runs}"
        );
    }

    proptest! {
        /// The sequence excludes 0 exactly when the p-value is below alpha, and is wider than
        /// the fixed-horizon normal interval.
        #[test]
        fn sequence_and_p_value_agree(
            d in -10.0f64..10.0,
            se in 0.01f64..5.0,
            tau2 in 0.001f64..100.0,
            alpha in 0.001f64..0.3,
        ) {
            let (p, (lo, hi)) = msprt(d, se, tau2, alpha).expect("a test");
            prop_assert!((0.0..=1.0).contains(&p));
            let excludes = lo > 0.0 || hi < 0.0;
            if (p - alpha).abs() > 1e-9 {
                prop_assert_eq!(excludes, p < alpha, "p {} [{}, {}]", p, lo, hi);
            }
            let z = statrs::distribution::ContinuousCDF::inverse_cdf(
                &statrs::distribution::Normal::standard(),
                1.0 - alpha / 2.0,
            );
            prop_assert!(hi - d >= z * se * (1.0 - 1e-12));
        }
    }
}
