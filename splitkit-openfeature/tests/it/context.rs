//! The evaluation context as splitkit reads it: each attribute type reaching its matcher, the
//! bucketing key, the reserved fields, contexts merged by the SDK, a missing targeting key.

use open_feature::{EvaluationContext, EvaluationContextFieldValue, EvaluationErrorCode, Value};
use serde_json::json;
use splitkit::{AttributeValue, Key};

use crate::common::{all_keys, code, exact, features, flag, matcher, rule, user};

/// One rule per attribute type, each naming the type as its treatment; `none` otherwise.
fn typed() -> serde_json::Value {
    let on = |t: &'static str| [(t, 100)];
    flag(
        "typed",
        vec![
            rule(
                vec![matcher(
                    "WHITELIST",
                    Some("plan"),
                    json!({"whitelistMatcherData": {"whitelist": ["pro"]}}),
                )],
                &on("string"),
                "string",
            ),
            rule(
                vec![matcher(
                    "GREATER_THAN_OR_EQUAL_TO",
                    Some("age"),
                    json!({"unaryNumericMatcherData": {"dataType": "NUMBER", "value": 18}}),
                )],
                &on("integer"),
                "integer",
            ),
            rule(
                vec![matcher(
                    "BETWEEN",
                    Some("score"),
                    json!({"betweenMatcherData": {"dataType": "NUMBER", "start": 0.25, "end": 0.75}}),
                )],
                &on("float"),
                "float",
            ),
            rule(
                vec![matcher(
                    "EQUAL_TO_BOOLEAN",
                    Some("beta"),
                    json!({"booleanMatcherData": true}),
                )],
                &on("boolean"),
                "boolean",
            ),
            rule(
                vec![matcher(
                    "CONTAINS_ANY_OF_SET",
                    Some("tags"),
                    json!({"whitelistMatcherData": {"whitelist": ["eu"]}}),
                )],
                &on("list"),
                "list",
            ),
            rule(
                vec![matcher(
                    "GREATER_THAN_OR_EQUAL_TO",
                    Some("signup"),
                    json!({"unaryNumericMatcherData": {"dataType": "DATETIME", "value": 1_700_000_000_000i64}}),
                )],
                &on("datetime"),
                "datetime",
            ),
            rule(
                vec![matcher(
                    "WHITELIST",
                    Some("trafficType"),
                    json!({"whitelistMatcherData": {"whitelist": ["account"]}}),
                )],
                &on("reserved"),
                "reserved traffic type",
            ),
            rule(
                vec![matcher(
                    "WHITELIST",
                    Some("bucketingKey"),
                    json!({"whitelistMatcherData": {"whitelist": ["b"]}}),
                )],
                &on("reserved"),
                "reserved bucketing key",
            ),
            rule(vec![all_keys()], &on("none"), "none"),
        ],
        json!({}),
    )
}

fn at(unix_seconds: i64) -> EvaluationContextFieldValue {
    EvaluationContextFieldValue::DateTime(
        time::OffsetDateTime::from_unix_timestamp(unix_seconds).expect("a date"),
    )
}

#[tokio::test]
async fn each_attribute_type_reaches_its_matcher() {
    let (_api, of) = features(exact(&[typed()])).await;
    let cases: Vec<(&str, EvaluationContextFieldValue, &str)> = vec![
        ("plan", "pro".into(), "string"),
        ("plan", "free".into(), "none"),
        ("age", 30.into(), "integer"),
        ("age", 12.into(), "none"),
        ("score", 0.5.into(), "float"),
        ("score", 0.9.into(), "none"),
        ("beta", true.into(), "boolean"),
        ("beta", false.into(), "none"),
        (
            "tags",
            EvaluationContextFieldValue::new_struct(vec!["us".to_string(), "eu".to_string()]),
            "list",
        ),
        (
            "tags",
            EvaluationContextFieldValue::new_struct(vec!["eu"]),
            "list",
        ),
        (
            "tags",
            EvaluationContextFieldValue::new_struct(vec!["us"]),
            "none",
        ),
        (
            "tags",
            EvaluationContextFieldValue::new_struct(AttributeValue::from(vec!["eu"])),
            "list",
        ),
        (
            "tags",
            EvaluationContextFieldValue::new_struct(Value::Array(vec![Value::String("eu".into())])),
            "list",
        ),
        // A structure splitkit cannot read is left out.
        ("tags", EvaluationContextFieldValue::new_struct(7u8), "none"),
        // 2024-01-01 and 2020-01-01 against 2023-11-14.
        ("signup", at(1_704_067_200), "datetime"),
        ("signup", at(1_577_836_800), "none"),
        // The reserved fields are not attributes.
        ("trafficType", "account".into(), "none"),
        ("bucketingKey", "b".into(), "none"),
    ];
    for (name, value, expected) in cases {
        let ctx = user("k").with_custom_field(name, value.clone());
        assert_eq!(
            of.get_string_value("typed", Some(&ctx), None).await,
            Ok(expected.to_string()),
            "{name} = {value:?}"
        );
    }
}

#[tokio::test]
async fn the_bucketing_key_field_is_the_bucketing_key() {
    let builder = exact(&[flag(
        "rollout",
        vec![rule(vec![all_keys()], &[("on", 50), ("off", 50)], "half")],
        json!({}),
    )]);
    let client = builder.build().expect("a client");
    let (_api, of) =
        crate::common::api(splitkit_openfeature::SplitProvider::new(client.clone())).await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..32 {
        let bucketing = format!("account-{i}");
        let ctx = user("same-user").with_custom_field("bucketingKey", bucketing.as_str());
        let got = of
            .get_string_value("rollout", Some(&ctx), None)
            .await
            .expect("a treatment");
        let direct = client.get_treatment(Key::new("same-user", &bucketing), "rollout", None);
        assert_eq!(got, direct, "{bucketing}");
        seen.insert(got);
    }
    assert_eq!(
        seen.len(),
        2,
        "the bucketing key, not the matching key, was hashed"
    );
    let bad = user("k").with_custom_field("bucketingKey", 5);
    assert_eq!(
        code(of.get_string_value("rollout", Some(&bad), None).await),
        EvaluationErrorCode::InvalidContext
    );
}

#[tokio::test]
async fn without_a_targeting_key_a_resolution_is_an_error() {
    let (mut api, of) = features(exact(&[typed()])).await;
    let anonymous = EvaluationContext::default().with_custom_field("plan", "pro");
    assert_eq!(
        code(of.get_string_value("typed", Some(&anonymous), None).await),
        EvaluationErrorCode::TargetingKeyMissing
    );
    assert_eq!(
        code(of.get_bool_value("typed", None, None).await),
        EvaluationErrorCode::TargetingKeyMissing
    );
    assert_eq!(
        code(of.get_string_value("typed", Some(&user("")), None).await),
        EvaluationErrorCode::TargetingKeyMissing
    );
    assert!(of.get_bool_value("typed", None, None).await.unwrap_or(true));

    // The SDK merges the global context in: its targeting key and attributes count.
    api.set_evaluation_context(user("global").with_custom_field("age", 40))
        .await;
    assert_eq!(
        of.get_string_value("typed", Some(&anonymous), None).await,
        Ok("string".to_string())
    );
    assert_eq!(
        of.get_string_value("typed", None, None).await,
        Ok("integer".to_string())
    );
}
