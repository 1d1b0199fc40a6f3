use std::collections::BTreeMap;

use plexus_core::Header;

use super::*;
use crate::data::Value;

fn chain(pairs: &[(&str, &str)]) -> Vec<TransformStage> {
    let config: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    match build_transforms(&config) {
        Ok(stages) => stages,
        Err((key, reason)) => panic!("{key}: {reason}"),
    }
}

fn error(pairs: &[(&str, &str)]) -> (String, String) {
    let config: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    match build_transforms(&config) {
        Ok(_) => panic!("accepted {pairs:?}"),
        Err(e) => e,
    }
}

fn row() -> ConnectRecord {
    let value = Value::Struct(vec![
        ("id".into(), Value::Int64(7)),
        ("name".into(), Value::string("ada")),
        ("card".into(), Value::string("4111")),
        ("amount".into(), Value::string("12")),
        ("address".into(), Value::Struct(vec![("city".into(), Value::string("Paris"))])),
    ]);
    ConnectRecord::new("orders", value).with_timestamp(1_000)
}

fn run(stages: &[TransformStage], mut record: ConnectRecord) -> Option<ConnectRecord> {
    for s in stages {
        record = s.apply(record).expect("apply")?;
    }
    Some(record)
}

#[test]
fn field_transforms_change_the_value_as_kafka_does() {
    let stages = chain(&[
        ("transforms", "insert,mask,replace,cast,flatten,key"),
        ("transforms.insert.type", "org.apache.kafka.connect.transforms.InsertField$Value"),
        ("transforms.insert.topic.field", "topic"),
        ("transforms.insert.static.field", "source"),
        ("transforms.insert.static.value", "shop"),
        ("transforms.mask.type", "MaskField$Value"),
        ("transforms.mask.fields", "card"),
        ("transforms.replace.type", "ReplaceField$Value"),
        ("transforms.replace.exclude", "name"),
        ("transforms.replace.renames", "id:order_id"),
        ("transforms.cast.type", "Cast$Value"),
        ("transforms.cast.spec", "amount:int32"),
        ("transforms.flatten.type", "Flatten$Value"),
        ("transforms.flatten.delimiter", "_"),
        ("transforms.key.type", "ValueToKey"),
        ("transforms.key.fields", "order_id"),
    ]);
    let out = run(&stages, row()).expect("kept");
    assert_eq!(
        out.value,
        Value::Struct(vec![
            ("order_id".into(), Value::Int64(7)),
            ("card".into(), Value::string("")),
            ("amount".into(), Value::Int32(12)),
            ("address_city".into(), Value::string("Paris")),
            ("topic".into(), Value::string("orders")),
            ("source".into(), Value::string("shop")),
        ])
    );
    assert_eq!(out.key, Value::Struct(vec![("order_id".into(), Value::Int64(7))]));
}

#[test]
fn extract_hoist_and_route() {
    let stages = chain(&[
        ("transforms", "extract,hoist,route"),
        ("transforms.extract.type", "ExtractField$Value"),
        ("transforms.extract.field", "name"),
        ("transforms.hoist.type", "HoistField$Value"),
        ("transforms.hoist.field", "who"),
        ("transforms.route.type", "org.apache.kafka.connect.transforms.RegexRouter"),
        ("transforms.route.regex", "(.*)s"),
        ("transforms.route.replacement", "$1-v2"),
    ]);
    let out = run(&stages, row()).expect("kept");
    assert_eq!(out.value, Value::Struct(vec![("who".into(), Value::string("ada"))]));
    assert_eq!(out.topic, "order-v2");
}

#[test]
fn filter_with_predicates_and_negate() {
    let stages = chain(&[
        ("transforms", "drop-tombstones,only-orders"),
        ("transforms.drop-tombstones.type", "Filter"),
        ("transforms.drop-tombstones.predicate", "tombstone"),
        ("transforms.only-orders.type", "org.apache.kafka.connect.transforms.Filter"),
        ("transforms.only-orders.predicate", "orders"),
        ("transforms.only-orders.negate", "true"),
        ("predicates", "tombstone,orders,traced"),
        ("predicates.tombstone.type", "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone"),
        ("predicates.orders.type", "TopicNameMatches"),
        ("predicates.orders.pattern", "orders.*"),
        ("predicates.traced.type", "HasHeaderKey"),
        ("predicates.traced.name", "trace"),
    ]);
    assert!(run(&stages, ConnectRecord::new("orders", Value::Null)).is_none(), "a tombstone is dropped");
    assert!(run(&stages, ConnectRecord::new("payments", Value::Int64(1))).is_none(), "another topic is dropped");
    assert!(run(&stages, row()).is_some(), "an order is kept");
    let mut traced = row();
    traced.headers.push(Header::new("trace", "1"));
    assert!(super::Predicate::HasHeaderKey("trace".into()).test(&traced));
}

#[test]
fn a_value_that_does_not_fit_names_the_field() {
    let stages =
        chain(&[("transforms", "c"), ("transforms.c.type", "Cast$Value"), ("transforms.c.spec", "name:int64")]);
    let err = stages[0].apply(row()).expect_err("ada is no number");
    assert_eq!(err, "c: Cast: field \"name\": cannot cast string ada to int64");
}

#[test]
fn bad_transform_configs_name_the_key() {
    assert_eq!(error(&[("transforms", "x")]).0, "transforms.x.type");
    let (key, reason) = error(&[("transforms", "x"), ("transforms.x.type", "SetSchemaMetadata$Value")]);
    assert_eq!(key, "transforms.x.type");
    assert!(reason.contains("\"SetSchemaMetadata\" is not a transform here"), "{reason}");
    let (key, _) = error(&[("transforms", "x"), ("transforms.x.type", "Cast$Value"), ("transforms.x.spec", "a:int7")]);
    assert_eq!(key, "transforms.x.spec");
    let (key, reason) =
        error(&[("transforms", "x"), ("transforms.x.type", "Filter"), ("transforms.x.predicate", "nope")]);
    assert_eq!((key.as_str(), reason.as_str()), ("transforms.x.predicate", "\"nope\" is not in `predicates`"));
    let (key, _) = error(&[("predicates", "p"), ("predicates.p.type", "TopicNameMatches")]);
    assert_eq!(key, "predicates.p.pattern");
}
