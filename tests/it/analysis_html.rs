//! The HTML report in a real headless browser (Debian's `chromium`): the page loads and
//! paints, and every number it shows equals the JSON report's.
//!
//! Skipped with a message when chromium is missing and `CI` is unset; under CI it must run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;
use splitkit::analysis::analyze;

use crate::analysis::{even, experiment, spec};

const BROWSER: &str = "chromium";

/// Runs chromium headless on `page` with `mode` (`--dump-dom` or `--screenshot=...`), with
/// every host name unresolvable so nothing leaves the machine; its stdout.
fn chromium(page: &Path, profile: &Path, mode: &str) -> String {
    let mut child = Command::new(BROWSER)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1600,1200",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("chromium did not finish within 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8(out.stdout).expect("UTF-8 DOM")
}

/// The JSON value at `field` of an impact: `confidence_interval.1` is the upper end,
/// `cuped.difference` a field of the CUPED estimate.
fn json_number(impact: &Value, field: &str) -> Option<f64> {
    let pointer = format!("/{}", field.replace('.', "/"));
    impact.pointer(&pointer).and_then(Value::as_f64)
}

/// Whether the rounded text shown equals the exact value to its displayed precision.
fn shows(text: &str, exact: f64) -> bool {
    if text == "<0.0001" {
        return exact < 1e-4;
    }
    if let Some(p) = text.strip_suffix('%') {
        return p
            .parse::<f64>()
            .is_ok_and(|p| (p / 100.0 - exact).abs() <= 0.51e-4);
    }
    text.parse::<f64>()
        .is_ok_and(|x| (x - exact).abs() <= 5.1e-4 * exact.abs() + 5.1e-5)
}

#[test]
fn the_page_renders_and_shows_the_json_reports_numbers() {
    if !crate::common::installed(BROWSER, "chromium") {
        return;
    }
    let (imps, events) = experiment(5_200, 4_800);
    let report = analyze(&spec(even()), &imps, &events);
    let json = serde_json::to_value(&report).expect("serialize");
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, report.to_html()).expect("write page");

    let dom = chromium(&page, &dir.path().join("profile"), "--dump-dom");
    assert!(dom.contains("<h1>Experiment analysis at"), "{dom}");
    assert!(dom.contains("</html>"));

    let unit = &json["flags"][0]["units"][0];
    let impacts = unit["impacts"].as_array().expect("impacts");
    let row = Regex::new(
        r#"(?s)<tr class="impact" data-label="([^"]*)" data-treatment="([^"]*)" data-metric="([^"]*)">(.*?)</tr>"#,
    )
    .expect("regex");
    let span = Regex::new(r#"<span data-field="([^"]+)" data-value="([^"]*)">([^<]*)</span>"#)
        .expect("regex");
    let rows: Vec<_> = row.captures_iter(&dom).collect();
    assert_eq!(rows.len(), impacts.len());
    let mut compared = 0;
    for (cap, impact) in rows.iter().zip(impacts) {
        assert_eq!(impact["label"].as_str().unwrap_or(""), &cap[1]);
        assert_eq!(impact["treatment"].as_str(), Some(&cap[2]));
        assert_eq!(impact["metric"].as_str(), Some(&cap[3]));
        assert!(
            cap[4].contains("<svg class=\"chart\""),
            "a chart per impact"
        );
        assert!(
            cap[4].contains("sample ratio mismatch"),
            "5,200 / 4,800 on 50/50"
        );
        for s in span.captures_iter(&cap[4]) {
            let (field, exact, text) = (&s[1], &s[2], s[3].replace("&lt;", "<"));
            let want = json_number(impact, field);
            if exact.is_empty() {
                assert_eq!(want, None, "{field} is shown as missing");
                assert_eq!(text, "-");
                continue;
            }
            let shown: f64 = exact.parse().expect("a number");
            assert_eq!(Some(shown), want, "{field}");
            assert!(shows(&text, shown), "{field}: `{text}` for {shown}");
            compared += 1;
        }
    }
    assert!(compared >= impacts.len() * 8, "{compared} numbers compared");

    let groups = unit["groups"].as_array().expect("groups");
    let sample =
        Regex::new(r#"<td data-field="sample_size" data-value="(\d+)">(\d+)</td>"#).expect("regex");
    let shown: Vec<u64> = sample
        .captures_iter(&dom)
        .map(|c| c[1].parse().expect("number"))
        .collect();
    let want: Vec<u64> = groups
        .iter()
        .filter_map(|g| g["sample_size"].as_u64())
        .collect();
    assert_eq!(shown, want);
    assert!(
        dom.contains("class=\"srm mismatch\""),
        "the check is shown as a mismatch"
    );

    // It paints: a screenshot of the page is written.
    let png = dir.path().join("report.png");
    chromium(
        &page,
        &dir.path().join("profile"),
        &format!("--screenshot={}", png.display()),
    );
    let bytes = std::fs::read(&png).expect("screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
}
