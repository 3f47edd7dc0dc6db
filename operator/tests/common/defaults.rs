//! The API server's structural defaulting (apiextensions-apiserver's
//! `structuraldefaulting.Default`), applied offline to a ChatDeployment: what the API server
//! stores for a spec, so the tests can compare the operator's own defaults with the schema's
//! and the control plane's stored object with what the schema says.

use std::collections::BTreeSet;

use kube::CustomResourceExt;
use serde_json::Value;

/// The ChatDeployment's `openAPIV3Schema`, as the generated CRD has it.
pub fn schema() -> Value {
    let crd = serde_json::to_value(chat_operator::crd::ChatDeployment::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every `default` of `schema`, as `<path>` (`.*` for any map key, `[*]` for any item).
pub fn default_sites(schema: &Value) -> BTreeSet<String> {
    fn walk(schema: &Value, path: &str, sites: &mut BTreeSet<String>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        if object.contains_key("default") {
            sites.insert(path.to_owned());
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                walk(property, &format!("{path}.{name}"), sites);
            }
        }
        if let Some(values) = object.get("additionalProperties") {
            walk(values, &format!("{path}.*"), sites);
        }
        if let Some(items) = object.get("items") {
            walk(items, &format!("{path}[*]"), sites);
        }
    }
    let mut sites = BTreeSet::new();
    walk(schema, "", &mut sites);
    sites
}

/// `object` with the schema's defaults applied as the API server applies them: an absent
/// property (or a null one that is not nullable) gets its default, then every property present
/// is defaulted in turn, so defaults inside a defaulted `{}` apply too. Returns the sites (as
/// [`default_sites`] names them) whose default was used.
pub fn apply(object: &mut Value, schema: &Value) -> BTreeSet<String> {
    fn walk(x: &mut Value, schema: &Value, path: &str, used: &mut BTreeSet<String>) {
        match x {
            Value::Object(map) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                for (name, property) in properties.into_iter().flatten() {
                    let Some(default) = property.get("default") else {
                        continue;
                    };
                    let nullable = property.get("nullable") == Some(&Value::Bool(true));
                    let absent = match map.get(name) {
                        None => true,
                        Some(Value::Null) => !nullable,
                        Some(_) => false,
                    };
                    if absent {
                        map.insert(name.clone(), default.clone());
                        used.insert(format!("{path}.{name}"));
                    }
                }
                for (name, value) in map.iter_mut() {
                    if let Some(property) = properties.and_then(|p| p.get(name)) {
                        walk(value, property, &format!("{path}.{name}"), used);
                    } else if let Some(values) = schema.get("additionalProperties") {
                        walk(value, values, &format!("{path}.*"), used);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for item in items {
                        walk(item, item_schema, &format!("{path}[*]"), used);
                    }
                }
            }
            _ => {}
        }
    }
    let mut used = BTreeSet::new();
    walk(object, schema, "", &mut used);
    used
}

/// `value` with every object's keys sorted, so YAML written from it does not depend on whether
/// serde_json keeps insertion order (bson turns on `preserve_order` in the workspace).
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
