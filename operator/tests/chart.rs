//! The Helm chart that installs the operator (`charts/chat-operator`), checked offline:
//! rendered by Helm's own engine (`helm-python-sdk`), linted strictly, its values schema
//! enforced, every manifest and example validated against the Kubernetes 1.30 and CRD
//! schemas, its RBAC compared with what the operator calls ([`chat_operator::rbac`]), its CRD
//! (a template, so `helm upgrade` upgrades it) with the generated one, and
//! `deploy/operator.yaml` regenerated from it.
//!
//! The Python side is `tests/chart_tools.py`, run with the tools venv (`$CHAT_TOOLS_VENV`,
//! default `~/.cache/scalable-chat/venv`, installed by `scripts/infra.sh tools`). Missing tools
//! fail the tests; they never skip.

mod common;

use common::helm::{chart_dir, chart_tools, scratch, try_render, Rendered};

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use chat_operator::build::{build, prunable_kinds};
use chat_operator::config::validate;
use chat_operator::crd::{ChatDeployment, DeletionPolicy};
use chat_operator::rbac::{self, Grant, Scope};
use chat_operator::secrets::{generated_secrets, SecretDigests, SystemGenerator};
use chat_operator::upgrade::Versions;
use serde_json::Value;

const RELEASE: &str = "chat-operator";
const NAMESPACE: &str = "chat-operator";
const REGENERATE: &str = "UPDATE_GOLDEN=1 cargo test -p chat-operator --test chart";
/// Writes both copies of the generated CRD: the one to apply by hand and the chart's.
const REGENERATE_CRD: &str = "cargo run -q -p chat-operator -- crd | tee crds/chatdeployment.yaml > charts/chat-operator/files/chatdeployment.yaml";
const CRD_KIND: &str = "CustomResourceDefinition";

fn full_values() -> PathBuf {
    chart_dir().join("ci/full-values.yaml")
}

fn render(values: Option<&Path>) -> Rendered {
    try_render(RELEASE, values, NAMESPACE)
        .unwrap_or_else(|e| panic!("the chart does not render:\n{e}"))
}

fn render_values(name: &str, values: &str) -> Result<Rendered, String> {
    let file = scratch(name).join("values.yaml");
    std::fs::write(&file, values).unwrap();
    try_render(RELEASE, Some(&file), NAMESPACE)
}

fn env_of(deployment: &Value) -> BTreeMap<String, Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].clone()))
        .collect()
}

#[test]
fn chart_renders_with_default_values() {
    let rendered = render(None);
    assert_eq!(
        rendered.kinds(),
        [
            "ServiceAccount",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment"
        ]
    );
    let deployment = rendered.one("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"], "ghcr.io/scalable-chat/chat-operator:0.1.0",
        "the image tag defaults to the chart's appVersion"
    );
    assert_eq!(container["args"], serde_json::json!(["run"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
    let env = env_of(&deployment);
    assert!(
        !env.contains_key("WATCH_NAMESPACE"),
        "all namespaces by default"
    );
    assert!(env.contains_key("POD_NAME") && env.contains_key("POD_NAMESPACE"));
    assert_eq!(
        rendered.one("Service")["spec"]["ports"][0]["targetPort"],
        "http"
    );
    assert!(
        !rendered.templates.is_empty() && rendered.crds.is_empty(),
        "nothing under crds/, which Helm installs once and never upgrades: the CRD is a template"
    );
}

#[test]
fn chart_renders_with_every_value_set() {
    // The values file really sets everything: every leaf of values.yaml appears in it.
    let defaults: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let full: Value =
        serde_yaml::from_str(&std::fs::read_to_string(full_values()).unwrap()).unwrap();
    let set = leaves(&full, "");
    let unset: Vec<String> = leaves(&defaults, "")
        .into_iter()
        .filter(|leaf| {
            !set.iter()
                .any(|s| s == leaf || s.starts_with(&format!("{leaf}.")))
        })
        .collect();
    assert!(
        unset.is_empty(),
        "ci/full-values.yaml does not set {unset:?}"
    );

    let rendered = render(Some(&full_values()));
    assert_eq!(
        rendered.kinds(),
        [
            "ServiceAccount",
            "Role",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "Deployment",
            "ServiceMonitor"
        ],
        "with watchNamespaces the operator's rules are a Role in each, not a ClusterRole; \
         with crds.install false, no CRD"
    );
    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["metadata"]["name"], "chat-operator-full");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example.com/scalable-chat/chat-operator:0.1.0-rc.1"
    );
    assert_eq!(pod["serviceAccountName"], "chat-operator-sa");
    assert_eq!(
        pod["imagePullSecrets"],
        serde_json::json!([{"name": "registry-credentials"}])
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    for key in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
    ] {
        assert!(!pod[key].is_null(), "{key} is passed through");
    }
    let env = env_of(&deployment);
    assert_eq!(env["WATCH_NAMESPACE"], "chat,chat-staging");
    assert_eq!(env["LOG_FORMAT"], "text");
    assert_eq!(env["RUST_LOG"], "info,chat_operator=debug");
    let service = rendered.one("Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    let monitor = rendered.one("ServiceMonitor");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "metrics"
    );
}

/// Paths of the leaves of a YAML tree (empty maps and lists count as leaves).
fn leaves(value: &Value, prefix: &str) -> BTreeSet<String> {
    match value {
        Value::Object(map) if !map.is_empty() => map
            .iter()
            .flat_map(|(k, v)| leaves(v, &format!("{prefix}.{k}")))
            .collect(),
        _ => BTreeSet::from([prefix.to_owned()]),
    }
}

#[test]
fn chart_lints_clean_in_strict_mode() {
    let chart = chart_dir();
    for values in [None, Some(full_values())] {
        let mut args = vec!["lint".as_ref(), chart.as_os_str()];
        if let Some(values) = &values {
            args.push(values.as_os_str());
        }
        let report: Value = serde_json::from_str(
            &chart_tools(args).unwrap_or_else(|e| panic!("lint did not run:\n{e}")),
        )
        .unwrap();
        // Severity 1 is informational ("icon is recommended"); 2 and up fail `--strict`.
        let problems: Vec<&Value> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(
            problems.is_empty() && report["errors"].as_array().is_none_or(Vec::is_empty),
            "helm lint --strict with {values:?}: {problems:#?} {:#}",
            report["errors"]
        );
    }
}

#[test]
fn values_that_break_the_schema_are_rejected() {
    let cases = [
        ("wrong-type", "replicaCount: two\n"),
        ("no-replicas", "replicaCount: 0\n"),
        ("typo", "imagePullSecret: [registry-credentials]\n"),
        ("unknown-nested", "image: {digest: sha256:abc}\n"),
        ("bad-enum", "logFormat: xml\n"),
        ("bad-pull-policy", "image: {pullPolicy: Sometimes}\n"),
        ("bad-quantity", "resources: {requests: {cpu: lots}}\n"),
        ("bad-namespace", "watchNamespaces: [Not_A_Namespace]\n"),
        ("one-namespace-not-a-list", "watchNamespaces: chat\n"),
        (
            "bad-interval",
            "metrics: {serviceMonitor: {interval: soon}}\n",
        ),
        ("bad-port", "metrics: {service: {port: 70000}}\n"),
    ];
    for (name, values) in cases {
        let error = render_values(name, values)
            .err()
            .unwrap_or_else(|| panic!("values {values:?} were accepted"));
        assert!(
            error.contains("values don't meet the specifications of the schema"),
            "values {values:?} were rejected, but not by the schema:\n{error}"
        );
    }
    // Not expressible in the schema, so the template refuses it.
    let error = render_values(
        "monitor-without-service",
        "metrics: {service: {enabled: false}, serviceMonitor: {enabled: true}}\n",
    )
    .err()
    .expect("a ServiceMonitor without its Service is refused");
    assert!(error.contains("needs metrics.service.enabled"), "{error}");
}

/// Validate `file` with `kubernetes-validate --strict -k 1.30.0`. Unlike
/// [`common::validate_manifests`], a kind it has no schema for (it only warns) fails too,
/// except the ones in `checked_elsewhere`.
fn validate_strictly(file: &Path, checked_elsewhere: &[&str]) {
    let output = Command::new(common::kubernetes_validate())
        .args(["--strict", "-k", "1.30.0", "--quiet"])
        .arg(file)
        .output()
        .expect("kubernetes-validate runs");
    let report = String::from_utf8_lossy(&output.stdout);
    let unchecked: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("WARN"))
        .filter(|l| !checked_elsewhere.iter().any(|kind| l.contains(kind)))
        .collect();
    assert!(
        output.status.success() && unchecked.is_empty(),
        "{} does not validate against the Kubernetes 1.30 schemas:\n{report}{}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn rendered_manifests_validate_against_kubernetes_1_30() {
    let dir = scratch("validate");
    for (name, values) in [("default", None), ("full", Some(full_values()))] {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, render(values.as_deref()).manifests()).unwrap();
        // kubernetes-validate has no schema for prometheus-operator's kinds.
        validate_strictly(&file, &["ServiceMonitor"]);
        if values.is_some() {
            chart_tools(["validate-servicemonitor".as_ref(), file.as_os_str()])
                .unwrap_or_else(|e| panic!("the ServiceMonitor is invalid:\n{e}"));
        }
    }
}

#[test]
fn example_chat_deployments_validate_against_the_crd_schema() {
    let crd = common::crate_dir().join("../crds/chatdeployment.yaml");
    let mut examples = vec![chart_dir().join("examples/chatdeployment.yaml")];
    for dir in ["examples", "tests/fixtures"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(common::crate_dir().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension() == Some(OsStr::new("yaml")))
            .collect();
        files.sort();
        examples.extend(files);
    }
    let mut args = vec!["validate-custom".as_ref(), crd.as_os_str()];
    args.extend(examples.iter().map(|p| p.as_os_str()));
    let out = chart_tools(args).unwrap_or_else(|e| panic!("an example is invalid:\n{e}"));
    let validated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        validated["validated"],
        examples.len(),
        "one ChatDeployment per file"
    );

    // The check is strict: a misspelt field or a wrong type is caught, as `kubectl apply` would.
    let bad = scratch("bad-example").join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: chat.scalablechat.dev/v1alpha1\nkind: ChatDeployment\nmetadata: {name: bad}\n\
         spec:\n  version: \"0.1.0\"\n  ingres: {className: nginx}\n  paused: maybe\n",
    )
    .unwrap();
    let error = chart_tools(["validate-custom".as_ref(), crd.as_os_str(), bad.as_os_str()])
        .expect_err("an unknown field and a wrong type are rejected");
    assert!(error.contains("'ingres' was unexpected"), "{error}");
    assert!(error.contains("spec.paused"), "{error}");
}

/// `value` with every number that is a whole number written as an integer: Helm's `fromYaml`
/// and `toYaml` turn `86400.0` into `86400`.
fn whole_numbers(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && n.as_i64().is_none() && f.abs() < 1e15 => {
                Value::from(f as i64)
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, whole_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The chart's CRD is the generated one, rendered as a template (so `helm upgrade` upgrades
/// it, which Helm never does for `crds/`), kept by `helm uninstall`, and left out when
/// `crds.install` is false.
#[test]
fn chart_crd_is_the_generated_crd_and_upgraded_with_the_release() {
    common::assert_golden(
        &chart_dir().join("files/chatdeployment.yaml"),
        &chat_operator::crd_yaml(),
        REGENERATE_CRD,
    );
    assert!(
        !chart_dir().join("crds").exists(),
        "charts/chat-operator/crds/ would be installed once and never upgraded"
    );

    let rendered = render(None);
    let mut crd = rendered.one(CRD_KIND);
    let metadata = crd["metadata"].as_object_mut().unwrap();
    assert_eq!(
        metadata.remove("annotations"),
        Some(serde_json::json!({"helm.sh/resource-policy": "keep"})),
        "helm uninstall must not delete the CRD, and with it every ChatDeployment"
    );
    let labels = metadata.remove("labels").expect("the chart's labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(labels["app.kubernetes.io/instance"], RELEASE);
    let generated: Value = serde_yaml::from_str(&chat_operator::crd_yaml()).unwrap();
    assert!(
        whole_numbers(crd) == whole_numbers(generated),
        "the rendered CRD is not files/chatdeployment.yaml"
    );

    let without = render_values("no-crd", "crds: {install: false}\n").unwrap();
    assert!(
        !without.kinds().iter().any(|k| k == CRD_KIND),
        "crds.install false still renders the CRD"
    );
    assert!(without.crds.is_empty());
}

/// `deploy/operator.yaml`: the chart rendered with its defaults, for installs without Helm.
fn install_manifests() -> String {
    let rendered = render(None);
    // The CRD is applied on its own, server-side: it is too large for client-side apply.
    let manifests = rendered
        .documents()
        .into_iter()
        .filter(|(object, _)| object["kind"] != CRD_KIND)
        .map(|(_, text)| text + "\n")
        .collect::<Vec<_>>()
        .join("---\n");
    // Labels that would claim Helm manages these objects; with kubectl it does not.
    let manifests: String = manifests
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("helm.sh/chart:")
                && !l.trim_start().starts_with("app.kubernetes.io/managed-by:")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "# Installs chat-operator without Helm: namespace, least-privilege RBAC and a two-replica\n\
         # Deployment (one leads through a Lease, the other waits). Apply the CRD first:\n\
         #   kubectl apply --server-side -f crds/chatdeployment.yaml\n\
         #   kubectl apply -f operator/deploy/operator.yaml\n\
         #\n\
         # Generated from charts/chat-operator (default values, release and namespace\n\
         # {NAMESPACE}); do not edit. Regenerate with:\n\
         #   {REGENERATE}\n\
         apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n---\n{manifests}"
    )
}

#[test]
fn install_manifests_are_generated_from_the_chart() {
    common::assert_golden(
        &common::crate_dir().join("deploy/operator.yaml"),
        &install_manifests(),
        REGENERATE,
    );
}

/// The rules a rendering grants the operator's ServiceAccount in `namespace` (one of the
/// `watched` ones; `None` when it watches every namespace), by scope, and every problem found
/// on the way (wildcards, resource names, URLs, bindings to someone else).
fn granted(
    rendered: &Rendered,
    watched: &[&str],
    namespace_checked: Option<&str>,
    service_account: &str,
) -> (BTreeSet<Grant>, Vec<String>) {
    let objects = rendered.objects();
    let mut grants = BTreeSet::new();
    let mut problems = Vec::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        let name = role["metadata"]["name"].as_str().unwrap();
        let namespace = role["metadata"]["namespace"].as_str();
        let scope = match (role["kind"].as_str().unwrap(), namespace) {
            ("ClusterRole", _) if watched.is_empty() => Scope::Watched,
            ("Role", Some(NAMESPACE)) if name.ends_with("-leader-election") => Scope::OwnNamespace,
            ("Role", Some(ns)) if Some(ns) == namespace_checked => Scope::Watched,
            // Another watched namespace: checked on its own.
            ("Role", Some(ns)) if watched.contains(&ns) => continue,
            (kind, ns) => {
                problems.push(format!("{kind} {name} in {ns:?} is not expected"));
                continue;
            }
        };
        let bound = objects.iter().any(|b| {
            b["roleRef"]["name"] == name
                && b["roleRef"]["kind"] == role["kind"]
                && b["metadata"]["namespace"].as_str() == namespace
                && b["subjects"].as_array().is_some_and(|s| {
                    s.iter().all(|s| {
                        s["kind"] == "ServiceAccount"
                            && s["name"] == service_account
                            && s["namespace"] == NAMESPACE
                    })
                })
        });
        if !bound {
            problems.push(format!(
                "{name} is not bound to the operator's ServiceAccount alone"
            ));
        }
        for rule in role["rules"].as_array().unwrap() {
            for key in ["resourceNames", "nonResourceURLs"] {
                if !rule[key].is_null() {
                    problems.push(format!("{name}: {key} in {rule}"));
                }
            }
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().unwrap_or("<not a string>").to_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        if [&group, &resource, &verb].iter().any(|s| s.contains('*')) {
                            problems.push(format!(
                                "{name}: wildcard in ({group:?}, {resource}, {verb})"
                            ));
                        }
                        grants.insert((scope, group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    (grants, problems)
}

#[test]
fn chart_grants_exactly_the_permissions_the_operator_uses() {
    let needed = rbac::grants();
    let watched = ["chat", "chat-staging"];
    let cases = [
        (None, None, RELEASE),
        (Some(full_values()), Some("chat"), "chat-operator-sa"),
        (
            Some(full_values()),
            Some("chat-staging"),
            "chat-operator-sa",
        ),
    ];
    for (values, namespace, service_account) in cases {
        let rendered = render(values.as_deref());
        let watched: &[&str] = if namespace.is_some() { &watched } else { &[] };
        let (granted, problems) = granted(&rendered, watched, namespace, service_account);
        assert!(problems.is_empty(), "{values:?}: {problems:#?}");
        let missing: Vec<_> = needed.difference(&granted).collect();
        let extra: Vec<_> = granted.difference(&needed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "with {values:?} in {namespace:?}, the chart's RBAC differs from chat_operator::rbac::PERMISSIONS\n\
             missing (the operator calls these): {missing:#?}\n\
             extra (nothing calls these): {extra:#?}\n\
             Change charts/chat-operator/templates/_helpers.tpl and operator/src/rbac.rs together."
        );
    }
}

#[test]
fn operator_permissions_have_no_wildcards() {
    for p in rbac::PERMISSIONS {
        for s in p.verbs.iter().chain([&p.group, &p.resource]) {
            assert!(!s.contains('*'), "wildcard in {p:?}");
        }
    }
}

fn load_chat_deployment(path: &Path) -> ChatDeployment {
    let value: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut cd: ChatDeployment = serde_json::from_value(value).unwrap();
    cd.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    cd.metadata.uid = Some("6f1c3b1e-0000-4000-8000-000000000001".into());
    cd
}

/// Derived from what the build step produces, not from the list: every kind it builds for
/// the examples and fixtures can be applied, every kind the prune step visits can be listed
/// and deleted, generated Secrets can be read and created, and owner references that block
/// deletion are allowed.
#[test]
fn permissions_cover_every_kind_the_operator_builds() {
    let grants = rbac::grants();
    let mut missing = BTreeSet::new();
    let mut need = |group: &str, resource: &str, verb: &str| {
        let key = (
            Scope::Watched,
            group.to_owned(),
            resource.to_owned(),
            verb.to_owned(),
        );
        if !grants.contains(&key) {
            missing.insert(key);
        }
    };
    let mut files = vec![chart_dir().join("examples/chatdeployment.yaml")];
    for dir in ["examples", "tests/fixtures"] {
        for entry in std::fs::read_dir(common::crate_dir().join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    let mut kinds_built = BTreeSet::new();
    for file in files {
        let cd = load_chat_deployment(&file);
        if cd.spec.paused {
            continue;
        }
        let cfg = validate(&cd).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let secrets = generated_secrets(&cfg, &mut SystemGenerator::default(), chrono::Utc::now());
        let mut digests = SecretDigests::default();
        for secret in &secrets {
            digests.insert_secret(secret);
        }
        if !secrets.is_empty() {
            need("", "secrets", "get");
            need("", "secrets", "create");
        }
        if cfg.jwt_generated {
            // Rotation rewrites the key Secret.
            need("", "secrets", "update");
        }
        if cfg.deletion_policy == DeletionPolicy::Delete {
            // The finalizer, and what it deletes.
            need("chat.scalablechat.dev", "chatdeployments", "patch");
            need("", "persistentvolumeclaims", "list");
            need("", "persistentvolumeclaims", "delete");
            need("", "secrets", "delete");
            need("apps", "statefulsets", "delete");
        }
        // Observed before planning an upgrade.
        for (group, resource) in [
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("batch", "jobs"),
        ] {
            need(group, resource, "list");
            need(group, resource, "watch");
        }
        // With the migration Job, as during an upgrade.
        let mut versions = Versions::target(&cfg);
        versions.migration = true;
        for object in build(&cfg, &digests, &versions) {
            let resource = object.api_resource();
            kinds_built.insert(resource.kind.clone());
            need(&resource.group, &resource.plural, "create");
            need(&resource.group, &resource.plural, "patch");
            let json = object.to_json();
            let blocks = json["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["blockOwnerDeletion"] == true));
            if blocks {
                need(
                    "chat.scalablechat.dev",
                    "chatdeployments/finalizers",
                    "update",
                );
            }
        }
    }
    for resource in prunable_kinds() {
        need(&resource.group, &resource.plural, "list");
        need(&resource.group, &resource.plural, "delete");
    }
    need("chat.scalablechat.dev", "chatdeployments/status", "patch");
    assert!(
        missing.is_empty(),
        "chat_operator::rbac::PERMISSIONS (and so the chart) lacks {missing:#?}"
    );
    // The examples exercise every kind the build step has, or this test proves little.
    for kind in [
        "ConfigMap",
        "Service",
        "StatefulSet",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "Job",
    ] {
        assert!(
            kinds_built.contains(kind),
            "no example builds a {kind}: {kinds_built:?}"
        );
    }
}

#[test]
fn notes_tell_what_to_apply_next() {
    let notes = render(None).notes().to_owned();
    assert!(notes.contains("kind: ChatDeployment"), "{notes}");
    assert!(notes.contains("version: \"0.1.0\""), "{notes}");
    assert!(notes.contains("examples/chatdeployment.yaml"), "{notes}");
    assert!(notes.contains("every namespace"), "{notes}");
    assert!(notes.contains("`helm upgrade` upgrades it"), "{notes}");
    assert!(notes.contains("helm.sh/resource-policy: keep"), "{notes}");
    let scoped = render(Some(&full_values())).notes().to_owned();
    assert!(scoped.contains("kubectl apply -n chat -f -"), "{scoped}");
    assert!(
        scoped.contains("crds.install is false")
            && scoped.contains("kubectl apply --server-side -f crds/chatdeployment.yaml"),
        "{scoped}"
    );
}
