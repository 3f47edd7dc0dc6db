//! Whether an object needs applying: the operator sends a server-side apply only when the live
//! object differs from what it wants, so a reconcile with nothing to do writes nothing.
//!
//! A no-op server-side apply leaves etcd alone, but it is still a `patch` request that the API
//! server authorises, admits and audits; with thirty objects per reconcile and a reconcile on
//! every watch event, that is the load a steady state should not make. Two checks decide:
//!
//! - the **intent hash**: every applied object carries [`INTENT_ANNOTATION`], a digest of
//!   exactly what was applied. A different desired object (a field added, changed or
//!   *removed*) has a different digest, so removals are applied even though the stale field is
//!   still on the live object;
//! - **drift**: every field the operator sets must still hold its value on the live object
//!   ([`contains`]), so a hand edit or a field taken over by another manager is applied back.
//!   Fields the server defaults or other controllers add are not ours and are ignored.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Annotation holding the digest of the object as the operator last applied it.
pub const INTENT_ANNOTATION: &str = "chat.scalablechat.dev/applied";

/// `desired` with its intent digest annotation, ready to apply.
pub fn with_intent(mut desired: Value) -> Value {
    let digest = intent_digest(&desired);
    let metadata = desired
        .as_object_mut()
        .expect("an object")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let annotations = metadata
        .as_object_mut()
        .expect("metadata is an object")
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    annotations
        .as_object_mut()
        .expect("annotations are an object")
        .insert(INTENT_ANNOTATION.into(), Value::String(digest));
    desired
}

fn intent_digest(desired: &Value) -> String {
    // serde_json writes object keys in a stable order for a given build; the digest only has
    // to be stable between reconciles of one operator version.
    let bytes = serde_json::to_vec(desired).expect("JSON serialises");
    let digest = Sha256::digest(bytes);
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `live` already is what `desired` (as returned by [`with_intent`]) asks for.
/// `apiVersion` and `kind` are left out: items of a list response do not carry them.
pub fn is_applied(desired: &Value, live: &Value) -> bool {
    difference(live, desired).is_none()
}

/// The first field, as a path, that `desired` sets and `live` does not hold (for the log).
pub fn difference(live: &Value, desired: &Value) -> Option<String> {
    let mut desired = desired.clone();
    if let Some(o) = desired.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    first_difference(live, &desired, String::new())
}

/// Whether every field set in `wanted` has the same value in `have`. Objects are compared
/// key by key (extra keys in `have` are fine); lists element by element, same length; an
/// absent field in `have` matches an empty object, an empty list or null in `wanted`.
pub fn contains(have: &Value, wanted: &Value) -> bool {
    first_difference(have, wanted, String::new()).is_none()
}

fn first_difference(have: &Value, wanted: &Value, path: String) -> Option<String> {
    match (have, wanted) {
        (_, Value::Null) => None,
        (Value::Object(have), Value::Object(wanted)) => wanted.iter().find_map(|(key, value)| {
            let path = format!("{path}.{key}");
            match have.get(key) {
                Some(h) => first_difference(h, value, path),
                None => (!is_empty(value)).then_some(path),
            }
        }),
        (Value::Array(have), Value::Array(wanted)) => {
            if have.len() != wanted.len() {
                return Some(format!("{path} (length)"));
            }
            have.iter()
                .zip(wanted)
                .enumerate()
                .find_map(|(i, (h, w))| first_difference(h, w, format!("{path}[{i}]")))
        }
        (have, wanted) => (have != wanted).then_some(path),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat-gateway", "labels": {"app": "chat"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "chat-server", "image": image, "env": []}
            ]}}},
        })
    }

    /// The live object: what was applied plus what the server and other controllers add.
    fn live_from(applied: &Value) -> Value {
        let mut live = applied.clone();
        live["metadata"]["resourceVersion"] = json!("42");
        live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("3");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        live["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("env");
        live["status"] = json!({"readyReplicas": 2});
        live
    }

    #[test]
    fn server_defaults_and_status_are_not_drift() {
        let desired = with_intent(deployment("chat:1"));
        assert!(is_applied(&desired, &live_from(&desired)));
    }

    #[test]
    fn a_hand_edit_of_an_owned_field_is_drift() {
        let desired = with_intent(deployment("chat:1"));
        let mut live = live_from(&desired);
        live["spec"]["replicas"] = json!(5);
        assert!(!is_applied(&desired, &live));
        let mut live = live_from(&desired);
        live["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        assert!(!is_applied(&desired, &live));
    }

    #[test]
    fn a_changed_or_removed_field_changes_the_intent() {
        let before = with_intent(deployment("chat:1"));
        let live = live_from(&before);
        assert!(!is_applied(&with_intent(deployment("chat:2")), &live));
        // A field the operator stops setting is still on the live object; the digest differs,
        // so the apply that removes it is sent.
        let mut fewer = deployment("chat:1");
        fewer["metadata"].as_object_mut().unwrap().remove("labels");
        assert!(contains(&live, &fewer));
        assert!(!is_applied(&with_intent(fewer), &live));
    }

    #[test]
    fn lists_must_match_in_length() {
        assert!(!contains(&json!([1, 2, 3]), &json!([1, 2])));
        assert!(contains(&json!([{"a": 1, "b": 2}]), &json!([{"a": 1}])));
    }
}
