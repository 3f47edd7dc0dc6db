//! Traffic: the Ingresses clients come through, and the NetworkPolicies: each managed
//! dependency accepts connections only from the components that use it, and each component
//! only on its API port (gateway and chat, from `spec.networkPolicy.clientPeers`) and its
//! management port (from `spec.networkPolicy.monitoringPeers`).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyIngressRule,
    NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::component::{component_name, ASSET_MAX_CHUNK_BYTES};
use super::dependency::dependency_name;
use super::migration::MIGRATION_COMPONENT;
use super::{
    meta, selector_labels, COMPONENT_LABEL, HTTP_PORT, INSTANCE_LABEL, MANAGEMENT_PORT, NAME_LABEL,
};
use crate::config::{Component, DependencyKind, IngressConfig, ValidatedConfig};

/// Ingress-nginx settings for Socket.IO: a cookie pins a client to one chat replica (the
/// polling transport needs every request of a session on the same pod) and long timeouts
/// keep idle WebSockets open. Other controllers ignore them; add their equivalents through
/// `spec.ingress.annotations`.
const SOCKET_IO_ANNOTATIONS: [(&str, &str); 5] = [
    ("nginx.ingress.kubernetes.io/affinity", "cookie"),
    ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
    (
        "nginx.ingress.kubernetes.io/session-cookie-name",
        "chat-affinity",
    ),
    ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
    ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
];

/// Ingress-nginx settings for the REST API: a request body as large as one attachment chunk
/// plus the multipart form around it (ingress-nginx refuses bodies over 1 MiB by default,
/// answering 413 before the gateway sees them), and five minutes for a chunk on a slow link.
fn gateway_annotations() -> BTreeMap<String, String> {
    let body_kib = (ASSET_MAX_CHUNK_BYTES + FORM_OVERHEAD_BYTES).div_ceil(1024);
    BTreeMap::from([
        (
            "nginx.ingress.kubernetes.io/proxy-body-size".to_string(),
            format!("{body_kib}k"),
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
            "300".into(),
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-send-timeout".into(),
            "300".into(),
        ),
    ])
}

/// Room for an upload request's other form fields around the chunk, as the gateway allows.
const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Two Ingresses on the same host: `/` to the gateway, and `/socket.io` to chat. They are
/// separate so the session-affinity annotations apply to chat alone. The user's
/// `spec.ingress.annotations` win over both sets, except cert-manager's: they stay on the
/// gateway's Ingress alone, which owns the certificate both use (on both, cert-manager would
/// make two Certificates for one Secret, which then fight over it).
pub(super) fn ingresses(cfg: &ValidatedConfig, ingress: &IngressConfig) -> Vec<Ingress> {
    let mut chat_annotations: BTreeMap<String, String> = SOCKET_IO_ANNOTATIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    chat_annotations.extend(
        ingress
            .annotations
            .iter()
            .filter(|(k, _)| !is_cert_manager(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let mut gateway_annotations = gateway_annotations();
    gateway_annotations.extend(ingress.annotations.clone());
    vec![
        one_ingress(
            cfg,
            ingress,
            cfg.name.clone(),
            "/",
            Component::Gateway,
            gateway_annotations,
        ),
        one_ingress(
            cfg,
            ingress,
            format!("{}-socketio", cfg.name),
            "/socket.io",
            Component::Chat,
            chat_annotations,
        ),
    ]
}

fn one_ingress(
    cfg: &ValidatedConfig,
    ingress: &IngressConfig,
    name: String,
    path: &str,
    component: Component,
    annotations: BTreeMap<String, String>,
) -> Ingress {
    let mut metadata = meta(cfg, name, component.role());
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: ingress.class_name.clone(),
            tls: ingress.tls_secret.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: ingress.host.clone().map(|h| vec![h]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: ingress.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(path.into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: component_name(cfg, component),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An annotation cert-manager's ingress-shim acts on.
fn is_cert_manager(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, _)| {
        prefix == "cert-manager.io" || prefix.ends_with(".cert-manager.io")
    })
}

/// The URL clients use, when the Ingress names a host.
pub fn url(ingress: Option<&IngressConfig>) -> Option<String> {
    let ingress = ingress?;
    let host = ingress.host.as_ref()?;
    let scheme = if ingress.tls_secret.is_some() {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{host}"))
}

/// Admit traffic to a managed dependency's client port only from the components that use it
/// (and, for MongoDB, the migration Job).
pub(super) fn network_policy(cfg: &ValidatedConfig, kind: DependencyKind) -> NetworkPolicy {
    let mut users: Vec<String> = Component::ALL
        .into_iter()
        .filter(|c| c.uses(cfg.facts_relay).contains(&kind))
        .map(|c| c.role().to_string())
        .collect();
    if kind == DependencyKind::MongoDb {
        users.push(MIGRATION_COMPONENT.into());
    }
    NetworkPolicy {
        metadata: meta(cfg, dependency_name(cfg, kind), kind.name()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cfg, kind.name())),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([
                            (NAME_LABEL.to_string(), "scalable-chat".to_string()),
                            (INSTANCE_LABEL.into(), cfg.name.clone()),
                        ])),
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: COMPONENT_LABEL.into(),
                            operator: "In".into(),
                            values: Some(users),
                        }]),
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(kind.port())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    }
}

/// The components (and the migration Job) a dependency's NetworkPolicy from
/// [`network_policy`] admits, as read back from the policy.
pub fn admitted_components(policy: &NetworkPolicy) -> Vec<String> {
    policy
        .spec
        .iter()
        .flat_map(|s| s.ingress.iter().flatten())
        .flat_map(|r| r.from.iter().flatten())
        .flat_map(|p| p.pod_selector.iter())
        .flat_map(|s| s.match_expressions.iter().flatten())
        .flat_map(|e| e.values.iter().flatten().cloned())
        .collect()
}

/// Admit traffic to a component's pods only where it serves: the API port of the gateway and
/// chat (from the client peers) and every component's management port (from the monitoring
/// peers). Auth, group and message talk through the broker and the log, so nothing may open
/// their API port. An empty peer list admits every source, as a NetworkPolicy rule with no
/// `from` does.
pub(super) fn component_network_policy(
    cfg: &ValidatedConfig,
    component: Component,
) -> NetworkPolicy {
    let rule = |port: i32, peers: &[NetworkPolicyPeer]| NetworkPolicyIngressRule {
        from: (!peers.is_empty()).then(|| peers.to_vec()),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    };
    let mut rules = Vec::new();
    if matches!(component, Component::Gateway | Component::Chat) {
        rules.push(rule(HTTP_PORT, &cfg.client_peers));
    }
    rules.push(rule(MANAGEMENT_PORT, &cfg.monitoring_peers));
    let role = component.role();
    NetworkPolicy {
        metadata: meta(cfg, component_name(cfg, component), role),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cfg, role)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..Default::default()
        }),
    }
}
