//! The committed CRD is exactly what `chat-operator crd` prints, and the API server's own
//! schema accepts it.

mod common;

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = common::crate_dir().join("../crds/chatdeployment.yaml");
    common::assert_golden(
        &path,
        &chat_operator::crd_yaml(),
        "cargo run -p chat-operator -- crd > crds/chatdeployment.yaml",
    );
}

#[test]
fn crd_validates_against_the_kubernetes_schemas() {
    let dir = std::env::temp_dir().join(format!("chat-operator-crd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("crd.yaml");
    std::fs::write(&file, chat_operator::crd_yaml()).unwrap();
    common::validate_manifests(&file);
}

#[test]
fn operator_install_manifests_validate_against_the_kubernetes_schemas() {
    common::validate_manifests(&common::crate_dir().join("deploy/operator.yaml"));
}

/// Every Quantity a user writes (resources' limits and requests, a storage size, an env var's
/// divisor) carries Kubernetes' quantity pattern, so `size: lots` is refused by the API server
/// instead of failing when the operator applies the StatefulSet.
#[test]
fn every_quantity_in_the_spec_has_the_quantity_pattern() {
    use kube::CustomResourceExt;
    use serde_json::Value;

    fn walk(schema: &Value, path: String, found: &mut Vec<(String, Option<String>)>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        if object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            let pattern = object.get("pattern").and_then(Value::as_str);
            found.push((path.clone(), pattern.map(str::to_owned)));
        }
        for (name, property) in object
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            walk(property, format!("{path}.{name}"), found);
        }
        if let Some(values) = object.get("additionalProperties") {
            walk(values, format!("{path}.*"), found);
        }
        if let Some(items) = object.get("items") {
            walk(items, format!("{path}[*]"), found);
        }
    }

    let crd = serde_json::to_value(chat_operator::crd::ChatDeployment::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut found = Vec::new();
    walk(spec, "spec".into(), &mut found);
    // Per component: limits, requests, an env var's divisor; per dependency: limits,
    // requests, storage size, an env var's divisor; the migration Job: an env var's divisor.
    assert_eq!(found.len(), 5 * 3 + 4 * 4 + 1, "{found:#?}");
    let without: Vec<&String> = found
        .iter()
        .filter(|(_, pattern)| pattern.as_deref() != Some(chat_operator::crd::QUANTITY))
        .map(|(path, _)| path)
        .collect();
    assert!(
        without.is_empty(),
        "quantities without the pattern: {without:#?}"
    );
}
