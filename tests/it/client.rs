//! The client API: every function, every validation rule with its message, localhost mode.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use splitkit::{Attributes, Client, ClientBuilder, Error, Key, Label};

use crate::common::{logs, vectors};

fn examples(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file)
}

fn example_client() -> Client {
    ClientBuilder::new("localhost")
        .split_file(examples("flags.json"))
        .segment_directory(examples("segments"))
        .build()
        .expect("example client builds")
}

fn one_warning(expected: &str) {
    let w = logs::take();
    assert_eq!(w, vec![expected.to_string()], "warnings");
}

#[test]
fn client_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Client>();
    let c = example_client();
    let c2 = c.clone();
    let h = std::thread::spawn(move || c2.get_treatment("qa_alice", "new_checkout", None));
    assert_eq!(h.join().expect("thread"), "on");
    assert_eq!(c.get_treatment("qa_alice", "new_checkout", None), "on");
}

#[test]
fn every_evaluation_function() {
    let c = example_client();
    c.block_until_ready(Duration::from_secs(1)).expect("ready");
    let pro = Attributes::new().with("plan", "pro");
    assert_eq!(c.get_treatment("erin", "new_checkout", Some(&pro)), "on");
    let wc = c.get_treatment_with_config("qa_bob", "new_checkout", None);
    assert_eq!(wc.treatment, "on");
    assert_eq!(
        wc.config.as_deref(),
        Some("{\"button_color\": \"green\", \"steps\": 1}")
    );

    let d = c.evaluate("carol", "new_checkout", None);
    assert_eq!(d.treatment, "on");
    assert_eq!(
        d.label.as_ref().map(Label::as_str),
        Some("in segment beta_testers")
    );
    assert_eq!(d.change_number, Some(1_700_000_000_000));
    assert!(d.impression);
    let d = c.evaluate("erin", "new_checkout", Some(&pro));
    assert_eq!(
        d.label.as_ref().map(Label::as_str),
        Some("user.plan in list [\"enterprise\",\"pro\"]"),
        "a rule without a label gets a generated one"
    );
    let d = c.evaluate("anyone", "legacy_banner", None);
    assert_eq!(
        (d.treatment.as_str(), d.label),
        ("hidden", Some(Label::Killed))
    );

    let many = c.get_treatments("qa_alice", &["new_checkout", "legacy_banner", "nope"], None);
    let expected: HashMap<String, splitkit::Treatment> = [
        ("new_checkout", "on"),
        ("legacy_banner", "hidden"),
        ("nope", "control"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.into()))
    .collect();
    assert_eq!(many, expected);
    let many = c.get_treatments_with_config("qa_alice", &["new_checkout"], None);
    assert_eq!(many["new_checkout"].treatment, "on");
    assert!(many["new_checkout"].config.is_some());

    let v2 = Attributes::new().with("app_version", "2.3.0");
    let by_set = c.get_treatments_by_flag_set("frank", "search", Some(&v2));
    assert_eq!(by_set.len(), 1);
    assert!(["ml", "classic"].contains(&by_set["search_ranking"].as_str()));
    let by_sets = c.get_treatments_by_flag_sets("qa_alice", &["search", "checkout"], None);
    assert_eq!(by_sets.len(), 2);
    assert_eq!(by_sets["new_checkout"], "on");
    let wc = c.get_treatments_with_config_by_flag_set("qa_alice", "checkout", None);
    assert_eq!(wc["new_checkout"].treatment, "on");
    let wc = c.get_treatments_with_config_by_flag_sets("qa_alice", &["checkout", "unknown"], None);
    assert_eq!(wc.len(), 1);
}

#[test]
fn matching_and_bucketing_keys() {
    let c = example_client();
    // The whitelist looks at the matching key, whatever the bucketing key.
    assert_eq!(
        c.get_treatment(Key::new("qa_alice", "zzz"), "new_checkout", None),
        "on"
    );
    // The 50/50 rollout hashes the bucketing key: same bucketing key, same treatment.
    let by_account: Vec<splitkit::Treatment> = (0..20)
        .map(|i| {
            c.get_treatment(
                Key::new(&format!("user{i}"), "account-7"),
                "new_checkout",
                None,
            )
        })
        .collect();
    assert!(
        by_account.windows(2).all(|w| w[0] == w[1]),
        "{by_account:?}"
    );
    let by_user: Vec<splitkit::Treatment> = (0..40)
        .map(|i| c.get_treatment(format!("user{i}").as_str(), "new_checkout", None))
        .collect();
    assert!(by_user.contains(&"on".into()) && by_user.contains(&"off".into()));
}

#[test]
fn validation_rules_and_messages() {
    let c = example_client();
    logs::start();

    let d = c.evaluate("", "new_checkout", None);
    assert_eq!(
        (d.treatment.as_str(), d.label.clone(), d.impression),
        ("control", None, false)
    );
    one_warning("evaluate: you passed an empty key, key must be a non-empty string");

    let long = "k".repeat(251);
    assert_eq!(
        c.get_treatment(long.as_str(), "new_checkout", None),
        "control"
    );
    one_warning("get_treatment: key too long - must be 250 characters or less");
    assert_eq!(
        c.get_treatment("k".repeat(250).as_str(), "legacy_banner", None),
        "hidden"
    );
    // 250 characters of two bytes each: past 250 bytes, still a valid key.
    assert_eq!(
        c.get_treatment("é".repeat(250).as_str(), "legacy_banner", None),
        "hidden"
    );
    assert_eq!(
        c.get_treatment(Key::new("ann", &"é".repeat(250)), "legacy_banner", None),
        "hidden"
    );
    assert!(logs::take().is_empty());

    assert_eq!(
        c.get_treatment(Key::new("", "b"), "new_checkout", None),
        "control"
    );
    one_warning(
        "get_treatment: you passed an empty matching_key, matching_key must be a non-empty string",
    );
    assert_eq!(
        c.get_treatment(Key::new("a", ""), "new_checkout", None),
        "control"
    );
    one_warning(
        "get_treatment: you passed an empty bucketing_key, bucketing_key must be a non-empty string",
    );
    assert_eq!(
        c.get_treatment(Key::new("a", &long), "new_checkout", None),
        "control"
    );
    one_warning("get_treatment: bucketing_key too long - must be 250 characters or less");

    assert_eq!(c.get_treatment("a", "", None), "control");
    one_warning(
        "get_treatment: you passed an empty flag name, flag name must be a non-empty string",
    );
    assert_eq!(c.get_treatment("a", "   ", None), "control");
    one_warning(
        "get_treatment: you passed an empty flag name, flag name must be a non-empty string",
    );
    let d = c.evaluate("qa_alice", " new_checkout ", None);
    assert_eq!((d.treatment.as_str(), d.impression), ("on", true));
    one_warning("evaluate: flag name ' new_checkout ' has extra whitespace, trimming");

    let d = c.evaluate("a", "missing_flag", None);
    assert_eq!(d.label, Some(Label::DefinitionNotFound));
    assert!(!d.impression, "no impression for a missing flag");
    one_warning(
        "evaluate: you passed missing_flag that does not exist in this environment, please double check what feature flags exist in the Split user interface.",
    );

    let empty: [&str; 0] = [];
    assert!(c.get_treatments("a", &empty, None).is_empty());
    one_warning("get_treatments: flag names must be a non-empty array");
    let t = c.get_treatments("qa_alice", &["new_checkout", " new_checkout", ""], None);
    assert_eq!(t.len(), 1, "invalid names dropped, duplicates removed");
    assert_eq!(logs::take().len(), 2);
    let t = c.get_treatments("", &["new_checkout", "legacy_banner"], None);
    assert!(t.values().all(|v| v == "control") && t.len() == 2);
    one_warning("get_treatments: you passed an empty key, key must be a non-empty string");

    let t = c.get_treatments_by_flag_set("qa_alice", "Checkout ", None);
    assert_eq!(t["new_checkout"], "on");
    assert_eq!(
        logs::take().len(),
        2,
        "trimmed and lower-cased with warnings"
    );
    assert!(
        c.get_treatments_by_flag_set("qa_alice", "bad set!", None)
            .is_empty()
    );
    let w = logs::take();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("bad set!") && w[0].contains("^[a-z0-9][_a-z0-9]{0,49}$"),
        "{w:?}"
    );
}

#[test]
fn destroyed_client_answers_control() {
    let c = example_client();
    let c2 = c.clone();
    assert!(c.destroy(Duration::from_secs(1)));
    assert!(c.destroy(Duration::from_secs(1)), "idempotent");
    assert!(c2.is_destroyed());
    logs::start();
    let d = c2.evaluate("qa_alice", "new_checkout", None);
    assert_eq!(
        (d.treatment.as_str(), d.label.clone(), d.impression),
        ("control", None, false)
    );
    one_warning("evaluate: client has already been destroyed - no calls possible");
    assert!(matches!(
        c.block_until_ready(Duration::from_millis(1)),
        Err(Error::Destroyed)
    ));
}

#[test]
fn manager_views() {
    let c = example_client();
    let m = c.manager();
    assert_eq!(
        m.flag_names(),
        vec!["legacy_banner", "new_checkout", "search_ranking"]
    );
    let f = m.flag("new_checkout").expect("view");
    assert_eq!(f.traffic_type, "user");
    assert!(!f.killed);
    assert_eq!(f.treatments, vec!["on", "off"]);
    assert_eq!(f.default_treatment, "off");
    assert_eq!(f.change_number, 1_700_000_000_000);
    assert_eq!(f.sets, vec!["checkout"]);
    assert!(f.configs["on"].contains("green"));
    assert!(m.flag("legacy_banner").expect("view").killed);
    assert!(m.flag("nope").is_none());
    assert_eq!(m.flags().len(), 3);
}

#[test]
fn options_are_validated() {
    let e = ClientBuilder::new("").build().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                option: "sdk_key",
                ..
            }
        ),
        "{e}"
    );
    let e = ClientBuilder::new("some-server-key")
        .sdk_url("not a url")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                option: "sdk_url",
                ..
            }
        ),
        "{e}"
    );
    let e = ClientBuilder::new("some-server-key")
        .sdk_url("http://127.0.0.1:9/api")
        .events_url("http://127.0.0.1:9/api")
        .features_refresh_rate(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("features_refresh_rate"), "{e}");
    let e = ClientBuilder::new("localhost")
        .split_file(examples("flags.json"))
        .localhost_refresh_rate(Duration::from_millis(1))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("localhost_refresh_rate"), "{e}");
    let e = ClientBuilder::new("localhost")
        .split_file(examples("flags.json"))
        .flag_sets_filter(&["Not Valid!"])
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("flag_sets_filter"), "{e}");
    let c = ClientBuilder::new("localhost")
        .split_file(examples("flags.json"))
        .build()
        .expect("ok");
    assert_eq!(
        c.config().shutdown_timeout(),
        splitkit::defaults::SHUTDOWN_TIMEOUT
    );
    assert_eq!(c.config().localhost_refresh_rate(), None);
    assert!(c.config().is_localhost());
}

#[test]
fn flag_sets_filter_restricts_flags() {
    let c = ClientBuilder::new("localhost")
        .split_file(examples("flags.json"))
        .flag_sets_filter(&["search"])
        .build()
        .expect("builds");
    assert_eq!(c.manager().flag_names(), vec!["search_ranking"]);
    logs::start();
    assert!(
        c.get_treatments_by_flag_set("qa_alice", "checkout", None)
            .is_empty()
    );
    let w = logs::take();
    assert!(
        w.iter()
            .any(|m| m.contains("not part of the configured FlagSetsFilter")),
        "{w:?}"
    );
}

#[test]
fn localhost_legacy_split_file() {
    let c = ClientBuilder::new("localhost")
        .split_file(vectors("localhost/python-client/file1.split"))
        .build()
        .expect("builds");
    assert_eq!(c.get_treatment("anyone", "split1", None), "on");
    assert_eq!(c.get_treatment("anyone", "split2", None), "off");
    assert_eq!(c.get_treatment("anyone", "split3", None), "control");
}

#[test]
fn localhost_yaml_file() {
    // Expectations of the Go SDK's test of the same file.
    let c = ClientBuilder::new("localhost")
        .split_file(vectors("localhost/python-client/file2.yaml"))
        .build()
        .expect("builds");
    assert_eq!(c.manager().flag_names().len(), 4);
    assert_eq!(c.get_treatment("only_key", "my_feature", None), "off");
    assert_eq!(
        c.get_treatment("invalid_key", "my_feature", None),
        "control"
    );
    assert_eq!(c.get_treatment("key", "my_feature", None), "on");
    assert_eq!(c.get_treatment("key2", "other_feature", None), "on");
    assert_eq!(c.get_treatment("test", "other_feature_2", None), "on");
    assert_eq!(c.get_treatment("key", "other_feature_3", None), "off");
    assert_eq!(
        c.get_treatment("key_whitelist", "other_feature_3", None),
        "on"
    );
    let wc = c.get_treatment_with_config("only_key", "my_feature", None);
    assert_eq!(
        wc.config.as_deref(),
        Some(
            "{\"desc\" : \"this applies only to OFF and only for only_key. The rest will receive ON\"}"
        )
    );
    let wc = c.get_treatment_with_config("key", "my_feature", None);
    assert_eq!(
        wc.config.as_deref(),
        Some("{\"desc\" : \"this applies only to ON treatment\"}")
    );
    assert_eq!(
        c.get_treatment_with_config("key3", "other_feature", None)
            .config,
        None
    );
    let t = c.get_treatments("only_key", &["my_feature", "other_feature"], None);
    assert_eq!(
        (t["my_feature"].as_str(), t["other_feature"].as_str()),
        ("off", "control")
    );
}

#[test]
fn localhost_json_files() {
    let c = ClientBuilder::new("localhost")
        .split_file(vectors("fixtures/go-client/splits.json"))
        .segment_directory(vectors("fixtures/go-client"))
        .build();
    // The Go fixture directory holds splits.json too, which is not a segment file.
    assert!(matches!(c, Err(Error::Parse { .. })), "{c:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    for seg in ["segment_1.json", "segment_2.json"] {
        std::fs::copy(
            vectors(&format!("fixtures/go-client/{seg}")),
            dir.path().join(seg),
        )
        .expect("copy");
    }
    let c = ClientBuilder::new("localhost")
        .split_file(vectors("fixtures/go-client/splits.json"))
        .segment_directory(dir.path())
        .build()
        .expect("builds");
    assert_eq!(
        c.get_treatment("key", "non_existent_feature", None),
        "control"
    );
    assert_eq!(c.get_treatment("key", "feature_flag_1", None), "on");
    assert_eq!(
        c.get_treatment("example1", "feature_flag_2", None),
        "some_treatment"
    );
    assert_eq!(c.get_treatment("key", "feature_flag_2", None), "on");
    assert_eq!(c.get_treatment("key", "feature_flag_3", None), "off");
    assert_eq!(c.get_treatment("key", "feature_flag_4", None), "control");
    let wc = c.get_treatment_with_config("key", "feature_flag_2", None);
    assert_eq!(wc.config.as_deref(), Some("{\"color\":\"red\"}"));
    let wc = c.get_treatment_with_config("example1", "feature_flag_2", None);
    assert_eq!(wc.config.as_deref(), Some("{\"color\":\"white\"}"));

    // The legacy form of a splitChanges document.
    let c = ClientBuilder::new("localhost")
        .split_file(vectors("fixtures/python-client/split_old_spec.json"))
        .build()
        .expect("builds");
    assert_eq!(
        c.get_treatment("whitelisted_user", "whitelist_feature", None),
        "on"
    );
}

/// Replaces the file at `path` with `text` at once (written beside it, then renamed): the
/// reload thread sees the old content or the new, never the file emptied half-way, which a
/// writer stalled for more than the quiet time (a loaded CI machine) would otherwise leave.
/// `a_file_being_written_is_not_loaded_until_it_settles` tests that case on purpose.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn missing_and_malformed_files_fail_build_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    let e = ClientBuilder::new("localhost")
        .split_file(&missing)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert!(e.to_string().contains("nope.yaml"), "{e}");

    let bad = dir.path().join("flags.split");
    write(&bad, "# comment\nfeature on\nfeature\n");
    let e = ClientBuilder::new("localhost")
        .split_file(&bad)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("flags.split at line 3"), "{e}");

    let bad = dir.path().join("flags.json");
    write(
        &bad,
        "{\"ff\": {\"d\": [\n  {\"name\": \"x\"},\n  oops\n]}}",
    );
    let e = ClientBuilder::new("localhost")
        .split_file(&bad)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("flags.json at line 3"), "{e}");

    let bad = dir.path().join("flags.yaml");
    write(&bad, "- f:\n    treatment: [on\n");
    let e = ClientBuilder::new("localhost")
        .split_file(&bad)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("flags.yaml at line"), "{e}");

    let seg_dir = dir.path().join("segs");
    std::fs::create_dir(&seg_dir).expect("mkdir");
    write(
        &seg_dir.join("beta.json"),
        "{\"name\": \"beta\", \"added\": 5}",
    );
    let e = ClientBuilder::new("localhost")
        .split_file(examples("flags.yaml"))
        .segment_directory(&seg_dir)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("beta.json"), "{e}");
}

/// A UTF-8 byte-order mark at the start of a localhost file (as Notepad writes) is not part
/// of the text: it used to rename the first flag of a `.split` file and make a JSON file
/// invalid.
#[test]
fn a_byte_order_mark_is_ignored_in_localhost_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bom = "\u{feff}";
    let segments = dir.path().join("segments");
    std::fs::create_dir(&segments).expect("mkdir");
    write(
        &segments.join("beta.json"),
        &format!(r#"{bom}{{"added": ["ann"], "removed": [], "since": -1, "till": 1}}"#),
    );
    let json = format!(
        r#"{bom}{{"ff": {{"d": [{{"name": "first", "defaultTreatment": "off", "conditions": [
            {{"conditionType": "ROLLOUT", "matcherGroup": {{"combiner": "AND", "matchers": [
              {{"matcherType": "IN_SEGMENT", "userDefinedSegmentMatcherData": {{"segmentName": "beta"}}}}]}},
             "partitions": [{{"treatment": "on", "size": 100}}], "label": "in beta"}}]}}],
           "s": -1, "t": 1}}}}"#
    );
    let files = [
        ("flags.split", format!("{bom}first on\nsecond off\n"), "on"),
        (
            "flags.yaml",
            format!("{bom}- first:\n    treatment: \"on\"\n    keys: [\"ann\"]\n"),
            "on",
        ),
        ("flags.json", json, "on"),
    ];
    for (name, text, treatment) in files {
        let file = dir.path().join(name);
        write(&file, &text);
        let c = ClientBuilder::new("localhost")
            .split_file(&file)
            .segment_directory(&segments)
            .build()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.manager().flag_names()[0], "first", "{name}");
        assert_eq!(c.get_treatment("ann", "first", None), treatment, "{name}");
    }
}

#[test]
fn a_broken_flag_is_skipped_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.json");
    write(
        &file,
        r#"{"splits":[{"name":"good","conditions":[{"conditionType":"ROLLOUT","matcherGroup":{"matchers":[{"matcherType":"ALL_KEYS"}]},"partitions":[{"treatment":"yes","size":100}]}]},
                     {"name":"broken","seed":"not a number"}],"since":-1,"till":3}"#,
    );
    logs::start();
    let c = ClientBuilder::new("localhost")
        .split_file(&file)
        .build()
        .expect("builds");
    let w = logs::take();
    assert!(
        w.iter()
            .any(|m| m.contains("flag 'broken'") && m.contains("not a number")),
        "{w:?}"
    );
    assert_eq!(c.get_treatment("k", "good", None), "yes");
    assert_eq!(c.get_treatment("k", "broken", None), "control");
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A localhost client on a flags file holding `text`, in a directory of its own (kept
/// while the first value lives), reloading it every `period`.
fn reloading_on(text: &str, period: Duration) -> (tempfile::TempDir, PathBuf, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.split");
    write(&file, text);
    let c = ClientBuilder::new("localhost")
        .split_file(&file)
        .localhost_refresh_rate(period)
        .build()
        .expect("builds");
    (dir, file, c)
}

#[test]
fn reload_on_change_keeps_last_good_definitions() {
    let (_dir, file, c) = reloading_on("checkout on\n", Duration::from_millis(20));
    assert_eq!(c.get_treatment("k", "checkout", None), "on");
    write(&file, "checkout off\nsearch v2\n");
    assert!(
        wait_for(|| c.get_treatment("k", "checkout", None) == "off"),
        "reloaded"
    );
    assert_eq!(c.get_treatment("k", "search", None), "v2");

    logs::start();
    write(&file, "checkout\n");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        c.get_treatment("k", "checkout", None),
        "off",
        "bad edit keeps last good"
    );
    write(&file, "checkout on\n");
    assert!(
        wait_for(|| c.get_treatment("k", "checkout", None) == "on"),
        "recovers"
    );
    assert!(c.destroy(Duration::from_secs(2)), "reload thread joined");
}

#[test]
fn a_file_being_written_is_not_loaded_until_it_settles() {
    let (_dir, file, c) = reloading_on("checkout on\n", Duration::from_millis(10));
    // A writer that truncated the file and has not filled it yet: empty, and modified
    // again and again. An empty file is valid (no flags), so loading it would answer control.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        write(&file, "");
        assert_eq!(
            c.get_treatment("k", "checkout", None),
            "on",
            "a file being written is not loaded"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    write(&file, "checkout off\n");
    assert!(
        wait_for(|| c.get_treatment("k", "checkout", None) == "off"),
        "loaded once settled"
    );
    assert!(c.destroy(Duration::from_secs(2)), "reload thread joined");
}

#[test]
fn dropping_the_last_handle_stops_the_reload_thread() {
    let (_dir, _file, c) = reloading_on("checkout on\n", Duration::from_millis(10));
    let started = Instant::now();
    drop(c);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_localhost_reload_is_announced_to_update_subscribers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.yaml");
    std::fs::write(&path, "- checkout:\n    treatment: \"off\"\n").expect("write");
    let client = ClientBuilder::new("localhost")
        .split_file(&path)
        .localhost_refresh_rate(Duration::from_millis(20))
        .build()
        .expect("client");
    let updates = client.updates();
    assert_eq!(
        updates.recv_timeout(Duration::from_secs(5)),
        Ok(splitkit::Update::Ready)
    );
    std::fs::write(
        &path,
        "- checkout:\n    treatment: \"on\"\n- banner:\n    treatment: \"blue\"\n",
    )
    .expect("rewrite");
    let update = updates
        .recv_timeout(Duration::from_secs(5))
        .expect("announced");
    let splitkit::Update::Definitions(u) = update else {
        panic!("{update:?}")
    };
    let names: Vec<&str> = u.flags.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["banner", "checkout"]);
    assert!(u.flags.iter().all(|f| !f.killed && !f.removed()));
    assert_eq!(client.get_treatment("k", "checkout", None), "on");
    // Nothing else is pending: one reload, one update.
    assert!(updates.recv_timeout(Duration::from_millis(200)).is_err());
    client.destroy(Duration::from_secs(5));
}
