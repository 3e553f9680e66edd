//! The `descriptor-set` subcommand of the real binary.

use std::process::Command;

use prost_reflect::{DescriptorPool, Value};

#[test]
fn descriptor_set_keeps_rules_and_errors() {
    let directory = tempfile::TempDir::new().unwrap();
    let output = directory.path().join("connectord.pb");

    let result = Command::new(env!("CARGO_BIN_EXE_connectord"))
        .args(["descriptor-set", "--output"])
        .arg(&output)
        .output()
        .expect("run connectord descriptor-set");

    assert!(result.status.success(), "stderr: {}", String::from_utf8_lossy(&result.stderr));
    let pool = DescriptorPool::decode(std::fs::read(&output).unwrap().as_slice()).expect("output is a descriptor set");
    for message in ["google.rpc.Status", "google.rpc.BadRequest", "google.api.HttpRule", "google.protobuf.Struct"] {
        assert!(pool.get_message_by_name(message).is_some(), "{message} is missing");
    }
    let http = pool.get_extension_by_name("google.api.http").expect("google.api.http is defined");
    let rotate = pool
        .get_service_by_name("connectord.v1.ConnectorService")
        .and_then(|service| service.methods().find(|method| method.name() == "RotateCredential"))
        .expect("RotateCredential is defined");
    let Value::Message(rule) = rotate.options().get_extension(&http).into_owned() else {
        panic!("RotateCredential has no google.api.http rule");
    };
    let additional = rule.get_field_by_name("additional_bindings").unwrap();
    assert_eq!(additional.as_list().map(<[Value]>::len), Some(1), "{rule:?}");
}

#[test]
fn descriptor_set_reports_unwritable_output() {
    let result = Command::new(env!("CARGO_BIN_EXE_connectord"))
        .args(["descriptor-set", "--output", "/nonexistent-directory/connectord.pb"])
        .output()
        .expect("run connectord descriptor-set");

    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("/nonexistent-directory/connectord.pb"), "{stderr}");
}
