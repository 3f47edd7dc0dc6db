//! What the API server refuses, and what only the operator can: every validation rule of the
//! ChatDeployment CRD has a spec the real API server refuses with a message naming the field
//! (the list of rules is read from the generated CRD, so a new rule without a case fails), a
//! valid spec using the edges of those rules is accepted (a transition rule's case is an
//! update of a stored object, and the changes it allows are accepted), and a spec only the operator can
//! judge (a Secret it names does not exist) gets a `Degraded` condition and a Warning event
//! that say why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chat_operator::config::MAX_NAME_LENGTH;
use chat_operator::crd::ChatDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use serde_json::{json, Value};

use super::harness::{eventually, Stack};

const COMPONENTS: [&str; 5] = ["gateway", "auth", "chat", "group", "message"];
const DEPENDENCIES: [&str; 4] = ["mongodb", "rabbitmq", "kafka", "redis"];

/// For each kind of schema rule, what the API server's refusal says besides the field.
const REFUSALS: [(&str, &str); 9] = [
    ("minimum", "should be greater than or equal to"),
    ("maximum", "should be less than or equal to"),
    ("minLength", "should be at least"),
    ("maxLength", "Too long: may not be longer than"),
    ("pattern", "should match '"),
    ("enum", "Unsupported value"),
    ("maxProperties", "Too many"),
    ("oneOf", "must validate one and only one schema (oneOf)"),
    // A map-list's keys are unique (a create, update or merge patch; see
    // `a_duplicate_image_pull_secret_is_refused_by_every_kind_of_write` for an apply).
    ("x-kubernetes-list-type", "Duplicate value"),
];

/// Schema keywords that constrain nothing, or that the walk handles itself.
const NOT_RULES: [&str; 12] = [
    "description",
    "title",
    "type",
    "nullable",
    "default",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
];

/// Fields holding Kubernetes' own types (`ResourceRequirements`, `Toleration`, `Affinity`,
/// `TopologySpreadConstraint`, `EnvVar`): their `required` fields are Kubernetes' rules, not
/// this CRD's. Any other rule in them (the quantity pattern) is this CRD's and is listed.
const KUBERNETES_TYPES: [&str; 7] = [
    "resources",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "env",
    "clientPeers",
    "monitoringPeers",
];

/// Every rule of the CRD's schema outside the status, as `<path>#<keyword>` (`*` for any map
/// key, `[*]` for any item; `x-kubernetes-validations[i]` for a CEL rule, `<path>#required` for
/// a required field) with what its refusal must say.
fn rule_sites() -> BTreeMap<String, String> {
    let crd = serde_json::to_value(ChatDeployment::crd()).unwrap();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut sites = BTreeMap::new();
    walk(root, "", false, &mut sites);
    sites
}

fn walk(schema: &Value, path: &str, kubernetes_type: bool, sites: &mut BTreeMap<String, String>) {
    let object = schema.as_object().expect("a schema is an object");
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    for keyword in object.keys() {
        let known = NOT_RULES.contains(&keyword.as_str())
            || REFUSALS.iter().any(|(k, _)| k == keyword)
            || (keyword == "format" && object["type"] != "string");
        assert!(
            known,
            "{path}: this test does not know how the API server refuses `{keyword}`; \
             add it to REFUSALS (or NOT_RULES) and give it cases"
        );
    }
    for (keyword, refusal) in REFUSALS {
        if object.contains_key(keyword) {
            sites.insert(format!("{path}#{keyword}"), refusal.to_owned());
        }
    }
    for (i, rule) in object
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let message = rule["message"].as_str().or(rule["rule"].as_str()).unwrap();
        sites.insert(
            format!("{path}#x-kubernetes-validations[{i}]"),
            message.to_owned(),
        );
    }
    if !kubernetes_type {
        for name in object
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            sites.insert(format!("{}#required", join(name)), "Required value".into());
        }
    }
    for (name, property) in object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if path.is_empty() && name == "status" {
            continue; // written by the operator, not by users
        }
        let kubernetes_type = kubernetes_type || KUBERNETES_TYPES.contains(&name.as_str());
        walk(property, &join(name), kubernetes_type, sites);
    }
    if let Some(values) = object.get("additionalProperties").filter(|v| v.is_object()) {
        walk(values, &format!("{path}.*"), kubernetes_type, sites);
    }
    if let Some(items) = object.get("items") {
        walk(items, &format!("{path}[*]"), kubernetes_type, sites);
    }
}

/// A ChatDeployment the API server must refuse.
struct Case {
    /// The rule it breaks, as [`rule_sites`] names it.
    site: String,
    /// What is wrong, for failure messages.
    what: String,
    /// Merged (RFC 7386: `null` removes) into [`valid`].
    patch: Value,
    /// The field the refusal must name: the site's path unless set with [`Case::naming`].
    field: String,
    /// For a transition rule: merged into [`valid`] and stored first, so that the case is an
    /// update of it ([`Case::after`]).
    before: Option<Value>,
    /// Written with a create (POST) instead of a server-side apply ([`Case::created`]).
    create: bool,
}

impl Case {
    fn new(site: &str, what: &str, patch: Value) -> Self {
        let field = site.split_once('#').map_or(site, |(path, _)| path);
        Self {
            site: site.to_owned(),
            what: what.to_owned(),
            patch,
            field: field.to_owned(),
            before: None,
            create: false,
        }
    }

    /// A case whose patch sets `value` at the site's own path (a path without `*` or `[*]`).
    fn at(site: &str, what: &str, value: Value) -> Self {
        let path = site.split_once('#').map_or(site, |(path, _)| path);
        assert!(!path.contains('*'), "{site}: say where the value goes");
        Self::new(site, what, set(path, value))
    }

    fn naming(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    /// An update of a stored ChatDeployment that is [`valid`] with `before` merged in.
    fn after(mut self, before: Value) -> Self {
        self.before = Some(before);
        self
    }

    /// Written with a create: an apply of a map-list with a duplicate key is refused before
    /// validation, with another message (see
    /// `a_duplicate_image_pull_secret_is_refused_by_every_kind_of_write`).
    fn created(mut self) -> Self {
        self.create = true;
        self
    }
}

/// `{"a": {"b": value}}` for `a.b`.
fn set(path: &str, value: Value) -> Value {
    path.rsplit('.')
        .fold(value, |inner, key| json!({ key: inner }))
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = json!({});
            }
            let target = target.as_object_mut().unwrap();
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The smallest valid ChatDeployment.
fn valid() -> Value {
    json!({
        "apiVersion": "chat.scalablechat.dev/v1alpha1",
        "kind": "ChatDeployment",
        "metadata": {"name": "invalid"},
        "spec": {"version": "0.1.0"},
    })
}

/// `n` entries `k0: v`, `k1: v`, ….
fn entries(n: usize, value: &str) -> Value {
    (0..n).map(|i| (format!("k{i}"), json!(value))).collect()
}

/// Cases of a map that becomes labels or a node selector (`path#…` sites).
fn label_map_cases(path: &str) -> Vec<Case> {
    vec![
        Case::at(
            &format!("{path}#maxProperties"),
            "65 entries",
            entries(65, "x"),
        ),
        Case::at(
            &format!("{path}#x-kubernetes-validations[0]"),
            "a key with a space",
            json!({"team name": "chat"}),
        ),
        Case::at(
            &format!("{path}#x-kubernetes-validations[0]"),
            "a key with an uppercase prefix",
            json!({"Example.com/team": "chat"}),
        ),
        Case::new(
            &format!("{path}.*#maxLength"),
            "a 64-character value",
            set(path, json!({"team": "a".repeat(64)})),
        )
        .naming(format!("{path}.team")),
        Case::new(
            &format!("{path}.*#pattern"),
            "a value with '@'",
            set(path, json!({"owner": "me@example.com"})),
        )
        .naming(format!("{path}.owner")),
    ]
}

/// Cases of a map that becomes annotations.
fn annotation_map_cases(path: &str) -> Vec<Case> {
    vec![
        Case::at(
            &format!("{path}#maxProperties"),
            "65 entries",
            entries(65, "x"),
        ),
        Case::at(
            &format!("{path}#x-kubernetes-validations[0]"),
            "a key with '!'",
            json!({"fast!": "yes"}),
        ),
    ]
}

/// Cases of a `podOverrides` (of a component, a dependency or the migration Job) at `path`.
fn pod_overrides_cases(path: &str) -> Vec<Case> {
    let site = |rest: &str| format!("{path}{rest}");
    let mut cases = vec![Case::new(
        &site(".env[*].valueFrom.resourceFieldRef.divisor#pattern"),
        "an env var's divisor `one`",
        set(
            &site(".env"),
            json!([{
                "name": "CPUS",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "one"}},
            }]),
        ),
    )
    .naming(site(".env[0].valueFrom.resourceFieldRef.divisor"))];
    cases.extend(dns_name_cases(&site(".priorityClassName")));
    cases.extend(label_map_cases(&site(".labels")));
    cases.extend(label_map_cases(&site(".nodeSelector")));
    cases.extend(annotation_map_cases(&site(".annotations")));
    cases
}

/// Cases of a field holding `ResourceRequirements`.
fn resources_cases(path: &str) -> Vec<Case> {
    vec![
        Case::new(
            &format!("{path}.limits.*#pattern"),
            "memory limit `lots`",
            set(path, json!({"limits": {"memory": "lots"}})),
        )
        .naming(format!("{path}.limits.memory")),
        Case::new(
            &format!("{path}.requests.*#pattern"),
            "CPU request `two`",
            set(path, json!({"requests": {"cpu": "two"}})),
        )
        .naming(format!("{path}.requests.cpu")),
        Case::new(
            &format!("{path}.requests.*#pattern"),
            "memory request `1 Gi` (a space)",
            set(path, json!({"requests": {"memory": "1 Gi"}})),
        )
        .naming(format!("{path}.requests.memory")),
    ]
}

/// Cases of the name of a Secret or a PriorityClass: a DNS subdomain (`path` is the name
/// field).
fn dns_name_cases(path: &str) -> Vec<Case> {
    vec![
        Case::at(
            &format!("{path}#maxLength"),
            "a 254-character name",
            json!("a".repeat(254)),
        ),
        Case::at(
            &format!("{path}#pattern"),
            "an uppercase name",
            json!("Chat_Keys"),
        ),
        Case::at(&format!("{path}#pattern"), "an empty name", json!("")),
    ]
}

/// Cases of a `{name, key}` Secret reference.
fn secret_key_reference_cases(path: &str) -> Vec<Case> {
    let reference = |value: Value| set(path, value);
    let mut cases = vec![
        Case::new(
            &format!("{path}.name#required"),
            "no name",
            reference(json!({"key": "uri"})),
        ),
        Case::new(
            &format!("{path}.key#required"),
            "no key",
            reference(json!({"name": "chat-external"})),
        ),
        Case::new(
            &format!("{path}.key#maxLength"),
            "a 254-character key",
            reference(json!({"name": "chat-external", "key": "a".repeat(254)})),
        ),
        Case::new(
            &format!("{path}.key#pattern"),
            "a key with '/'",
            reference(json!({"name": "chat-external", "key": "uris/mongodb"})),
        ),
    ];
    for mut case in dns_name_cases(&format!("{path}.name")) {
        merge(&mut case.patch, &reference(json!({"key": "uri"})));
        cases.push(case);
    }
    cases
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case::new(
            "#x-kubernetes-validations[0]",
            "a name one character too long for the derived Service names",
            json!({"metadata": {"name": "c".repeat(MAX_NAME_LENGTH + 1)}}),
        )
        .naming("metadata.name"),
        Case::new(
            "#x-kubernetes-validations[1]",
            "a name with a dot",
            json!({"metadata": {"name": "chat.prod"}}),
        )
        .naming("metadata.name"),
        Case::new(
            "#x-kubernetes-validations[1]",
            "a name starting with a digit",
            json!({"metadata": {"name": "1chat"}}),
        )
        .naming("metadata.name"),
        Case::new("spec#required", "no spec", json!({"spec": null})),
        Case::at("spec.version#required", "no version", Value::Null),
        Case::at(
            "spec.version#maxLength",
            "a 64-character version",
            json!(format!("1.0.0-{}", "a".repeat(58))),
        ),
        Case::at(
            "spec.version#pattern",
            "build metadata (`+` is not allowed in a label)",
            json!("1.0.0+build.5"),
        ),
        Case::at(
            "spec.version#pattern",
            "a digest",
            json!("sha256:4f1c6b3e0c2d"),
        ),
        Case::at("spec.version#pattern", "an empty version", json!("")),
        Case::at(
            "spec.image#pattern",
            "a trailing space",
            json!("ghcr.io/scalable-chat/chat-server:0.1.0 "),
        ),
        Case::at("spec.image#pattern", "an empty image", json!("")),
        Case::at(
            "spec.imagePullPolicy#enum",
            "`Sometimes`",
            json!("Sometimes"),
        ),
        Case::new(
            "spec.imagePullSecrets[*].name#pattern",
            "an uppercase Secret name",
            set(
                "spec.imagePullSecrets",
                json!([{"name": "regcred"}, {"name": "RegCred"}]),
            ),
        )
        .naming("spec.imagePullSecrets[1].name"),
        Case::new(
            "spec.imagePullSecrets#x-kubernetes-list-type",
            "the same Secret twice",
            set(
                "spec.imagePullSecrets",
                json!([{"name": "regcred"}, {"name": "regcred"}]),
            ),
        )
        .naming("spec.imagePullSecrets[1]")
        .created(),
        Case::new(
            "spec.imagePullSecrets[*].name#required",
            "a reference without a name",
            set("spec.imagePullSecrets", json!([{}])),
        )
        .naming("spec.imagePullSecrets[0].name")
        .created(),
        Case::new(
            "spec.imagePullSecrets[*].name#maxLength",
            "a 254-character Secret name",
            set("spec.imagePullSecrets", json!([{"name": "a".repeat(254)}])),
        )
        .naming("spec.imagePullSecrets[0].name"),
        Case::at("spec.upgrade.stepTimeoutSeconds#minimum", "29 s", json!(29)),
        Case::at(
            "spec.upgrade.stepTimeoutSeconds#maximum",
            "a day and a second",
            json!(86401),
        ),
        Case::at("spec.deletionPolicy#enum", "`Keep`", json!("Keep")),
        Case::at("spec.factsRelay#enum", "`RabbitMq`", json!("RabbitMq")),
        Case::at("spec.logLevel#minLength", "an empty filter", json!("")),
        Case::at(
            "spec.auth#x-kubernetes-validations[0]",
            "access tokens living as long as refresh tokens",
            json!({"accessTokenTtlSeconds": 900, "refreshTokenTtlSeconds": 900}),
        ),
        Case::at(
            "spec.auth#x-kubernetes-validations[0]",
            "access tokens outliving refresh tokens",
            json!({"accessTokenTtlSeconds": 3600, "refreshTokenTtlSeconds": 600}),
        ),
        Case::at("spec.auth.accessTokenTtlSeconds#minimum", "59 s", json!(59)),
        Case::at(
            "spec.auth.accessTokenTtlSeconds#maximum",
            "a day and a second",
            json!(86401),
        ),
        Case::at(
            "spec.auth.refreshTokenTtlSeconds#minimum",
            "299 s",
            json!(299),
        ),
        Case::at(
            "spec.auth.refreshTokenTtlSeconds#maximum",
            "a year and a second",
            json!(31_536_001),
        ),
        Case::at(
            "spec.ingress#x-kubernetes-validations[0]",
            "tlsSecretName without host",
            json!({"tlsSecretName": "chat-tls"}),
        ),
        Case::at(
            "spec.ingress.className#maxLength",
            "a 254-character class",
            json!("a".repeat(254)),
        ),
        Case::at(
            "spec.ingress.className#pattern",
            "an uppercase class",
            json!("Nginx"),
        ),
        Case::at(
            "spec.ingress.host#maxLength",
            "a 254-character host",
            json!("a".repeat(254)),
        ),
        Case::at(
            "spec.ingress.host#pattern",
            "a URL",
            json!("https://chat.example.com"),
        ),
        Case::at(
            "spec.ingress.host#pattern",
            "a host with a port",
            json!("chat.example.com:443"),
        ),
        Case::at(
            "spec.ingress.host#pattern",
            "an IP address",
            json!("10.0.0.1"),
        ),
        Case::at(
            "spec.ingress.host#pattern",
            "uppercase",
            json!("Chat.Example.com"),
        ),
    ];
    for mut case in dns_name_cases("spec.ingress.tlsSecretName") {
        merge(
            &mut case.patch,
            &set("spec.ingress.host", json!("chat.example.com")),
        );
        cases.push(case);
    }
    cases.extend(dns_name_cases("spec.auth.jwtSecretName"));
    cases.extend(annotation_map_cases("spec.ingress.annotations"));
    cases.extend(pod_overrides_cases("spec.migration.podOverrides"));

    for component in COMPONENTS {
        let path = format!("spec.components.{component}");
        let site = |rest: &str| format!("{path}{rest}");
        cases.extend([
            Case::at(
                &site("#x-kubernetes-validations[0]"),
                "replicas and autoscaling",
                json!({"replicas": 2, "autoscaling": {"maxReplicas": 3}}),
            ),
            Case::at(&site(".replicas#minimum"), "-1 replicas", json!(-1)),
            Case::at(&site(".replicas#maximum"), "1001 replicas", json!(1001)),
            Case::at(
                &site(".autoscaling#x-kubernetes-validations[0]"),
                "minReplicas above maxReplicas",
                json!({"minReplicas": 5, "maxReplicas": 3}),
            ),
            Case::new(
                &site(".autoscaling.maxReplicas#required"),
                "no maxReplicas",
                set(&site(".autoscaling"), json!({"minReplicas": 2})),
            ),
            Case::at(
                &site(".autoscaling.maxReplicas#minimum"),
                "maxReplicas 0",
                json!(0),
            ),
            Case::at(
                &site(".autoscaling.maxReplicas#maximum"),
                "maxReplicas 1001",
                json!(1001),
            ),
            Case::new(
                &site(".autoscaling.minReplicas#minimum"),
                "minReplicas 0",
                set(
                    &site(".autoscaling"),
                    json!({"minReplicas": 0, "maxReplicas": 3}),
                ),
            ),
            Case::new(
                &site(".autoscaling.minReplicas#maximum"),
                "minReplicas 1001",
                set(
                    &site(".autoscaling"),
                    json!({"minReplicas": 1001, "maxReplicas": 1000}),
                ),
            ),
            Case::new(
                &site(".autoscaling.targetCpuUtilizationPercentage#minimum"),
                "a 0% CPU target",
                set(
                    &site(".autoscaling"),
                    json!({"maxReplicas": 3, "targetCpuUtilizationPercentage": 0}),
                ),
            ),
            Case::new(
                &site(".autoscaling.targetCpuUtilizationPercentage#maximum"),
                "a 101% CPU target",
                set(
                    &site(".autoscaling"),
                    json!({"maxReplicas": 3, "targetCpuUtilizationPercentage": 101}),
                ),
            ),
        ]);
        cases.extend(resources_cases(&site(".resources")));
        cases.extend(pod_overrides_cases(&site(".podOverrides")));
    }

    for dependency in DEPENDENCIES {
        let path = format!("spec.dependencies.{dependency}");
        let site = |rest: &str| format!("{path}{rest}");
        cases.extend([
            Case::at(&site("#oneOf"), "neither managed nor external", json!({})),
            Case::at(
                &site("#oneOf"),
                "both managed and external",
                json!({"managed": {}, "external": {"uriSecret": {"name": "chat-external", "key": "uri"}}}),
            ),
            Case::new(
                &site(".external.uriSecret#required"),
                "external without uriSecret",
                set(&path, json!({"external": {}})),
            ),
            Case::at(
                &site(".managed.image#pattern"),
                "an image with a space",
                json!("mongo: 7.0"),
            ),
            Case::at(
                &site(".managed.storage.size#pattern"),
                "storage size `lots`",
                json!("lots"),
            ),
            Case::at(
                &site(".managed.storage.size#pattern"),
                "storage size `10 GB`",
                json!("10 GB"),
            ),
            Case::at(
                &site(".managed.storage.storageClassName#maxLength"),
                "a 254-character class",
                json!("a".repeat(254)),
            ),
            Case::at(
                &site(".managed.storage.storageClassName#pattern"),
                "a class with a space",
                json!("fast ssd"),
            ),
        ]);
        // The class of a stored dependency's storage: another one, one where the cluster's
        // default was used, or none where one was set. The refusal names the field.
        let class = |class: Value| {
            set(
                &site(".managed.storage"),
                json!({"storageClassName": class}),
            )
        };
        let rule = site(".managed.storage#x-kubernetes-validations[0]");
        cases.extend([
            Case::new(&rule, "another storage class", class(json!("standard")))
                .after(class(json!("fast-ssd"))),
            Case::new(
                &rule,
                "a storage class set where none was",
                class(json!("fast-ssd")),
            )
            .after(json!({})),
            Case::new(&rule, "the storage class removed", class(Value::Null))
                .after(class(json!("fast-ssd"))),
        ]);
        cases.extend(resources_cases(&site(".managed.resources")));
        cases.extend(pod_overrides_cases(&site(".managed.podOverrides")));
        cases.extend(secret_key_reference_cases(&site(".external.uriSecret")));
        if dependency != "kafka" {
            cases.extend(secret_key_reference_cases(&site(".managed.passwordSecret")));
        }
    }
    cases
}

/// Every rule of the CRD has a case, and every case names a rule of the CRD.
#[test]
fn every_crd_rule_has_a_case() {
    let sites = rule_sites();
    let covered: BTreeSet<String> = cases().into_iter().map(|c| c.site).collect();
    let untested: Vec<&String> = sites.keys().filter(|s| !covered.contains(*s)).collect();
    let unknown: Vec<&String> = covered.iter().filter(|s| !sites.contains_key(*s)).collect();
    assert!(
        untested.is_empty() && unknown.is_empty(),
        "rules without a case: {untested:#?}\ncases of no rule: {unknown:#?}"
    );
}

/// The API server refuses each case with 422 and a message naming the field and saying what
/// the rule says.
#[tokio::test]
async fn the_api_server_refuses_every_invalid_spec_naming_the_field() {
    let sites = rule_sites();
    let cases = cases();
    let stack = Stack::new("validation").await;
    let mut failures = Vec::new();
    for case in &cases {
        let mut object = valid();
        merge(&mut object, &case.patch);
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let expected = &sites[&case.site];
        let describe = || format!("{} ({}; expected `{}`)", case.what, case.site, case.field);
        if let Some(before) = &case.before {
            let mut stored = valid();
            merge(&mut stored, before);
            if let Err(e) = stack.apply_chat(stored).await {
                failures.push(format!("{}: what it updates was refused: {e}", describe()));
                continue;
            }
        }
        let written = if case.create {
            // Untyped: the case may be one the Rust type cannot hold (an entry without a name).
            let resource = ApiResource::erase::<ChatDeployment>(&());
            let api: Api<DynamicObject> =
                Api::namespaced_with(stack.admin.clone(), &stack.namespace, &resource);
            let mut object = object.clone();
            object["metadata"]["namespace"] = json!(stack.namespace);
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            api.create(&PostParams::default(), &object).await.map(drop)
        } else {
            stack.apply_chat(object.clone()).await.map(drop)
        };
        if case.before.is_some() {
            let _ = stack
                .chat_deployments()
                .delete(&name, &DeleteParams::default())
                .await;
        }
        match written {
            Err(kube::Error::Api(e)) if e.code == 422 => {
                if !e.message.contains(&case.field) || !e.message.contains(expected.as_str()) {
                    failures.push(format!(
                        "{}: the message does not say `{expected}` about the field:\n    {}",
                        describe(),
                        e.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: refused, but not as invalid: {e}", describe())),
            Ok(_) => {
                failures.push(format!("{}: accepted", describe()));
                let _ = stack
                    .chat_deployments()
                    .delete(&name, &DeleteParams::default())
                    .await;
            }
        }
    }
    println!(
        "{} invalid ChatDeployments refused",
        cases.len() - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The edges of the rules are valid: the patterns accept what Kubernetes accepts.
#[tokio::test]
async fn the_api_server_accepts_a_spec_at_the_edges_of_the_rules() {
    let stack = Stack::new("validation-edges").await;
    let resources = json!({
        "requests": {"cpu": "500m", "memory": "1.5Gi", "ephemeral-storage": "1e9"},
        "limits": {"cpu": 2, "memory": "+512Mi", "example.com/gpu": ".5k"},
    });
    let overrides = json!({
        "labels": {"example.com/team": "chat_core", "tier": "", "v": "a".repeat(63)},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "annotations": {"example.com/note": "any text: at all, even spaces"},
        "env": [{"name": "CPU_MILLIS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}],
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}],
        "priorityClassName": format!("chat.{}", "p".repeat(248)),
    });
    assert_eq!(overrides["priorityClassName"].as_str().unwrap().len(), 253);
    let secret = json!({"name": "chat.external-1", "key": "tls.crt_2-x"});
    let name = "e".repeat(MAX_NAME_LENGTH);
    let object = json!({
        "apiVersion": "chat.scalablechat.dev/v1alpha1",
        "kind": "ChatDeployment",
        "metadata": {"name": name},
        "spec": {
            "version": format!("v1.2.3-rc.1_{}", "x".repeat(51)),
            "image": "registry.example.com:5000/chat/chat-server@sha256:4f1c6b3e0c2d",
            "imagePullSecrets": [{"name": "regcred"}, {"name": "registry.example.com"}],
            "auth": {"accessTokenTtlSeconds": 60, "refreshTokenTtlSeconds": 300, "jwtSecretName": "chat.keys"},
            "components": {
                "chat": {"replicas": 0, "resources": resources, "podOverrides": overrides},
                "gateway": {"autoscaling": {"minReplicas": 1000, "maxReplicas": 1000, "targetCpuUtilizationPercentage": 100}},
            },
            "dependencies": {
                "mongodb": {"managed": {"image": "mongo:7.0.28", "storage": {"size": "10Gi", "storageClassName": "local-path"}, "resources": resources, "passwordSecret": secret, "podOverrides": overrides}},
                "kafka": {"managed": {"storage": {"size": 10_737_418_240_i64}, "podOverrides": overrides}},
                "redis": {"external": {"uriSecret": secret}},
            },
            "migration": {"podOverrides": overrides},
            "ingress": {"className": "nginx", "host": "*.chat-1.example.com", "tlsSecretName": "chat-tls", "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
        },
    });
    assert_eq!(object["spec"]["version"].as_str().unwrap().len(), 63);
    let accepted = stack.apply_chat(object).await;
    assert!(accepted.is_ok(), "refused: {accepted:?}");
}

/// The longest name the CRD accepts still gives objects the workload controllers can run:
/// every dependency's StatefulSet gets its pod (the pod carries
/// `controller-revision-hash: <name>-<dependency>-<hash>`, which a 45-character name made 64
/// characters long: no pod was ever created for its RabbitMQ).
#[tokio::test]
async fn the_longest_name_gets_every_dependency_pod_created() {
    use k8s_openapi::api::core::v1::Pod;
    let mut stack = Stack::new("validation-longest").await;
    stack.start_operator("chat-operator-0");
    let name = "l".repeat(MAX_NAME_LENGTH);
    let mut object = valid();
    object["metadata"]["name"] = json!(name);
    stack.apply_chat(object).await.expect("accepted");
    let pods = stack.api::<Pod>();
    eventually(
        || {
            format!(
                "a pod for each StatefulSet of {name}\n{}",
                stack.operator_logs()
            )
        },
        Duration::from_secs(120),
        || async {
            let mut missing = Vec::new();
            for dependency in DEPENDENCIES {
                let pod = format!("{name}-{dependency}-0");
                if pods
                    .get_opt(&pod)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    missing.push(pod);
                }
            }
            missing
                .is_empty()
                .then_some(())
                .ok_or(format!("missing {missing:?}"))
        },
    )
    .await;
}

/// The storage class's transition rule refuses only a change of the class: a stored
/// ChatDeployment's storage can grow with its class kept (the operator grows the claims), any
/// other field (here `logLevel`, at every step) can change with a class set or unset, and a dependency turned external (no
/// StatefulSet, no claim template left) can come back managed with another class (its old
/// claims are kept and adopted by name, whatever the template says).
#[tokio::test]
async fn the_storage_class_rule_allows_every_other_change() {
    let stack = Stack::new("validation-transitions").await;
    let chat = |dependencies: Value, log_level: &str| {
        let mut object = valid();
        object["metadata"]["name"] = json!("transitions");
        object["spec"]["dependencies"] = dependencies;
        object["spec"]["logLevel"] = json!(log_level);
        object
    };
    let external = json!({"external": {"uriSecret": {"name": "chat-external", "key": "uri"}}});
    let steps = [
        (
            "created with a class on mongodb, none on redis",
            json!({
                "mongodb": {"managed": {"storage": {"size": "1Gi", "storageClassName": "fast-ssd"}}},
                "redis": {"managed": {"storage": {"size": "1Gi"}}},
            }),
        ),
        (
            "both grown, the classes as they were",
            json!({
                "mongodb": {"managed": {"storage": {"size": "2Gi", "storageClassName": "fast-ssd"}}},
                "redis": {"managed": {"storage": {"size": "2Gi"}}},
            }),
        ),
        (
            "mongodb turned external",
            json!({"mongodb": external.clone()}),
        ),
        (
            "mongodb managed again, on another class",
            json!({"mongodb": {"managed": {"storage": {"storageClassName": "standard"}}}}),
        ),
    ];
    for (i, (what, dependencies)) in steps.into_iter().enumerate() {
        let object = chat(dependencies, &format!("info,step={i}"));
        let stored = stack.apply_chat(object).await;
        assert!(stored.is_ok(), "{what}: refused: {stored:?}");
    }
    // And the rule is there: the class cannot change back now.
    let refused = stack
        .apply_chat(chat(
            json!({"mongodb": {"managed": {"storage": {"storageClassName": "fast-ssd"}}}}),
            "info",
        ))
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains("storageClassName cannot change")),
        "{refused:?}"
    );
}

/// Two `imagePullSecrets` of one name are refused by every kind of write, each naming the
/// field, and nothing is stored: a create, an update or a merge patch with 422 `Duplicate
/// value`; a server-side apply — on Kubernetes 1.25 — with 500 `failed to create typed patch
/// object`, before validation, naming the list and the duplicated name. An entry without a
/// name likewise (a create says 422 `Required value`; see the cases).
#[tokio::test]
async fn a_duplicate_image_pull_secret_is_refused_by_every_kind_of_write() {
    let stack = Stack::new("validation-pull-secrets").await;
    let api = stack.chat_deployments();
    let twice = json!([{"name": "regcred"}, {"name": "regcred"}]);
    let mut object = valid();
    object["metadata"]["name"] = json!("pulls");
    object["spec"]["imagePullSecrets"] = twice.clone();

    let applied = stack.apply_chat(object.clone()).await;
    match &applied {
        Err(kube::Error::Api(e)) => assert!(
            (e.code == 500 || e.code == 422)
                && e.message.contains(".spec.imagePullSecrets")
                && e.message
                    .contains("duplicate entries for key [name=\"regcred\"]"),
            "{e:?}"
        ),
        other => panic!("an apply with a duplicate name: {other:?}"),
    }
    println!("apply: {applied:?}");
    let mut nameless = object.clone();
    nameless["spec"]["imagePullSecrets"] = json!([{}]);
    let applied = stack.apply_chat(nameless).await;
    assert!(
        matches!(&applied, Err(kube::Error::Api(e)) if (e.code == 500 || e.code == 422)
            && e.message.contains(".spec.imagePullSecrets: element 0: associative list with keys has an element that omits key field \"name\"")),
        "an apply of an entry without a name: {applied:?}"
    );
    let cd: ChatDeployment = serde_json::from_value(object.clone()).unwrap();
    let created = api.create(&PostParams::default(), &cd).await;
    let duplicate = |result: &Result<ChatDeployment, kube::Error>| {
        matches!(result, Err(kube::Error::Api(e)) if e.code == 422
            && e.message.contains("spec.imagePullSecrets[1]: Duplicate value"))
    };
    assert!(duplicate(&created), "create: {created:?}");
    assert!(api.get_opt("pulls").await.unwrap().is_none(), "stored");

    object["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    stack.apply_chat(object).await.expect("one Secret is fine");
    let patched = api
        .patch(
            "pulls",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imagePullSecrets": twice}})),
        )
        .await;
    assert!(duplicate(&patched), "merge patch: {patched:?}");
    let mut replaced = api.get("pulls").await.unwrap();
    replaced.spec.image_pull_secrets = serde_json::from_value(twice).unwrap();
    let replaced = api
        .replace("pulls", &PostParams::default(), &replaced)
        .await;
    assert!(duplicate(&replaced), "update: {replaced:?}");
    let stored = api.get("pulls").await.unwrap();
    assert_eq!(stored.spec.image_pull_secrets.len(), 1);
}

/// A spec the API server cannot judge: the Secrets it names do not exist, or lack the key. The
/// operator refuses to build anything and says why in `Degraded` and a Warning event.
#[tokio::test]
async fn the_operator_reports_a_missing_secret_in_a_condition_and_an_event() {
    let mut stack = Stack::new("validation-secret").await;
    stack.start_operator("chat-operator-0");
    stack
        .create_secret(
            "chat-external",
            &[("mongodb", "mongodb://mongo.example:27017/chat")],
        )
        .await;

    let chat = |name: &str, spec: Value| {
        json!({
            "apiVersion": "chat.scalablechat.dev/v1alpha1",
            "kind": "ChatDeployment",
            "metadata": {"name": name},
            "spec": spec,
        })
    };
    // The user's signing key Secret does not exist.
    stack
        .apply_chat(chat(
            "nokey",
            json!({"version": "0.1.0", "auth": {"jwtSecretName": "chat-signing-key"}}),
        ))
        .await
        .expect("the API server accepts a spec naming a Secret that does not exist");
    // The Secret exists, without the key.
    stack
        .apply_chat(chat(
            "wrongkey",
            json!({"version": "0.1.0", "dependencies": {"redis": {"external": {"uriSecret": {"name": "chat-external", "key": "redis"}}}}}),
        ))
        .await
        .expect("the API server accepts a spec naming a key that does not exist");

    for (name, missing) in [
        ("nokey", "chat-signing-key (key private.pem)"),
        ("wrongkey", "chat-external (key redis)"),
    ] {
        let cd = stack
            .wait_condition(name, "Degraded", "True", Duration::from_secs(60))
            .await;
        let status = cd.status.as_ref().unwrap();
        let degraded = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(degraded.reason, "SecretMissing", "{degraded:?}");
        assert!(degraded.message.contains(missing), "{degraded:?}");
        assert!(
            !status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            "{status:?}"
        );

        let note = eventually(
            || format!("a Warning event on {name} saying {missing}"),
            Duration::from_secs(30),
            || async {
                let events = stack.events(name).await;
                events
                    .iter()
                    .find(|(reason, note)| reason == "SecretMissing" && note.contains(missing))
                    .map(|(_, note)| note.clone())
                    .ok_or_else(|| format!("{events:?}"))
            },
        )
        .await;
        println!(
            "{name}: Degraded {}: {}; event: {note}",
            degraded.reason, degraded.message
        );
    }

    // Nothing was built for a spec the operator refused.
    let deployments = stack
        .api::<Deployment>()
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        deployments.items.is_empty(),
        "{:?}",
        deployments
            .items
            .iter()
            .map(|d| d.metadata.name.clone())
            .collect::<Vec<_>>()
    );
}

/// The API server stores the schema's defaults: a minimal ChatDeployment, read back, carries
/// every default explicitly (so a later operator version with other defaults does not change
/// it), exactly as `tests/common/defaults.rs` applies the schema, and the operator derives
/// the same configuration from it as from the spec as written. The CRD is the one the chart
/// installs from its template (`templates/crd.yaml`), the way `helm upgrade` brings a new one.
#[tokio::test]
async fn the_api_server_stores_the_defaults_of_a_minimal_spec() {
    use super::common::{self, defaults};
    use chat_operator::config::{
        default_component_resources, validate, DependencyKind, DEFAULT_STEP_TIMEOUT_SECONDS,
    };

    let stack = Stack::new("defaults").await;
    let path = common::crate_dir().join("examples/minimal.yaml");
    let mut written: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    written["metadata"]["namespace"] = json!(stack.namespace);
    let created = stack.apply_chat(written.clone()).await.expect("accepted");

    // What etcd holds, not what a typed client makes of it.
    let stored: Value =
        serde_json::from_str(&stack.kubectl(&["get", "chat", "chat", "-o", "json"]))
            .expect("kubectl prints JSON");
    let mut expected = written.clone();
    let used = defaults::apply(&mut expected, &defaults::schema());
    assert!(!used.is_empty());
    assert_eq!(
        defaults::sorted(stored["spec"].clone()),
        defaults::sorted(expected["spec"].clone()),
        "the stored spec is not the minimal spec with the schema's defaults"
    );
    // A few of them by name, as the operator decides them.
    let spec = &stored["spec"];
    for kind in DependencyKind::ALL {
        let managed = &spec["dependencies"][kind.name()]["managed"];
        assert_eq!(managed["image"], kind.default_image(), "{}", kind.name());
        assert_eq!(
            managed["storage"]["size"],
            kind.default_storage(),
            "{}",
            kind.name()
        );
        assert_eq!(
            managed["resources"],
            serde_json::to_value(kind.default_resources()).unwrap(),
            "{}",
            kind.name()
        );
    }
    for component in COMPONENTS {
        assert_eq!(
            spec["components"][component]["resources"],
            serde_json::to_value(default_component_resources()).unwrap(),
            "{component}"
        );
    }
    assert_eq!(
        spec["upgrade"]["stepTimeoutSeconds"],
        DEFAULT_STEP_TIMEOUT_SECONDS
    );
    // Nor any the schema cannot hold: they follow the version, the name, or another field.
    assert!(spec["image"].is_null() && spec["auth"]["jwtSecretName"].is_null());
    for component in COMPONENTS {
        assert!(spec["components"][component]["replicas"].is_null());
    }

    // The operator reads the stored object as it reads one stored without defaults.
    let mut as_written: ChatDeployment = serde_json::from_value(written).unwrap();
    as_written.metadata = created.metadata.clone();
    assert_eq!(validate(&created), validate(&as_written));
}
