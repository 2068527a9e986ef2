//! The text rendering of a report: readable tables.

use std::fmt;

use super::report::{Report, UnitReport};
use super::srm::SampleRatio;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "Attribution report at {} (alpha {}, sample-ratio threshold {}, minimum sample {}, \
             MDE at power {})",
            format_time(self.analysis_time_ms),
            self.alpha,
            self.srm_threshold,
            self.min_sample_size,
            self.power
        )?;
        writeln!(
            f,
            "impressions: {} read, {} before cutoff, {} unknown flag, {} outside ranges",
            s.impressions,
            s.impressions_before_cutoff,
            s.impressions_unknown_flag,
            s.impressions_outside_ranges
        )?;
        writeln!(
            f,
            "events: {} read, {} before cutoff, {} attributed",
            s.events, s.events_before_cutoff, s.events_attributed
        )?;
        if !self.metrics.is_empty() {
            let list: Vec<String> = self
                .metrics
                .iter()
                .map(|m| {
                    format!(
                        "{} = {}({})",
                        m.name(),
                        m.aggregation().as_str(),
                        m.event_type()
                    )
                })
                .collect();
            writeln!(f, "metrics: {}", list.join(", "))?;
        }
        for flag in &self.flags {
            writeln!(
                f,
                "\n== flag {} (traffic type {}, baseline {})",
                flag.flag, flag.traffic_type, flag.baseline
            )?;
            if flag.units.is_empty() {
                writeln!(f, "no impressions")?;
            }
            for unit in &flag.units {
                writeln!(f, "\n-- {}", unit.unit)?;
                write_unit(f, unit, self.alpha)?;
            }
        }
        Ok(())
    }
}

fn write_unit(f: &mut fmt::Formatter<'_>, unit: &UnitReport, alpha: f64) -> fmt::Result {
    if unit.groups.is_empty() {
        return writeln!(f, "no groups");
    }
    let mut groups = Table::new(&[
        ("label", false),
        ("treatment", false),
        ("sample", true),
        ("excluded", true),
        ("metric", false),
        ("n", true),
        ("mean", true),
        ("variance", true),
    ]);
    for g in &unit.groups {
        let head = [
            label_text(&g.label),
            g.treatment.clone(),
            g.sample_size.to_string(),
            g.excluded.to_string(),
        ];
        if g.metrics.is_empty() {
            groups.row(head.clone().into_iter().chain([
                "-".into(),
                "".into(),
                "".into(),
                "".into(),
            ]));
        }
        for (i, m) in g.metrics.iter().enumerate() {
            let lead = if i == 0 {
                head.clone()
            } else {
                Default::default()
            };
            groups.row(lead.into_iter().chain([
                m.metric.clone(),
                m.n.to_string(),
                number(m.mean),
                number(m.variance),
            ]));
        }
    }
    groups.write(f)?;
    for check in &unit.sample_ratios {
        write_sample_ratio(f, check)?;
    }
    if unit.impacts.is_empty() {
        return Ok(());
    }
    writeln!(f)?;
    let level = trim_float((1.0 - alpha) * 100.0);
    let confidence = format!("{level}% CI");
    let relative = format!("relative {level}% CI");
    let mut impacts = Table::new(&[
        ("label", false),
        ("treatment", false),
        ("vs", false),
        ("metric", false),
        ("tier", false),
        ("diff", true),
        (confidence.as_str(), false),
        ("relative", true),
        (relative.as_str(), false),
        ("p", true),
        ("adj. p", true),
        ("adj. CI", false),
        ("significant", false),
        ("MDE", true),
        ("note", false),
    ]);
    let interval = |ci: Option<(f64, f64)>| {
        ci.map_or("-".into(), |(lo, hi)| {
            format!("[{}, {}]", number(Some(lo)), number(Some(hi)))
        })
    };
    let percents = |ci: Option<(f64, f64)>| {
        ci.map_or("-".into(), |(lo, hi)| {
            format!("[{:+.2}%, {:+.2}%]", lo * 100.0, hi * 100.0)
        })
    };
    for i in &unit.impacts {
        let mut notes = Vec::new();
        if i.sample_ratio_mismatch {
            notes.push("sample ratio mismatch".to_owned());
        }
        if !i.conclusive {
            notes.push("not yet conclusive".into());
        }
        if let Some(c) = &i.cuped {
            let ci = c.confidence_interval.map_or("-".into(), |(lo, hi)| {
                format!("[{}, {}]", number(Some(lo)), number(Some(hi)))
            });
            let reduction = c
                .variance_reduction
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
            notes.push(format!(
                "CUPED diff {} {ci}, variance reduced {reduction}",
                number(Some(c.difference))
            ));
        }
        if let (Some(p), Some((lo, hi))) = (i.always_valid_p_value, i.confidence_sequence) {
            notes.push(format!(
                "always-valid p {}, sequence [{}, {}]",
                p_value_text(p),
                number(Some(lo)),
                number(Some(hi))
            ));
        }
        impacts.row([
            label_text(&i.label),
            i.treatment.clone(),
            i.baseline.clone(),
            i.metric.clone(),
            i.tier.as_str().into(),
            number(i.difference),
            interval(i.confidence_interval),
            i.relative_difference
                .map_or("-".into(), |r| format!("{:+.2}%", r * 100.0)),
            percents(i.relative_confidence_interval),
            i.p_value.map_or("-".into(), p_value_text),
            i.adjusted_p_value.map_or("-".into(), p_value_text),
            interval(i.adjusted_confidence_interval),
            (if i.adjusted_significant { "yes" } else { "no" }).into(),
            number(i.minimum_detectable_effect),
            notes.join(", "),
        ]);
    }
    impacts.write(f)
}

fn write_sample_ratio(f: &mut fmt::Formatter<'_>, check: &SampleRatio) -> fmt::Result {
    let cells: Vec<String> = check
        .cells
        .iter()
        .map(|c| {
            format!(
                "{} {} (expected {:.1})",
                c.treatment, c.observed, c.expected
            )
        })
        .chain(
            check
                .unexpected
                .iter()
                .map(|(t, n)| format!("{t} {n} (not in the split)")),
        )
        .collect();
    let test = match (check.chi_square, check.p_value) {
        (Some(x), Some(p)) => format!("chi-square {x:.3}, df {}, p {}", check.df, p_value_text(p)),
        _ => "no test".into(),
    };
    let verdict = if check.mismatch {
        "SAMPLE RATIO MISMATCH"
    } else {
        "ok"
    };
    writeln!(
        f,
        "sample ratio of {}: {}; {test}: {verdict}",
        label_text(&check.label),
        cells.join(", ")
    )?;
    for pair in check.pairwise.iter().filter(|p| p.mismatch) {
        writeln!(
            f,
            "  {} vs {}: chi-square {}, p {}: mismatch",
            pair.first,
            pair.second,
            number(pair.chi_square),
            pair.p_value.map_or("-".into(), p_value_text)
        )?;
    }
    Ok(())
}

pub(super) fn label_text(label: &Option<String>) -> String {
    label.clone().unwrap_or_else(|| "(no label)".into())
}

pub(super) fn number(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 1e6 || v.abs() < 1e-3 => format!("{v:.3e}"),
        Some(v) => format!("{v:.4}"),
    }
}

pub(super) fn p_value_text(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

pub(super) fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A plain text table: columns padded to their widest cell, numbers aligned right.
struct Table {
    headers: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&str, bool)]) -> Self {
        Table {
            headers: headers.iter().map(|&(h, r)| (h.to_owned(), r)).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(c, (h, _))| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .chain([h.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.clone()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (c, ((_, right), width)) in self.headers.iter().zip(&widths).enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                if c > 0 {
                    line.push_str("  ");
                }
                if *right {
                    line.push_str(&format!("{cell:>width$}"));
                } else {
                    line.push_str(&format!("{cell:<width$}"));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS[.mmm]Z` (proleptic Gregorian, UTC).
pub(super) fn format_time(ms: i64) -> String {
    let c = crate::time::Civil::from_epoch_ms(ms);
    let (year, month, day, h, m, s) = (c.year, c.month, c.day, c.hour, c.minute, c.second);
    if c.milli == 0 {
        format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}Z")
    } else {
        format!(
            "{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:03}Z",
            c.milli
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(951_782_400_001), "2000-02-29 00:00:00.001Z");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59.999Z");
        // Extreme values do not panic.
        let _ = format_time(i64::MIN);
        let _ = format_time(i64::MAX);
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(number(None), "-");
        assert_eq!(number(Some(0.0)), "0");
        assert_eq!(number(Some(1.23456)), "1.2346");
        assert_eq!(number(Some(1e-5)), "1.000e-5");
        assert_eq!(number(Some(2.5e7)), "2.500e7");
        assert_eq!(p_value_text(0.00001), "<0.0001");
        assert_eq!(trim_float(95.0), "95");
        assert_eq!(trim_float(99.5), "99.5");
    }
}
