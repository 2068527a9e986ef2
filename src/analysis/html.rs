//! The HTML rendering of a report: one self-contained page (inline CSS and SVG, no script, no
//! network) with, per flag and unit, the sample-ratio checks, the groups and their exclusions,
//! and per impact its numbers and a chart of the difference with its interval and its
//! adjusted interval.
//!
//! Every number cell carries the exact value in `data-value` (Rust's shortest round-trip
//! form) beside the rounded text, so a reader, or a test, can hold the page to the JSON report.

use std::fmt::Write as _;

use super::report::{GroupReport, Impact, Report, UnitReport};
use super::srm::SampleRatio;
use super::text::{format_time, label_text, number, p_value_text, trim_float};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}\
th:first-child,td.text{text-align:left}\
.mismatch{color:#b00020;font-weight:bold}.ok{color:#2e7d32}\
.note{color:#8a6d00}svg{vertical-align:middle}";

const CHART_WIDTH: f64 = 220.0;
const CHART_HEIGHT: f64 = 22.0;

impl Report {
    /// The report as one self-contained HTML page: inline CSS and SVG charts, no script, no
    /// external resource.
    ///
    /// # Examples
    ///
    /// ```
    /// use splitkit::analysis::{
    ///     analyze, AnalysisSpecBuilder, AttributionEvent, AttributionImpression, FlagSpec,
    /// };
    /// let spec = AnalysisSpecBuilder::new(1_000)
    ///     .flag(FlagSpec::new("f", "user", "off"))
    ///     .build()?;
    /// let (imps, events): (Vec<AttributionImpression>, Vec<AttributionEvent>) = (vec![], vec![]);
    /// let page = analyze(&spec, &imps, &events).to_html();
    /// assert!(page.starts_with("<!DOCTYPE html>") && page.contains("flag f"));
    /// # Ok::<(), splitkit::analysis::AnalysisError>(())
    /// ```
    pub fn to_html(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        let _ = write!(
            out,
            "<title>Experiment analysis at {}</title><style>{STYLE}</style></head><body>",
            format_time(self.analysis_time_ms)
        );
        let _ = write!(
            out,
            "<h1>Experiment analysis at {}</h1><p>alpha {}, sample-ratio threshold {}, minimum \
             sample {} keys per treatment, MDE at power {}.</p>",
            format_time(self.analysis_time_ms),
            self.alpha,
            self.srm_threshold,
            self.min_sample_size,
            self.power
        );
        let s = &self.stats;
        let _ = write!(
            out,
            "<p id=\"input\">impressions: {} read, {} before the retention cutoff, {} of unknown \
             flags, {} outside the ranges; events: {} read, {} before the cutoff, {} \
             attributed.</p>",
            s.impressions,
            s.impressions_before_cutoff,
            s.impressions_unknown_flag,
            s.impressions_outside_ranges,
            s.events,
            s.events_before_cutoff,
            s.events_attributed
        );
        for flag in &self.flags {
            let _ = write!(
                out,
                "<section class=\"flag\" data-flag=\"{0}\"><h2>flag {0}</h2><p>traffic type {1}, \
                 baseline {2}</p>",
                escape(&flag.flag),
                escape(&flag.traffic_type),
                escape(&flag.baseline)
            );
            if flag.units.is_empty() {
                out.push_str("<p>No impressions.</p>");
            }
            for (u, unit) in flag.units.iter().enumerate() {
                write_unit(&mut out, u, unit, self.alpha);
            }
            out.push_str("</section>");
        }
        out.push_str("</body></html>\n");
        out
    }
}

fn write_unit(out: &mut String, index: usize, unit: &UnitReport, alpha: f64) {
    let _ = write!(
        out,
        "<section class=\"unit\" data-unit=\"{index}\"><h3>{}</h3>",
        escape(&unit.unit.to_string())
    );
    if unit.sample_ratios.is_empty() {
        out.push_str("<p>No expected split declared: no sample-ratio check.</p>");
    }
    for check in &unit.sample_ratios {
        write_sample_ratio(out, check);
    }
    out.push_str(
        "<table class=\"groups\"><tr><th>label</th><th>treatment</th><th>sample</th>\
         <th>excluded</th></tr>",
    );
    for g in &unit.groups {
        write_group(out, g);
    }
    out.push_str("</table>");
    if !unit.impacts.is_empty() {
        let level = trim_float((1.0 - alpha) * 100.0);
        let _ = write!(
            out,
            "<table class=\"impacts\"><tr><th>label</th><th>treatment</th><th>metric</th>\
             <th>tier</th><th>difference</th><th>{level}% CI</th><th>relative</th>\
             <th>relative {level}% CI</th><th>p</th><th>adj. p</th><th>adj. CI</th>\
             <th>MDE</th><th>always-valid p</th><th>confidence sequence</th>\
             <th>CUPED difference</th><th>CUPED CI</th><th>variance reduction</th><th>verdict</th>\
             <th>difference and intervals</th></tr>"
        );
        for i in &unit.impacts {
            write_impact(out, i);
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn write_sample_ratio(out: &mut String, check: &SampleRatio) {
    let (class, verdict) = if check.mismatch {
        ("mismatch", "sample ratio mismatch")
    } else {
        ("ok", "sample ratio ok")
    };
    let _ = write!(
        out,
        "<p class=\"srm {class}\" data-label=\"{}\">{}: {verdict}",
        escape(check.label.as_deref().unwrap_or("")),
        escape(&label_text(&check.label))
    );
    if let Some(p) = check.p_value {
        let _ = write!(out, " (chi-square, df {}, p ", check.df);
        value(out, "p_value", Some(p), &p_value_text(p));
        out.push(')');
    }
    let cells: Vec<String> = check
        .cells
        .iter()
        .map(|c| {
            format!(
                "{} {} of {:.1} expected",
                escape(&c.treatment),
                c.observed,
                c.expected
            )
        })
        .chain(
            check
                .unexpected
                .iter()
                .map(|(t, n)| format!("{} {n} not in the split", escape(t))),
        )
        .collect();
    let _ = write!(out, "; {}</p>", cells.join(", "));
}

fn write_group(out: &mut String, g: &GroupReport) {
    let _ = write!(
        out,
        "<tr class=\"group\"><td class=\"text\">{}</td><td class=\"text\">{}</td>",
        escape(&label_text(&g.label)),
        escape(&g.treatment)
    );
    let _ = write!(
        out,
        "<td data-field=\"sample_size\" data-value=\"{0}\">{0}</td>\
         <td data-field=\"excluded\" data-value=\"{1}\">{1}</td></tr>",
        g.sample_size, g.excluded
    );
}

fn write_impact(out: &mut String, i: &Impact) {
    let _ = write!(
        out,
        "<tr class=\"impact\" data-label=\"{}\" data-treatment=\"{}\" data-metric=\"{}\">\
         <td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td>\
         <td class=\"text\">{}</td>",
        escape(i.label.as_deref().unwrap_or("")),
        escape(&i.treatment),
        escape(&i.metric),
        escape(&label_text(&i.label)),
        escape(&i.treatment),
        escape(&i.metric),
        i.tier.as_str()
    );
    cell(out, "difference", i.difference, number(i.difference));
    interval(out, "confidence_interval", i.confidence_interval, false);
    let rel = i.relative_difference;
    cell(out, "relative_difference", rel, percent(rel));
    interval(
        out,
        "relative_confidence_interval",
        i.relative_confidence_interval,
        true,
    );
    cell(
        out,
        "p_value",
        i.p_value,
        i.p_value.map_or("-".into(), p_value_text),
    );
    let q = i.adjusted_p_value;
    cell(
        out,
        "adjusted_p_value",
        q,
        q.map_or("-".into(), p_value_text),
    );
    interval(
        out,
        "adjusted_confidence_interval",
        i.adjusted_confidence_interval,
        false,
    );
    let mde = i.minimum_detectable_effect;
    cell(out, "minimum_detectable_effect", mde, number(mde));
    let avp = i.always_valid_p_value;
    cell(
        out,
        "always_valid_p_value",
        avp,
        avp.map_or("-".into(), p_value_text),
    );
    interval(out, "confidence_sequence", i.confidence_sequence, false);
    let c = i.cuped.as_ref();
    let cd = c.map(|c| c.difference);
    cell(out, "cuped.difference", cd, number(cd));
    interval(
        out,
        "cuped.confidence_interval",
        c.and_then(|c| c.confidence_interval),
        false,
    );
    let vr = c.and_then(|c| c.variance_reduction);
    cell(out, "cuped.variance_reduction", vr, percent(vr));
    let mut verdict = vec![if i.adjusted_significant {
        "significant"
    } else {
        "not significant"
    }];
    if !i.conclusive {
        verdict.push("not yet conclusive");
    }
    if i.sample_ratio_mismatch {
        verdict.push("sample ratio mismatch");
    }
    let class = if i.sample_ratio_mismatch {
        "mismatch"
    } else {
        "note"
    };
    let _ = write!(
        out,
        "<td class=\"text {class}\" data-field=\"verdict\">{}</td><td>",
        verdict.join(", ")
    );
    chart(out, i);
    out.push_str("</td></tr>");
}

/// A number cell: the exact value in `data-value`, the rounded text shown.
fn cell(out: &mut String, field: &str, x: Option<f64>, shown: String) {
    let _ = write!(out, "<td>");
    value(out, field, x, &shown);
    out.push_str("</td>");
}

fn value(out: &mut String, field: &str, x: Option<f64>, shown: &str) {
    let exact = x.map_or(String::new(), |v| v.to_string());
    let _ = write!(
        out,
        "<span data-field=\"{field}\" data-value=\"{exact}\">{}</span>",
        escape(shown)
    );
}

fn interval(out: &mut String, field: &str, ci: Option<(f64, f64)>, as_percent: bool) {
    out.push_str("<td>");
    match ci {
        None => value(out, field, None, "-"),
        Some((lo, hi)) => {
            let show = |x| {
                if as_percent {
                    percent(Some(x))
                } else {
                    number(Some(x))
                }
            };
            out.push('[');
            value(out, &format!("{field}.0"), Some(lo), &show(lo));
            out.push_str(", ");
            value(out, &format!("{field}.1"), Some(hi), &show(hi));
            out.push(']');
        }
    }
    out.push_str("</td>");
}

fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |r| format!("{:+.2}%", r * 100.0))
}

/// The difference (dot), its interval (dark bar) and its adjusted interval (light bar) on an
/// axis symmetric around 0 (the vertical line).
fn chart(out: &mut String, i: &Impact) {
    let Some(d) = i.difference.filter(|d| d.is_finite()) else {
        out.push('-');
        return;
    };
    let ends = [i.confidence_interval, i.adjusted_confidence_interval];
    let reach = ends
        .iter()
        .flatten()
        .flat_map(|&(lo, hi)| [lo.abs(), hi.abs()])
        .chain([d.abs()])
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    let scale = if reach > 0.0 { reach * 1.1 } else { 1.0 };
    let x = |v: f64| CHART_WIDTH / 2.0 + v / scale * (CHART_WIDTH / 2.0 - 4.0);
    let color = match (i.adjusted_significant, d > 0.0) {
        (true, true) => "#2e7d32",
        (true, false) => "#b00020",
        _ => "#555",
    };
    let (w, h, mid) = (CHART_WIDTH, CHART_HEIGHT, CHART_HEIGHT / 2.0);
    let _ = write!(
        out,
        "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\"><title>difference {} with interval {} and adjusted interval {}</title>\
         <line x1=\"{c}\" y1=\"0\" x2=\"{c}\" y2=\"{h}\" stroke=\"#999\"/>",
        number(Some(d)),
        ci_text(i.confidence_interval),
        ci_text(i.adjusted_confidence_interval),
        c = x(0.0)
    );
    for (ci, height, opacity) in [
        (i.adjusted_confidence_interval, 10.0, 0.3),
        (i.confidence_interval, 4.0, 0.9),
    ] {
        if let Some((lo, hi)) = ci.filter(|(lo, hi)| lo.is_finite() && hi.is_finite()) {
            let _ = write!(
                out,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{height}\" \
                 fill=\"{color}\" fill-opacity=\"{opacity}\"/>",
                x(lo),
                mid - height / 2.0,
                (x(hi) - x(lo)).max(1.0)
            );
        }
    }
    let _ = write!(
        out,
        "<circle cx=\"{:.2}\" cy=\"{mid}\" r=\"4\" fill=\"{color}\"/></svg>",
        x(d)
    );
}

fn ci_text(ci: Option<(f64, f64)>) -> String {
    ci.map_or("-".into(), |(lo, hi)| {
        format!("[{}, {}]", number(Some(lo)), number(Some(hi)))
    })
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_names() {
        assert_eq!(
            escape(r#"<b a="1">&'"#),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}
