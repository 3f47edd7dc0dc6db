//! The committed CRD is exactly what `chat-operator crd` prints, and the API server's own
//! schema accepts it.

mod common;

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = common::crate_dir().join("../crds/chatdeployment.yaml");
    common::assert_golden(
        &path,
        &chat_operator::crd_yaml(),
        "cargo run -q -p chat-operator -- crd | tee crds/chatdeployment.yaml > charts/chat-operator/files/chatdeployment.yaml",
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

/// A ChatDeployment file as JSON, as the API server receives it.
fn load(path: &std::path::Path) -> serde_json::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn config(
    object: &serde_json::Value,
) -> Result<chat_operator::config::ValidatedConfig, chat_operator::config::InvalidSpec> {
    let mut cd: chat_operator::crd::ChatDeployment =
        serde_json::from_value(object.clone()).expect("a ChatDeployment");
    cd.metadata.namespace = Some("default".into());
    cd.metadata.uid = Some("6f1c3b1e-0000-4000-8000-000000000001".into());
    chat_operator::config::validate(&cd)
}

/// No drift between the schema's defaults and the operator's: for specs that together reach
/// every `default` of the schema (the examples, the test fixtures and one with every component
/// autoscaled), the spec as the API server stores it — the defaults filled in — gives exactly
/// the configuration the operator derives from the spec as written, with the fields absent (as
/// in a ChatDeployment stored before the schema had defaults).
#[test]
fn schema_defaults_are_the_operators_defaults() {
    use common::defaults;

    let schema = defaults::schema();
    let sites = defaults::default_sites(&schema);
    let mut specs = Vec::new();
    for dir in ["examples", "tests/fixtures"] {
        let mut files: Vec<_> = std::fs::read_dir(common::crate_dir().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        specs.extend(files.iter().map(|f| (f.display().to_string(), load(f))));
    }
    let chart_example =
        common::crate_dir().join("../charts/chat-operator/examples/chatdeployment.yaml");
    specs.push((chart_example.display().to_string(), load(&chart_example)));
    let autoscaling = serde_json::json!({"autoscaling": {"maxReplicas": 4}});
    specs.push((
        "every component autoscaled".into(),
        serde_json::json!({
            "apiVersion": "chat.scalablechat.dev/v1alpha1",
            "kind": "ChatDeployment",
            "metadata": {"name": "chat"},
            "spec": {
                "version": "0.1.0",
                "components": {
                    "gateway": autoscaling, "auth": autoscaling, "chat": autoscaling,
                    "group": autoscaling, "message": autoscaling,
                },
            },
        }),
    ));

    let mut reached = std::collections::BTreeSet::new();
    for (name, written) in specs {
        let mut stored = written.clone();
        let used = defaults::apply(&mut stored, &schema);
        let expected = config(&written);
        assert!(expected.is_ok(), "{name}: {expected:?}");
        assert_eq!(
            config(&stored),
            expected,
            "{name}: the schema's defaults {used:?} give another configuration than the operator's"
        );
        reached.extend(used);
    }
    let unreached: Vec<_> = sites.difference(&reached).collect();
    assert!(
        unreached.is_empty(),
        "no spec reaches these defaults, so nothing compares them with the operator's: {unreached:#?}"
    );
    // Every default a schema can hold is there: `deletionPolicy`, `factsRelay`,
    // `imagePullPolicy`, `logLevel`;
    // `upgrade` and its step timeout; `auth` and its two token lifetimes; `components`, and per
    // component itself, its resources and its autoscaler's minimum and CPU target; `dependencies`,
    // and per dependency itself (`{managed: {}}`), its image, resources, storage and size. Not:
    // `image` (it follows `version`), generated Secret names (they follow the name) and
    // `replicas` (a stored value would contradict an `autoscaling` set later).
    assert_eq!(
        sites.len(),
        4 + 2 + 3 + (1 + 5 * 4) + (1 + 4 * 5),
        "{sites:#?}"
    );
}

/// The minimal example as the API server stores it (the control-plane suite checks the real
/// one against the same defaulting): every default is explicit.
#[test]
fn minimal_example_as_the_api_server_stores_it() {
    let mut stored = load(&common::crate_dir().join("examples/minimal.yaml"));
    common::defaults::apply(&mut stored, &common::defaults::schema());
    common::assert_golden(
        &common::crate_dir().join("tests/golden/stored/minimal.yaml"),
        &format!(
            "# examples/minimal.yaml with the CRD schema's defaults applied, as the API server\n\
             # stores it. Generated; regenerate with:\n#   {REGENERATE_STORED}\n{}",
            serde_yaml::to_string(&common::defaults::sorted(stored)).unwrap()
        ),
        REGENERATE_STORED,
    );
}

const REGENERATE_STORED: &str = "UPDATE_GOLDEN=1 cargo test -p chat-operator --test crd";
