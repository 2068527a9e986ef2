//! Every value type, read from the treatment (and its configuration), and the caller's
//! default when a treatment does not read as the type asked.

use open_feature::{EvaluationErrorCode, EvaluationReason, FlagMetadataValue, StructValue, Value};

use crate::common::{code, constant, features, localhost, user};

fn flags() -> Vec<serde_json::Value> {
    vec![
        constant("bool_on", "on", None),
        constant("bool_true", "True", None),
        constant("bool_off", "OFF", None),
        constant("bool_false", "false", None),
        constant("color", "blue", None),
        constant("count", "42", None),
        constant("negative", " -7 ", None),
        constant("ratio", "0.25", None),
        constant(
            "banner",
            "on",
            Some(
                r#"{"color":"green","size":3,"ratio":0.5,"tags":["a","b"],"nested":{"x":true},"gone":null}"#,
            ),
        ),
        constant("json_treatment", r#"{"theme":"dark"}"#, None),
        constant("list_config", "on", Some("[1,2]")),
        constant("broken_config", "on", Some("{not json")),
        constant("number_treatment", "5", None),
    ]
}

#[tokio::test]
async fn booleans_strings_and_numbers_come_from_the_treatment() {
    let (_dir, builder) = localhost(&flags());
    let (_api, of) = features(builder).await;
    let ctx = user("ann");
    for (flag, expected) in [
        ("bool_on", true),
        ("bool_true", true),
        ("bool_off", false),
        ("bool_false", false),
    ] {
        assert_eq!(
            of.get_bool_value(flag, Some(&ctx), None).await,
            Ok(expected),
            "{flag}"
        );
    }
    assert_eq!(
        of.get_string_value("color", Some(&ctx), None).await,
        Ok("blue".to_string())
    );
    assert_eq!(of.get_int_value("count", Some(&ctx), None).await, Ok(42));
    assert_eq!(of.get_int_value("negative", Some(&ctx), None).await, Ok(-7));
    assert_eq!(
        of.get_float_value("ratio", Some(&ctx), None).await,
        Ok(0.25)
    );
    assert_eq!(
        of.get_float_value("count", Some(&ctx), None).await,
        Ok(42.0)
    );

    let d = of
        .get_bool_details("bool_off", Some(&ctx), None)
        .await
        .expect("details");
    assert_eq!(
        (d.flag_key.as_str(), d.value, d.variant.as_deref()),
        ("bool_off", false, Some("OFF"))
    );
    assert_eq!(d.reason, Some(EvaluationReason::TargetingMatch));
    let m = &d.flag_metadata.values;
    assert_eq!(
        m.get("label"),
        Some(&FlagMetadataValue::String("everyone".into()))
    );
    assert_eq!(m.get("changeNumber"), Some(&FlagMetadataValue::Int(42)));
    assert_eq!(m.get("config"), None);
}

#[tokio::test]
async fn structures_come_from_the_configuration_or_a_json_treatment() {
    let (_dir, builder) = localhost(&flags());
    let (_api, of) = features(builder).await;
    let ctx = user("ann");
    let d = of
        .get_struct_details::<StructValue>("banner", Some(&ctx), None)
        .await
        .expect("a structure");
    let s = &d.value.fields;
    assert_eq!(s["color"], Value::String("green".into()));
    assert_eq!(s["size"], Value::Int(3));
    assert_eq!(s["ratio"], Value::Float(0.5));
    assert_eq!(
        s["tags"],
        Value::Array(vec![Value::String("a".into()), Value::String("b".into())])
    );
    assert_eq!(
        s["nested"],
        Value::Struct(StructValue::default().with_field("x", true))
    );
    assert!(!s.contains_key("gone"), "null fields are left out");
    assert_eq!(d.variant.as_deref(), Some("on"));
    // The configuration also travels as flag metadata, as the official providers send it.
    assert!(matches!(
        d.flag_metadata.values.get("config"),
        Some(FlagMetadataValue::String(c)) if c.contains("\"green\"")
    ));

    let t: StructValue = of
        .get_struct_value("json_treatment", Some(&ctx), None)
        .await
        .expect("the treatment read as JSON");
    assert_eq!(t.fields["theme"], Value::String("dark".into()));
}

#[tokio::test]
async fn a_treatment_that_does_not_read_as_the_type_is_an_error_and_the_default_stands() {
    let (_dir, builder) = localhost(&flags());
    let (_api, of) = features(builder).await;
    let ctx = Some(user("ann"));
    let ctx = ctx.as_ref();

    let b = of.get_bool_value("color", ctx, None).await;
    assert_eq!(code(b.clone()), EvaluationErrorCode::ParseError);
    assert!(b.unwrap_or(true), "the caller's default");
    let i = of.get_int_value("ratio", ctx, None).await;
    assert_eq!(code(i.clone()), EvaluationErrorCode::ParseError);
    assert_eq!(i.unwrap_or(7), 7);
    let f = of.get_float_value("color", ctx, None).await;
    assert_eq!(code(f), EvaluationErrorCode::ParseError);

    let s = |flag| of.get_struct_value::<StructValue>(flag, ctx, None);
    // No configuration, and a treatment that is not JSON; a configuration that is not JSON.
    assert_eq!(code(s("color").await), EvaluationErrorCode::ParseError);
    assert_eq!(
        code(s("broken_config").await),
        EvaluationErrorCode::ParseError
    );
    // JSON, but not an object.
    assert_eq!(
        code(s("list_config").await),
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        code(s("number_treatment").await),
        EvaluationErrorCode::TypeMismatch
    );
    let fallback = s("list_config")
        .await
        .unwrap_or_else(|_| StructValue::default().with_field("default", true));
    assert_eq!(fallback.fields["default"], Value::Bool(true));

    // A string reads any treatment.
    assert_eq!(
        of.get_string_value("count", ctx, None).await,
        Ok("42".to_string())
    );
}
