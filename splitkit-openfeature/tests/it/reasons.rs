//! Every label to its reason, or to its error code, through the SDK's client.

use open_feature::{EvaluationErrorCode, EvaluationReason, FlagMetadataValue};
use serde_json::json;
use splitkit::{Client, Snapshot};
use splitkit_openfeature::SplitProvider;

use crate::common::{
    all_keys, api, code, constant, document, exact, features, flag, keys, localhost, matcher, rule,
    user,
};

/// `(variant, reason, label)` of a string resolution.
async fn outcome(
    of: &open_feature::Client,
    flag: &str,
    key: &str,
) -> (String, Option<EvaluationReason>, String) {
    let d = of
        .get_string_details(flag, Some(&user(key)), None)
        .await
        .unwrap_or_else(|e| panic!("{flag} for {key}: {e:?}"));
    let label = match d.flag_metadata.values.get("label") {
        Some(FlagMetadataValue::String(l)) => l.clone(),
        other => panic!("no label: {other:?}"),
    };
    assert_eq!(d.variant.as_deref(), Some(d.value.as_str()));
    (d.value, d.reason, label)
}

fn s(v: &str) -> String {
    v.to_string()
}

#[tokio::test]
async fn rules_give_targeting_match_and_percentage_splits_give_split() {
    let (_dir, builder) = localhost(&[
        flag(
            "checkout",
            vec![
                rule(vec![keys(&["qa"])], &[("on", 100)], "whitelisted"),
                rule(
                    vec![keys(&["all_on"])],
                    &[("on", 100), ("off", 0)],
                    "all on",
                ),
                rule(vec![all_keys()], &[("on", 50), ("off", 50)], "fifty fifty"),
            ],
            json!({"on": "{\"steps\":1}"}),
        ),
        // Localhost JSON appends a catch-all giving `off` to flags without one.
        flag(
            "appended",
            vec![rule(vec![keys(&["qa"])], &[("on", 100)], "whitelisted")],
            json!({}),
        ),
    ]);
    let (_api, of) = features(builder).await;
    let tm = Some(EvaluationReason::TargetingMatch);
    assert_eq!(
        outcome(&of, "checkout", "qa").await,
        (s("on"), tm.clone(), s("whitelisted"))
    );
    assert_eq!(
        outcome(&of, "checkout", "all_on").await,
        (s("on"), tm.clone(), s("all on"))
    );
    let mut treatments = std::collections::BTreeSet::new();
    for i in 0..40 {
        let (t, reason, label) = outcome(&of, "checkout", &format!("user-{i}")).await;
        assert_eq!(
            (reason, label.as_str()),
            (Some(EvaluationReason::Split), "fifty fifty")
        );
        treatments.insert(t);
    }
    assert_eq!(treatments.len(), 2, "the split gave both treatments");
    assert_eq!(
        outcome(&of, "appended", "anyone").await,
        (s("off"), tm, s("default rule"))
    );

    let d = of
        .get_bool_details("checkout", Some(&user("qa")), None)
        .await
        .expect("details");
    let m = &d.flag_metadata.values;
    assert_eq!(m.get("changeNumber"), Some(&FlagMetadataValue::Int(42)));
    assert_eq!(
        m.get("config"),
        Some(&FlagMetadataValue::String("{\"steps\":1}".into()))
    );
}

#[tokio::test]
async fn the_default_treatment_gives_default_and_a_killed_flag_disabled() {
    let mut killed = constant("killed", "on", None);
    killed["killed"] = json!(true);
    let mut outside = constant("outside", "on", None);
    outside["trafficAllocation"] = json!(0);
    let mut gated = constant("gated", "on", None);
    gated["prerequisites"] = json!([{"n": "killed", "ts": ["on"]}]);
    let builder = exact(&[
        flag(
            "targeted",
            vec![rule(vec![keys(&["qa"])], &[("on", 100)], "whitelisted")],
            json!({}),
        ),
        killed,
        outside,
        gated,
    ]);
    let (_api, of) = features(builder).await;
    let default = Some(EvaluationReason::Default);
    assert_eq!(
        outcome(&of, "targeted", "nobody").await,
        (s("off"), default.clone(), s("no rule matched"))
    );
    assert_eq!(
        outcome(&of, "outside", "k").await,
        (s("off"), default.clone(), s("not in split"))
    );
    assert_eq!(
        outcome(&of, "gated", "k").await,
        (s("off"), default, s("prerequisites not met"))
    );
    assert_eq!(
        outcome(&of, "killed", "k").await,
        (s("off"), Some(EvaluationReason::Disabled), s("killed"))
    );
}

#[tokio::test]
async fn a_fallback_treatment_gives_default() {
    let builder = exact(&[constant("f", "on", None)])
        .fallback_treatment("off")
        .fallback_treatment_for("beta", "on");
    let (_api, of) = features(builder).await;
    assert_eq!(
        outcome(&of, "missing", "k").await,
        (
            s("off"),
            Some(EvaluationReason::Default),
            s("fallback - definition not found")
        )
    );
    assert_eq!(
        of.get_bool_value("beta", Some(&user("k")), None).await,
        Ok(true)
    );
}

#[tokio::test]
async fn missing_flags_not_ready_clients_and_failures_are_errors() {
    let cycle = |name: &str, other: &str| {
        flag(
            name,
            vec![rule(
                vec![matcher(
                    "IN_SPLIT_TREATMENT",
                    None,
                    json!({"dependencyMatcherData": {"split": other, "treatments": ["on"]}}),
                )],
                &[("on", 100)],
                "depends",
            )],
            json!({}),
        )
    };
    let builder = exact(&[
        cycle("a", "b"),
        cycle("b", "a"),
        // Partitions that give no bucket a treatment: `control` with the rule's label.
        flag(
            "empty",
            vec![rule(vec![all_keys()], &[("on", 0)], "nothing")],
            json!({}),
        ),
    ]);
    let client = builder.build().expect("a client");
    let (_api, of) = api(SplitProvider::new(client.clone())).await;
    let k = Some(user("k"));
    let k = k.as_ref();
    assert_eq!(
        code(of.get_bool_value("missing", k, None).await),
        EvaluationErrorCode::FlagNotFound
    );
    assert_eq!(
        code(of.get_bool_value("a", k, None).await),
        EvaluationErrorCode::General("exception".into())
    );
    assert_eq!(
        code(of.get_string_value("empty", k, None).await),
        EvaluationErrorCode::General("control".into())
    );
    assert!(
        of.get_bool_value("missing", k, None).await.unwrap_or(true),
        "the caller's default"
    );
    // Input splitkit refuses: an empty flag name, a key over 250 characters.
    assert_eq!(
        code(of.get_bool_value(" ", k, None).await),
        EvaluationErrorCode::FlagNotFound
    );
    let long = user(&"k".repeat(251));
    assert_eq!(
        code(of.get_bool_value("a", Some(&long), None).await),
        EvaluationErrorCode::InvalidContext
    );
    // A destroyed client is not ready.
    client.destroy(std::time::Duration::from_secs(1));
    assert_eq!(
        code(of.get_bool_value("a", k, None).await),
        EvaluationErrorCode::ProviderNotReady
    );
}

#[tokio::test]
async fn an_unsupported_matcher_is_a_general_error() {
    let doc = document(&[flag(
        "future",
        vec![rule(
            vec![matcher("NOT_YET_INVENTED", None, json!({}))],
            &[("on", 100)],
            "new",
        )],
        json!({}),
    )]);
    let (snapshot, problems) = Snapshot::from_json(&doc, "test").expect("parses");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let client = Client::builder("localhost")
        .snapshot(snapshot)
        .build()
        .expect("a client");
    let (_api, of) = api(SplitProvider::new(client)).await;
    assert_eq!(
        code(of.get_bool_value("future", Some(&user("k")), None).await),
        EvaluationErrorCode::General("targeting rule type unsupported by sdk".into())
    );
}
