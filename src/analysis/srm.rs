//! Sample-ratio mismatch: do the observed sample sizes of a rule's treatments fit the split the
//! rule was configured with?
//!
//! For one unit and one label, the expected split gives each treatment a weight (the
//! percentages of the rule's partitions, or weights given by the caller). With `N` keys in the
//! samples of the split's treatments, treatment `i` expects `E_i = N · w_i / Σw`. The overall
//! test is Pearson's chi-square goodness of fit, `χ² = Σ (O_i - E_i)² / E_i` with `k - 1`
//! degrees of freedom over the `k` treatments of positive weight; every pair of those
//! treatments is also tested alone (two cells, 1 degree of freedom, expected counts in the
//! ratio of their weights), as Harness FME (Split) does. A test is a mismatch when its p-value
//! is below the threshold (0.001 by default,
//! [`AnalysisSpecBuilder::srm_threshold`](super::AnalysisSpecBuilder::srm_threshold)).
//! Keys in the sample of a treatment that the split gives no weight are listed as unexpected
//! and are a mismatch by themselves.
//!
//! Sample sizes are the groups' `sample_size`: a key with one switch is in the sample of both
//! of its pairs, an excluded key in none.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::AnalysisError;
use crate::definitions::FeatureFlag;

/// The expected split of one rule, for one version or for every unit of the flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExpectedSplit {
    /// The version it applies to; `None` for every unit without a split of its own.
    pub(crate) change_number: Option<i64>,
    /// The rule's label; `None` for no label.
    pub(crate) label: Option<String>,
    /// Treatments and their weights, in the order given.
    pub(crate) weights: Vec<(String, f64)>,
}

impl ExpectedSplit {
    pub(crate) fn new(
        change_number: Option<i64>,
        label: &str,
        weights: impl IntoIterator<Item = (String, f64)>,
    ) -> Self {
        ExpectedSplit {
            change_number,
            label: (!label.is_empty()).then(|| label.to_owned()),
            weights: weights.into_iter().collect(),
        }
    }

    /// The expected splits of every rule with partitions and a label in a flag definition,
    /// for the definition's version (every unit when it has no change number).
    pub(crate) fn from_definition(flag: &FeatureFlag) -> Vec<ExpectedSplit> {
        flag.conditions
            .iter()
            .flatten()
            .filter_map(|c| {
                let label = c.label.as_deref()?;
                let partitions = c.partitions.as_ref()?;
                let weights = partitions
                    .iter()
                    .map(|p| (p.treatment.clone(), p.size as f64));
                Some(ExpectedSplit::new(flag.change_number, label, weights))
            })
            .collect()
    }

    /// Checks that the weights are finite, not negative, not all zero, and name each treatment
    /// once.
    pub(crate) fn validate(&self, flag: &str) -> Result<(), AnalysisError> {
        let rule = self.label.as_deref().unwrap_or("(no label)");
        let invalid = |what: String| {
            Err(AnalysisError::InvalidSpec(format!(
                "flag `{flag}` rule `{rule}`: expected split {what}"
            )))
        };
        if let Some((t, w)) = self
            .weights
            .iter()
            .find(|(_, w)| !(w.is_finite() && *w >= 0.0))
        {
            return invalid(format!("gives treatment `{t}` the weight {w}"));
        }
        if !self.weights.iter().any(|(_, w)| *w > 0.0) {
            return invalid("has no positive weight".into());
        }
        for (i, (t, _)) in self.weights.iter().enumerate() {
            if self.weights[..i].iter().any(|(u, _)| u == t) {
                return invalid(format!("names treatment `{t}` twice"));
            }
        }
        Ok(())
    }
}

/// The sample-ratio check of one rule (label) in one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SampleRatio {
    /// The rule's label; `None` for no label.
    pub label: Option<String>,
    /// The treatments of positive weight, in the order of the expected split.
    pub cells: Vec<SampleRatioCell>,
    /// Treatments of the label with keys in their sample that the split gives no weight, with
    /// their sample sizes.
    pub unexpected: Vec<(String, u64)>,
    /// Pearson's χ² over `cells`; `None` when they hold no keys.
    pub chi_square: Option<f64>,
    /// Degrees of freedom: the number of cells minus 1.
    pub df: u64,
    /// The χ² test's p-value; `None` when there is no test (no keys, or a single cell).
    pub p_value: Option<f64>,
    /// Every pair of cells tested alone.
    pub pairwise: Vec<PairwiseRatio>,
    /// Whether the overall test's p-value is below the threshold, or a treatment outside the
    /// split has keys.
    pub overall_mismatch: bool,
    /// `overall_mismatch`, or any pairwise test a mismatch.
    pub mismatch: bool,
}

impl SampleRatio {
    /// Whether a comparison of `a` with `b` is compromised: the overall check is a mismatch,
    /// or the pairwise test of `a` and `b` is.
    pub fn flags(&self, a: &str, b: &str) -> bool {
        self.overall_mismatch
            || self.pairwise.iter().any(|p| {
                p.mismatch && ((p.first == a && p.second == b) || (p.first == b && p.second == a))
            })
    }
}

/// One treatment's observed and expected sample size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SampleRatioCell {
    /// The treatment.
    pub treatment: String,
    /// Keys in its sample.
    pub observed: u64,
    /// Its share of the split, `w / Σw`.
    pub expected_share: f64,
    /// `N · expected_share`.
    pub expected: f64,
}

/// The chi-square test of two treatments of a split alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PairwiseRatio {
    /// The treatment earlier in the split.
    pub first: String,
    /// The treatment later in the split.
    pub second: String,
    /// χ² with 1 degree of freedom; `None` when neither has keys.
    pub chi_square: Option<f64>,
    /// Its p-value; `None` as `chi_square`.
    pub p_value: Option<f64>,
    /// `p_value < threshold`.
    pub mismatch: bool,
}

/// Checks the observed sample sizes `(treatment, sample_size)` of one label against `split`.
pub(crate) fn check<'a>(
    split: &ExpectedSplit,
    observed: impl IntoIterator<Item = (&'a str, u64)> + Clone,
    threshold: f64,
) -> SampleRatio {
    let total_weight: f64 = split.weights.iter().map(|(_, w)| w).sum();
    let count = |t: &str| {
        observed
            .clone()
            .into_iter()
            .filter(|(o, _)| *o == t)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let positive: Vec<(&str, f64, u64)> = split
        .weights
        .iter()
        .filter(|(_, w)| *w > 0.0)
        .map(|(t, w)| (t.as_str(), *w, count(t)))
        .collect();
    let unexpected: Vec<(String, u64)> = observed
        .into_iter()
        .filter(|&(t, n)| n > 0 && !positive.iter().any(|&(p, _, _)| p == t))
        .map(|(t, n)| (t.to_owned(), n))
        .collect();
    let n: u64 = positive.iter().map(|&(_, _, o)| o).sum();
    let cells: Vec<SampleRatioCell> = positive
        .iter()
        .map(|&(t, w, o)| SampleRatioCell {
            treatment: t.to_owned(),
            observed: o,
            expected_share: w / total_weight,
            expected: n as f64 * w / total_weight,
        })
        .collect();
    let df = cells.len().saturating_sub(1) as u64;
    let chi_square = (n > 0).then(|| {
        cells
            .iter()
            .map(|c| (c.observed as f64 - c.expected).powi(2) / c.expected)
            .sum::<f64>()
    });
    let p_value = chi_square.and_then(|x| chi_square_sf(x, df));
    let mut pairwise = Vec::new();
    for (i, &(a, wa, oa)) in positive.iter().enumerate() {
        for &(b, wb, ob) in &positive[i + 1..] {
            let pair_n = (oa + ob) as f64;
            let chi = (oa + ob > 0).then(|| {
                let ea = pair_n * wa / (wa + wb);
                let eb = pair_n * wb / (wa + wb);
                (oa as f64 - ea).powi(2) / ea + (ob as f64 - eb).powi(2) / eb
            });
            let p = chi.and_then(|x| chi_square_sf(x, 1));
            pairwise.push(PairwiseRatio {
                first: a.to_owned(),
                second: b.to_owned(),
                chi_square: chi,
                p_value: p,
                mismatch: p.is_some_and(|p| p < threshold),
            });
        }
    }
    let overall_mismatch = p_value.is_some_and(|p| p < threshold) || !unexpected.is_empty();
    let mismatch = overall_mismatch || pairwise.iter().any(|p| p.mismatch);
    SampleRatio {
        label: split.label.clone(),
        cells,
        unexpected,
        chi_square,
        df,
        p_value,
        pairwise,
        overall_mismatch,
        mismatch,
    }
}

/// The upper tail of the χ² distribution with `df` degrees of freedom at `x`.
fn chi_square_sf(x: f64, df: u64) -> Option<f64> {
    if df == 0 || !x.is_finite() {
        return None;
    }
    let dist = ChiSquared::new(df as f64).ok()?;
    Some(dist.sf(x).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[(&str, f64)]) -> ExpectedSplit {
        ExpectedSplit::new(
            None,
            "default rule",
            weights.iter().map(|&(t, w)| (t.into(), w)),
        )
    }

    fn close(a: Option<f64>, b: f64, tol: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= tol * b.abs().max(1e-300))
    }

    /// Mendel's dihybrid cross (315, 108, 101, 32 against 9:3:3:1), the textbook goodness of
    /// fit example: χ² = 0.470, p = 0.925. Values from scipy.stats.chisquare 1.17.1.
    #[test]
    fn matches_mendels_peas() {
        let s = split(&[("a", 9.0), ("b", 3.0), ("c", 3.0), ("d", 1.0)]);
        let r = check(&s, [("a", 315), ("b", 108), ("c", 101), ("d", 32)], 0.001);
        assert_eq!(r.df, 3);
        assert!(close(r.chi_square, 0.4700239808153477, 1e-12));
        assert!(close(r.p_value, 0.925425895103616, 1e-9));
        assert_eq!(r.cells[0].expected, 312.75);
        assert_eq!(r.cells[3].expected_share, 1.0 / 16.0);
        assert_eq!(r.pairwise.len(), 6);
        let ab = &r.pairwise[0];
        assert_eq!((ab.first.as_str(), ab.second.as_str()), ("a", "b"));
        assert!(close(ab.chi_square, 0.06382978723404255, 1e-12));
        assert!(close(ab.p_value, 0.8005421074231261, 1e-9));
        assert!(!r.mismatch && !r.overall_mismatch);
    }

    /// 5,200 / 4,800 on a 50/50 split: χ² = 16, p = 6.334e-5 (scipy), a mismatch at 0.001.
    #[test]
    fn flags_a_skewed_even_split() {
        let s = split(&[("on", 50.0), ("off", 50.0)]);
        let r = check(&s, [("off", 4800), ("on", 5200)], 0.001);
        assert_eq!(r.chi_square, Some(16.0));
        assert!(close(r.p_value, 6.334248366623988e-05, 1e-8));
        assert!(r.overall_mismatch && r.mismatch && r.flags("on", "off"));
        let fine = check(&s, [("off", 4980), ("on", 5020)], 0.001);
        assert!(close(fine.p_value, 0.6891565167793516, 1e-9));
        assert!(!fine.mismatch && !fine.flags("on", "off"));
    }

    /// Three equal arms 1000 / 1000 / 1120: overall χ² = 9.2308, p = 0.009898 (no mismatch at
    /// 0.001, one at 0.01); the pairs with the large arm have χ² = 6.7925, p = 0.009154 (scipy).
    #[test]
    fn pairwise_tests_name_the_odd_pair() {
        let s = split(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]);
        let obs = [("a", 1000), ("b", 1000), ("c", 1120)];
        let r = check(&s, obs, 0.001);
        assert!(close(r.chi_square, 9.230769230769232, 1e-12));
        assert!(close(r.p_value, 0.009898375607203903, 1e-8));
        assert!(!r.mismatch);
        let r = check(&s, obs, 0.0095);
        assert!(!r.overall_mismatch, "0.0099 is above 0.0095");
        assert!(r.mismatch, "the pairs with c are below");
        assert!(r.flags("c", "a") && r.flags("b", "c") && !r.flags("a", "b"));
        assert_eq!(r.pairwise[0].chi_square, Some(0.0));
        assert!(close(r.pairwise[1].p_value, 0.009154404276630099, 1e-8));
    }

    #[test]
    fn zero_weights_and_unknown_treatments_are_unexpected() {
        let s = split(&[("on", 100.0), ("off", 0.0)]);
        let r = check(&s, [("on", 40), ("off", 0)], 0.001);
        assert_eq!((r.df, r.p_value, r.chi_square), (0, None, Some(0.0)));
        assert!(r.unexpected.is_empty() && !r.mismatch);
        let r = check(&s, [("on", 40), ("off", 1), ("control", 2)], 0.001);
        assert_eq!(r.unexpected, vec![("off".into(), 1), ("control".into(), 2)]);
        assert!(r.overall_mismatch && r.flags("on", "off"));
    }

    #[test]
    fn no_keys_is_no_test() {
        let s = split(&[("on", 1.0), ("off", 1.0)]);
        let r = check(&s, [], 0.001);
        assert_eq!((r.chi_square, r.p_value, r.mismatch), (None, None, false));
        assert_eq!(r.pairwise[0].p_value, None);
    }

    #[test]
    fn validation_names_the_problem() {
        for (weights, what) in [
            (vec![("on", -1.0)], "weight -1"),
            (vec![("on", f64::NAN)], "weight NaN"),
            (vec![("on", 0.0)], "no positive weight"),
            (vec![("on", 1.0), ("on", 2.0)], "`on` twice"),
        ] {
            let err = split(&weights).validate("f").expect_err(what).to_string();
            assert!(
                err.contains(what) && err.contains("`default rule`"),
                "{err}"
            );
        }
        assert!(split(&[("on", 1.0), ("off", 0.0)]).validate("f").is_ok());
    }

    #[test]
    fn reads_partitions_of_a_definition() {
        let flag: FeatureFlag = serde_json::from_str(
            r#"{"name":"f","changeNumber":7,"conditions":[
              {"label":"in segment beta","partitions":[{"treatment":"on","size":100}]},
              {"label":"default rule","partitions":[{"treatment":"on","size":30},{"treatment":"off","size":70}]},
              {"partitions":[{"treatment":"on","size":100}]}]}"#,
        )
        .expect("valid flag");
        let splits = ExpectedSplit::from_definition(&flag);
        assert_eq!(splits.len(), 2);
        assert_eq!(splits[1].change_number, Some(7));
        assert_eq!(splits[1].label.as_deref(), Some("default rule"));
        assert_eq!(
            splits[1].weights,
            vec![("on".into(), 30.0), ("off".into(), 70.0)]
        );
    }
}
