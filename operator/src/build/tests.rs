//! The desired-state builder on its own: scaling, `stopped`, versions held back during an
//! upgrade, pod lifecycle and the migration Job.

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use serde_json::json;

use super::*;
use crate::config::{validate, Component};
use crate::crd::{
    AutoscalingSpec, ChatDeployment, ChatDeploymentSpec, ComponentSpec, ComponentsSpec,
};
use crate::upgrade::Release;

fn cfg(spec: ChatDeploymentSpec) -> ValidatedConfig {
    let mut cd = ChatDeployment::new("chat", spec);
    cd.metadata.namespace = Some("default".into());
    validate(&cd).unwrap()
}

fn spec_with_chat(chat: ComponentSpec) -> ChatDeploymentSpec {
    ChatDeploymentSpec {
        version: "0.1.0".into(),
        components: Some(ComponentsSpec {
            chat: Some(chat),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn fixed(replicas: i32) -> ChatDeploymentSpec {
    spec_with_chat(ComponentSpec {
        replicas: Some(replicas),
        ..Default::default()
    })
}

fn autoscaled() -> ChatDeploymentSpec {
    spec_with_chat(ComponentSpec {
        autoscaling: Some(AutoscalingSpec {
            min_replicas: Some(2),
            max_replicas: 6,
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn objects(spec: ChatDeploymentSpec) -> Vec<Resource> {
    let cfg = cfg(spec);
    build(&cfg, &SecretDigests::default(), &Versions::target(&cfg))
}

fn find<'a>(objects: &'a [Resource], kind: &str, name: &str) -> Option<&'a Resource> {
    objects
        .iter()
        .find(|o| o.api_resource().kind == kind && o.name() == name)
}

fn deployment<'a>(objects: &'a [Resource], role: &str) -> &'a Deployment {
    match find(objects, "Deployment", &format!("chat-{role}")) {
        Some(Resource::Deployment(d)) => d,
        _ => panic!("no Deployment chat-{role}"),
    }
}

fn replicas(objects: &[Resource], role: &str) -> Option<i32> {
    deployment(objects, role).spec.as_ref().unwrap().replicas
}

fn app_container(deployment: &Deployment) -> &Container {
    first_container(&deployment.spec.as_ref().unwrap().template)
}

fn first_container(template: &PodTemplateSpec) -> &Container {
    &template.spec.as_ref().unwrap().containers[0]
}

#[test]
fn a_replica_change_is_the_deployments_replicas_with_a_budget_above_one() {
    let one = objects(fixed(1));
    assert_eq!(replicas(&one, "chat"), Some(1));
    assert!(find(&one, "PodDisruptionBudget", "chat-chat").is_none());
    let three = objects(fixed(3));
    assert_eq!(replicas(&three, "chat"), Some(3));
    assert!(find(&three, "PodDisruptionBudget", "chat-chat").is_some());
}

#[test]
fn autoscaling_leaves_replicas_to_the_hpa() {
    let built = objects(autoscaled());
    assert_eq!(
        replicas(&built, "chat"),
        None,
        "the HPA's field manager owns it"
    );
    let Some(Resource::HorizontalPodAutoscaler(hpa)) =
        find(&built, "HorizontalPodAutoscaler", "chat-chat")
    else {
        panic!("no HPA")
    };
    let spec = hpa.spec.as_ref().unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 6));
    assert_eq!(replicas(&built, "gateway"), Some(1));
}

#[test]
fn switching_back_to_fixed_sets_replicas_again_and_drops_the_hpa() {
    let built = objects(fixed(2));
    assert_eq!(replicas(&built, "chat"), Some(2));
    assert!(find(&built, "HorizontalPodAutoscaler", "chat-chat").is_none());
    assert!(prunable_kinds()
        .iter()
        .any(|k| k.kind == "HorizontalPodAutoscaler"));
}

#[test]
fn stopped_is_zero_replicas_everywhere_without_autoscalers_or_budgets() {
    let mut spec = autoscaled();
    spec.stopped = true;
    spec.components.as_mut().unwrap().gateway = Some(ComponentSpec {
        replicas: Some(3),
        ..Default::default()
    });
    let built = objects(spec);
    for component in Component::ALL {
        assert_eq!(replicas(&built, component.role()), Some(0), "{component:?}");
    }
    for object in &built {
        match object {
            Resource::StatefulSet(s) => {
                assert_eq!(s.spec.as_ref().unwrap().replicas, Some(0));
                assert!(s.spec.as_ref().unwrap().volume_claim_templates.is_some());
            }
            Resource::HorizontalPodAutoscaler(_) | Resource::PodDisruptionBudget(_) => {
                panic!("stopped builds no {}", object.api_resource().kind)
            }
            _ => {}
        }
    }
}

#[test]
fn components_run_the_version_they_are_given_and_absent_ones_are_not_built() {
    let cfg = cfg(fixed(1));
    let mut versions = Versions::target(&cfg);
    versions.components.insert(
        Component::Gateway,
        Release {
            version: "0.0.9".into(),
            image: "example.com/chat-server:0.0.9".into(),
        },
    );
    versions.components.remove(&Component::Chat);
    versions
        .dependencies
        .insert(crate::config::DependencyKind::Redis, "redis:7.0".into());
    let built = build(&cfg, &SecretDigests::default(), &versions);

    let gateway = deployment(&built, "gateway");
    assert_eq!(
        app_container(gateway).image.as_deref(),
        Some("example.com/chat-server:0.0.9")
    );
    let labels = gateway.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[VERSION_LABEL], "0.0.9");
    assert_eq!(
        app_container(deployment(&built, "message"))
            .image
            .as_deref(),
        Some("ghcr.io/scalable-chat/chat-server:0.1.0")
    );
    assert!(find(&built, "Deployment", "chat-chat").is_none());
    assert!(find(&built, "Service", "chat-chat").is_none());
    let Some(Resource::StatefulSet(redis)) = find(&built, "StatefulSet", "chat-redis") else {
        panic!("no redis")
    };
    let pod = redis.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("redis:7.0"));
}

/// An image pinned by digest stays the image: every workload and the migration Job are
/// labelled with `version` (a label value), never with the image reference.
#[test]
fn a_digest_image_runs_while_the_version_label_stays_the_version() {
    let digest = "registry.example.com/chat/chat-server@sha256:4f1c6b3e0c2d";
    let mut spec = fixed(1);
    spec.version = "1.2.3-rc.1".into();
    spec.image = Some(digest.into());
    let mut built = objects(spec.clone());
    built.push(Resource::Job(migration_job(&cfg(spec))));
    let mut workloads = 0;
    for object in &built {
        let (meta, template) = match object {
            Resource::Deployment(d) => (&d.metadata, &d.spec.as_ref().unwrap().template),
            Resource::Job(j) => (&j.metadata, &j.spec.as_ref().unwrap().template),
            _ => continue,
        };
        for labels in [
            meta.labels.as_ref().unwrap(),
            template.metadata.as_ref().unwrap().labels.as_ref().unwrap(),
        ] {
            assert_eq!(labels[VERSION_LABEL], "1.2.3-rc.1");
        }
        let container = &template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some(digest));
        workloads += 1;
    }
    assert_eq!(workloads, 6, "five components and the migration Job");
}

#[test]
fn components_are_built_in_rollout_order_after_the_migration_job() {
    let cfg = cfg(fixed(1));
    let mut versions = Versions::target(&cfg);
    versions.migration = true;
    let kinds: Vec<String> = build(&cfg, &SecretDigests::default(), &versions)
        .iter()
        .filter(|o| matches!(o, Resource::Job(_) | Resource::Deployment(_)))
        .map(|o| o.name().to_string())
        .collect();
    assert_eq!(
        kinds[1..],
        [
            "chat-message",
            "chat-group",
            "chat-auth",
            "chat-chat",
            "chat-gateway"
        ]
    );
    assert!(kinds[0].starts_with("chat-migrate-"));
}

#[test]
fn every_component_pod_pauses_before_stopping_and_chat_gets_time_to_drain() {
    let built = objects(fixed(1));
    for component in Component::ALL {
        let d = deployment(&built, component.role());
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let sleep = app_container(d)
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone());
        // `exec`, not the `sleep` handler, which API servers before 1.30 refuse.
        assert_eq!(
            sleep,
            Some(vec!["sleep".into(), "5".into()]),
            "{component:?}"
        );
        let grace = pod.termination_grace_period_seconds.unwrap();
        assert_eq!(grace, if component == Component::Chat { 45 } else { 30 });
    }
}

#[test]
fn the_migration_job_runs_migrate_of_the_target_with_the_mongodb_wiring() {
    let cfg = cfg(fixed(1));
    let job = migration_job(&cfg);
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(&["migrate".to_string()][..])
    );
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/scalable-chat/chat-server:0.1.0")
    );
    let message = deployment(&objects(fixed(1)), "message").clone();
    let mongodb_env: Vec<_> = app_container(&message)
        .env
        .iter()
        .flatten()
        .filter(|e| e.name.starts_with("MONGODB_"))
        .cloned()
        .collect();
    assert_eq!(container.env.clone().unwrap(), mongodb_env);
    assert_eq!(container.env_from, app_container(&message).env_from);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));

    let newer = cfg_with_version("0.2.0");
    assert_ne!(migration_job(&newer).metadata.name, job.metadata.name);
}

fn cfg_with_version(version: &str) -> ValidatedConfig {
    let mut spec = fixed(1);
    spec.version = version.into();
    cfg(spec)
}

#[test]
fn the_mongodb_network_policy_admits_the_migration_job() {
    let built = objects(fixed(1));
    let Some(Resource::NetworkPolicy(policy)) = find(&built, "NetworkPolicy", "chat-mongodb")
    else {
        panic!("no policy")
    };
    let json = serde_json::to_string(policy).unwrap();
    assert!(json.contains("\"migrate\""), "{json}");
    let job = migration_job(&cfg(fixed(1)));
    let labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels[COMPONENT_LABEL], "migrate");
}

/// With the longest name the CRD allows, every derived name fits: Services (DNS labels),
/// the Job (its name is its pods' `job-name` label), the StatefulSets (their name plus `-` and
/// a revision hash of up to 10 characters is their pods' `controller-revision-hash` label, a
/// label value of at most 63) and every label value.
#[test]
fn the_longest_name_still_gives_valid_derived_names_and_labels() {
    let mut cd = ChatDeployment::new(&"c".repeat(crate::config::MAX_NAME_LENGTH), fixed(1));
    cd.metadata.namespace = Some("default".into());
    let cfg = validate(&cd).unwrap();
    let mut built = build(&cfg, &SecretDigests::default(), &Versions::target(&cfg));
    built.push(Resource::Job(migration_job(&cfg)));
    let mut sets = 0;
    for object in &built {
        let name = object.name();
        match object {
            Resource::Service(_) | Resource::Job(_) => assert!(name.len() <= 63, "{name}"),
            Resource::StatefulSet(set) => {
                let revision_label = format!("{name}-{}", "1".repeat(10));
                assert!(revision_label.len() <= 63, "{revision_label}");
                let pod = format!("{name}-0");
                assert!(pod.len() <= 63, "{pod}");
                let template = set.spec.as_ref().unwrap().template.metadata.as_ref();
                for value in template.unwrap().labels.as_ref().unwrap().values() {
                    assert!(value.len() <= 63, "{name}: {value}");
                }
                sets += 1;
            }
            _ => assert!(name.len() <= 253, "{name}"),
        }
        let labels = object.to_json()["metadata"]["labels"].clone();
        for value in labels.as_object().into_iter().flat_map(|l| l.values()) {
            assert!(value.as_str().unwrap().len() <= 63, "{name}: {value}");
        }
    }
    assert_eq!(sets, 4);
}

#[test]
fn the_gateway_ingress_admits_a_whole_attachment_chunk_and_user_annotations_win() {
    let mut spec = fixed(1);
    spec.ingress = Some(crate::crd::IngressSpec {
        annotations: BTreeMap::from([(
            "nginx.ingress.kubernetes.io/proxy-read-timeout".to_string(),
            "900".to_string(),
        )]),
        ..Default::default()
    });
    let built = objects(spec);
    let Some(Resource::Ingress(gateway)) = find(&built, "Ingress", "chat") else {
        panic!("the gateway Ingress is built");
    };
    let annotations = gateway.metadata.annotations.clone().unwrap();
    let body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
        .strip_suffix('k')
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap();
    let Some(Resource::ConfigMap(config)) = find(&built, "ConfigMap", "chat-config") else {
        panic!("the ConfigMap is built");
    };
    let chunk: u64 = config.data.as_ref().unwrap()["ASSET_MAX_CHUNK_BYTES"]
        .parse()
        .unwrap();
    assert!(
        body * 1024 >= chunk + 64 * 1024,
        "{body}k for {chunk}-byte chunks"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], "900",
        "the user's annotation wins"
    );
}

/// Probes and `/metrics` are on the management port, which no Service and no Ingress exposes:
/// every component Service targets only the API port (`http`), and the Ingresses reach only
/// those Services.
#[test]
fn probes_and_metrics_are_on_the_management_port_which_no_service_or_ingress_exposes() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use kube::ResourceExt;
    let mut spec = fixed(1);
    spec.ingress = Some(crate::crd::IngressSpec {
        host: Some("chat.example.com".into()),
        ..Default::default()
    });
    let built = objects(spec);
    let mut services = 0;
    for object in &built {
        match object {
            Resource::Deployment(d) => {
                let container = app_container(d);
                for probe in [
                    &container.startup_probe,
                    &container.liveness_probe,
                    &container.readiness_probe,
                ] {
                    let port = &probe.as_ref().unwrap().http_get.as_ref().unwrap().port;
                    assert_eq!(port, &IntOrString::String("management".into()));
                }
                let management = container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some("management"))
                    .unwrap();
                assert_eq!(management.container_port, MANAGEMENT_PORT);
                let annotations = d.spec.as_ref().unwrap().template.metadata.as_ref();
                let annotations = annotations.unwrap().annotations.as_ref().unwrap();
                assert_eq!(
                    annotations["prometheus.io/port"],
                    MANAGEMENT_PORT.to_string()
                );
            }
            // The components' Services (RabbitMQ's headless Service has a port of its own
            // named `management`: its management UI).
            Resource::Service(service)
                if ["gateway", "auth", "chat", "group", "message"]
                    .iter()
                    .any(|c| service.name_any() == format!("chat-{c}")) =>
            {
                for port in service.spec.as_ref().unwrap().ports.iter().flatten() {
                    assert_ne!(port.port, MANAGEMENT_PORT, "{}", service.name_any());
                    assert_ne!(
                        port.target_port,
                        Some(IntOrString::String("management".into())),
                        "{}",
                        service.name_any()
                    );
                    assert_ne!(
                        port.target_port,
                        Some(IntOrString::Int(MANAGEMENT_PORT)),
                        "{}",
                        service.name_any()
                    );
                }
                services += 1;
            }
            Resource::Ingress(ingress) => {
                let rules = ingress.spec.as_ref().unwrap().rules.iter().flatten();
                for path in rules.flat_map(|r| &r.http.as_ref().unwrap().paths) {
                    let port = path
                        .backend
                        .service
                        .as_ref()
                        .unwrap()
                        .port
                        .as_ref()
                        .unwrap();
                    assert_ne!(port.number, Some(MANAGEMENT_PORT));
                    assert_ne!(port.name.as_deref(), Some("management"));
                }
            }
            _ => {}
        }
    }
    assert_eq!(services, 5, "the component Services are built");
}

/// Managed dependencies are sized to their limits (the defaults here): RabbitMQ's memory high
/// watermark is 60 % of its memory limit, absolute; Redis's `maxmemory` 80 % with LRU
/// eviction; Kafka keeps at most 70 % of its volume over the services' 12 partitions. Liveness
/// of MongoDB, RabbitMQ and Kafka is a TCP check of the client port (no mongosh, Erlang VM or
/// JVM started by the probe). Each client Service exposes only the client port, the one port
/// the dependency's NetworkPolicy admits.
#[test]
fn dependencies_are_sized_to_their_limits_and_serve_only_the_port_their_policy_admits() {
    use crate::config::DependencyKind;
    use crate::storage::quantity_bytes;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let built = objects(fixed(1));
    let limit = |kind: DependencyKind| {
        let limits = kind.default_resources().limits.unwrap();
        quantity_bytes(&limits["memory"].0).unwrap() as u64
    };
    for kind in DependencyKind::ALL {
        let name = format!("chat-{}", kind.name());
        let Some(Resource::StatefulSet(set)) = find(&built, "StatefulSet", &name) else {
            panic!("no {name}");
        };
        let container = first_container(&set.spec.as_ref().unwrap().template);
        let env = |var: &str| {
            container
                .env
                .iter()
                .flatten()
                .find(|e| e.name == var)
                .and_then(|e| e.value.clone())
                .unwrap_or_else(|| panic!("{name}: no {var}"))
        };
        let command = container
            .command
            .iter()
            .chain(container.args.iter())
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        match kind {
            DependencyKind::RabbitMq => assert_eq!(
                env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"),
                format!(
                    "-rabbit vm_memory_high_watermark {{absolute,{}}}",
                    limit(kind) * 6 / 10
                )
            ),
            DependencyKind::Redis => assert!(
                command.contains(&format!(
                    "--maxmemory {} --maxmemory-policy allkeys-lru",
                    limit(kind) * 8 / 10
                )),
                "{command}"
            ),
            DependencyKind::Kafka => {
                let volume = quantity_bytes(kind.default_storage()).unwrap();
                let kept = env("KAFKA_LOG_RETENTION_BYTES").parse::<f64>().unwrap() * 12.0;
                assert!(
                    kept <= volume * 0.7 && kept > volume * 0.69,
                    "{kept} of {volume}"
                );
            }
            DependencyKind::MongoDb => {}
        }
        let client_port = kind.port();
        let liveness = container.liveness_probe.as_ref().unwrap();
        if kind == DependencyKind::Redis {
            assert!(liveness.exec.is_some(), "redis-cli is a small process");
        } else {
            let tcp = liveness.tcp_socket.as_ref().expect("a TCP liveness check");
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| Some(&tcp.port) == p.name.clone().map(IntOrString::String).as_ref())
                .expect("the probe's port is a container port");
            assert_eq!(named.container_port, client_port, "{name}");
            assert!(liveness.exec.is_none());
        }

        let Some(Resource::Service(service)) = find(&built, "Service", &name) else {
            panic!("no Service {name}");
        };
        let served: Vec<i32> = service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .flatten()
            .map(|p| p.port)
            .collect();
        assert_eq!(served, [client_port], "{name}");
        let Some(Resource::NetworkPolicy(policy)) = find(&built, "NetworkPolicy", &name) else {
            panic!("no NetworkPolicy {name}");
        };
        let admitted: Vec<IntOrString> = policy
            .spec
            .as_ref()
            .unwrap()
            .ingress
            .iter()
            .flatten()
            .flat_map(|rule| rule.ports.iter().flatten())
            .filter_map(|p| p.port.clone())
            .collect();
        assert_eq!(admitted, [IntOrString::Int(client_port)], "{name}");
    }
}

/// Every component has a NetworkPolicy denying all ingress but its allowances: the API port
/// of gateway and chat from `clientPeers`, every component's management port from
/// `monitoringPeers`, nothing else (auth, group and message take no API traffic). Without
/// peers a rule admits every source. The components trust `X-Forwarded-For` only behind an
/// Ingress (and then from whoever `clientPeers` admits).
#[test]
fn component_policies_deny_all_but_the_api_port_from_clients_and_the_management_port() {
    use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let peer = |namespace: &str| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                namespace.to_string(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut with_peers = fixed(1);
    with_peers.network_policy = Some(crate::crd::NetworkPolicySpec {
        client_peers: vec![peer("ingress-nginx")],
        monitoring_peers: vec![peer("monitoring")],
    });
    with_peers.ingress = Some(crate::crd::IngressSpec::default());
    for (spec, clients, monitoring, behind_ingress) in [
        (fixed(1), None, None, "false"),
        (
            with_peers,
            Some(vec![peer("ingress-nginx")]),
            Some(vec![peer("monitoring")]),
            "true",
        ),
    ] {
        let built = objects(spec);
        for role in ["gateway", "auth", "chat", "group", "message"] {
            let name = format!("chat-{role}");
            let Some(Resource::NetworkPolicy(policy)) = find(&built, "NetworkPolicy", &name) else {
                panic!("no NetworkPolicy {name}");
            };
            let spec = policy.spec.as_ref().unwrap();
            assert_eq!(
                spec.policy_types.as_deref(),
                Some(&["Ingress".to_string()][..])
            );
            let selector = spec.pod_selector.as_ref().unwrap().match_labels.as_ref();
            assert_eq!(selector.unwrap()["app.kubernetes.io/component"], role);
            let rules: Vec<(i32, Option<Vec<NetworkPolicyPeer>>)> = spec
                .ingress
                .iter()
                .flatten()
                .map(|rule| {
                    let ports = rule.ports.as_ref().unwrap();
                    assert_eq!(ports.len(), 1, "{name}");
                    let Some(IntOrString::Int(port)) = ports[0].port else {
                        panic!("{name}: a numbered port");
                    };
                    (port, rule.from.clone())
                })
                .collect();
            let mut expected = Vec::new();
            if matches!(role, "gateway" | "chat") {
                expected.push((HTTP_PORT, clients.clone()));
            }
            expected.push((MANAGEMENT_PORT, monitoring.clone()));
            assert_eq!(rules, expected, "{name}");
        }
        let Some(Resource::ConfigMap(config)) = find(&built, "ConfigMap", "chat-config") else {
            panic!("the ConfigMap is built");
        };
        assert_eq!(
            config.data.as_ref().unwrap()["TRUST_FORWARDED_FOR"],
            behind_ingress
        );
    }
}

/// Every object the operator builds (the migration Job and the autoscaler included) is owned
/// by the ChatDeployment as its controller, with `blockOwnerDeletion`: a foreground deletion
/// of the ChatDeployment waits for them.
#[test]
fn every_built_object_is_controlled_by_the_chat_deployment_and_blocks_its_deletion() {
    let spec = autoscaled();
    let mut built = objects(spec.clone());
    built.push(Resource::Job(migration_job(&cfg(spec))));
    assert!(built
        .iter()
        .any(|o| matches!(o, Resource::HorizontalPodAutoscaler(_))));
    for object in &built {
        let json = object.to_json();
        let owners = json["metadata"]["ownerReferences"].as_array();
        let owners = owners.unwrap_or_else(|| panic!("{} has no owner", object.name()));
        assert_eq!(owners.len(), 1, "{}", object.name());
        let owner = &owners[0];
        assert_eq!(
            (
                &owner["kind"],
                &owner["name"],
                &owner["controller"],
                &owner["blockOwnerDeletion"]
            ),
            (
                &json!("ChatDeployment"),
                &json!("chat"),
                &json!(true),
                &json!(true)
            ),
            "{}",
            object.name()
        );
    }
}

/// The README's table of what the minimal example creates says which components each
/// dependency's NetworkPolicy admits: it says what the builder does (it once left out the
/// gateway, which reads and writes uploads in MongoDB itself).
#[test]
fn the_readmes_network_policy_row_is_what_is_built() {
    use crate::config::DependencyKind;
    let readme = include_str!("../../README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with("| NetworkPolicies |"))
        .expect("the README's table has a NetworkPolicies row");
    let built = objects(fixed(1));
    for kind in DependencyKind::ALL {
        let name = format!("chat-{}", kind.name());
        let said = row
            .split_once(&format!("`{name}` (from "))
            .and_then(|(_, rest)| rest.split_once(')'))
            .unwrap_or_else(|| panic!("the row names {name}: {row}"))
            .0;
        let mut documented: Vec<String> = if said == "all five" {
            Component::ALL
                .iter()
                .map(|c| c.role().to_string())
                .collect()
        } else {
            said.replace(" and the migration Job", ", migrate")
                .replace(" and ", ", ")
                .split(", ")
                .map(str::to_string)
                .collect()
        };
        let mut admitted = admitted_by(&built, &name);
        documented.sort();
        admitted.sort();
        assert_eq!(documented, admitted, "{name}");
    }
}

/// The arguments of the main container of the StatefulSet `name`, joined.
fn dependency_args(built: &[Resource], name: &str) -> String {
    let Some(Resource::StatefulSet(set)) = find(built, "StatefulSet", name) else {
        panic!("no StatefulSet {name}");
    };
    let spec = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.containers[0]
        .args
        .iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The components (and the migration Job) the NetworkPolicy `name` admits.
fn admitted_by(built: &[Resource], name: &str) -> Vec<String> {
    let Some(Resource::NetworkPolicy(policy)) = find(built, "NetworkPolicy", name) else {
        panic!("no NetworkPolicy {name}");
    };
    super::admitted_components(policy)
}

/// `factsRelay: Redis` tells every component (`FACTS_RELAY` in the shared ConfigMap) and gives
/// group and message, which publish facts, a Redis URL and a way through Redis's
/// NetworkPolicy; by default (Kafka) they have neither.
#[test]
fn the_redis_facts_relay_gives_group_and_message_redis() {
    use crate::crd::FactsRelay;
    for (relay, said, with_redis) in [
        (None, None, false),
        (Some(FactsRelay::Kafka), None, false),
        (Some(FactsRelay::Redis), Some("redis"), true),
    ] {
        let built = objects(ChatDeploymentSpec {
            version: "0.1.0".into(),
            facts_relay: relay,
            ..Default::default()
        });
        let Some(Resource::ConfigMap(config)) = find(&built, "ConfigMap", "chat-config") else {
            panic!("the ConfigMap is built");
        };
        // Absent on Kafka, the services' default: the ConfigMap (and so every pod's config
        // hash) is what it was before the relay existed, and an operator upgrade rolls nothing.
        let data = config.data.as_ref().unwrap();
        assert_eq!(data.get("FACTS_RELAY").map(String::as_str), said);
        let redis = dependency_args(&built, "chat-redis");
        assert_eq!(redis.contains("'&chat.chat.facts'"), with_redis, "{redis}");
        assert_eq!(redis.contains("'+subscribe'"), with_redis, "{redis}");
        let admitted = admitted_by(&built, "chat-redis");
        for role in ["gateway", "auth", "chat", "group", "message"] {
            let env = &app_container(deployment(&built, role)).env;
            let has_redis = env.iter().flatten().any(|e| e.name == "REDIS_URL");
            let needs = with_redis || !["group", "message"].contains(&role);
            assert_eq!(has_redis, needs, "{role} with {relay:?}");
            assert_eq!(
                admitted.contains(&role.to_string()),
                needs,
                "{role} with {relay:?}"
            );
        }
    }
}

/// Both Ingresses serve the same host and certificate, but only the gateway's carries
/// cert-manager's annotations: on both, cert-manager would make two Certificates for the one
/// Secret. Other user annotations reach both.
#[test]
fn cert_manager_annotations_go_on_one_ingress_only() {
    let mut spec = fixed(1);
    spec.ingress = Some(crate::crd::IngressSpec {
        host: Some("chat.example.com".into()),
        tls_secret_name: Some("chat-tls".into()),
        annotations: BTreeMap::from([
            (
                "cert-manager.io/cluster-issuer".to_string(),
                "letsencrypt".to_string(),
            ),
            ("example.com/team".to_string(), "chat".to_string()),
        ]),
        ..Default::default()
    });
    let built = objects(spec);
    let annotations = |name: &str| {
        let Some(Resource::Ingress(ingress)) = find(&built, "Ingress", name) else {
            panic!("Ingress {name} is built");
        };
        ingress.metadata.annotations.clone().unwrap()
    };
    let (gateway, chat) = (annotations("chat"), annotations("chat-socketio"));
    assert_eq!(gateway["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert!(
        !chat.contains_key("cert-manager.io/cluster-issuer"),
        "{chat:?}"
    );
    assert_eq!(chat["example.com/team"], "chat");
    assert_eq!(gateway["example.com/team"], "chat");
}

/// The Secrets a pod template's containers read, by name.
fn secrets_read(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Vec<String> {
    let spec = template.spec.as_ref().unwrap();
    let mut names: Vec<String> = spec
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|r| r.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn components_and_the_migration_connect_as_the_application_user_never_as_an_administrator() {
    let spec = ChatDeploymentSpec {
        version: "0.1.0".into(),
        ..Default::default()
    };
    let objects = objects(spec.clone());
    for component in Component::ALL {
        let role = component.role();
        let template = &deployment(&objects, role).spec.as_ref().unwrap().template;
        for secret in secrets_read(template) {
            assert!(
                secret.ends_with("-app"),
                "{role} reads {secret}, not an application user's Secret"
            );
        }
        let env = &template.spec.as_ref().unwrap().containers[0].env;
        for var in env.iter().flatten().filter(|e| e.name.ends_with("_URI")) {
            let uri = var.value.as_deref().unwrap();
            assert!(uri.contains("://chat-app:$("), "{role}: {uri}");
        }
    }
    let job = migration_job(&cfg(spec));
    let secrets = secrets_read(&job.spec.unwrap().template);
    assert_eq!(secrets, ["chat-mongodb-app"]);
}

#[test]
fn each_dependency_keeps_its_administrator_and_creates_the_application_user() {
    let objects = objects(fixed(1));
    let set = |name: &str| match find(&objects, "StatefulSet", &format!("chat-{name}")) {
        Some(Resource::StatefulSet(s)) => s.spec.clone().unwrap().template,
        _ => panic!("no StatefulSet {name}"),
    };
    for (name, admin) in [
        ("mongodb", "chat-mongodb"),
        ("rabbitmq", "chat-rabbitmq"),
        ("redis", "chat-redis"),
    ] {
        let template = set(name);
        assert_eq!(
            secrets_read(&template),
            [admin.to_string(), format!("{admin}-app")],
            "{name}"
        );
        // A new application password restarts the dependency, which sets it.
        assert!(template
            .metadata
            .unwrap()
            .annotations
            .unwrap()
            .contains_key(CONFIG_HASH_ANNOTATION));
    }
    assert_eq!(secrets_read(&set("kafka")), ["chat-kafka"]);

    let container = |name: &str| set(name).spec.unwrap().containers.remove(0);
    let post_start = |name: &str| {
        let c = container(name);
        c.lifecycle?.post_start?.exec?.command
    };
    let mongodb = post_start("mongodb").unwrap().join(" ");
    assert!(mongodb.contains(r#"roles = [{role: "readWrite", db: "scalable_chat"}]"#));
    assert!(mongodb.contains("process.env.MONGODB_APP_PASSWORD"));
    let rabbitmq = post_start("rabbitmq").unwrap().join(" ");
    assert!(rabbitmq.contains(
        r"set_permissions -p '/' 'chat-app' '^chat\.rpc\.' '^amq\.default$' '^chat\.rpc\.'"
    ));
    assert!(rabbitmq.contains("set_user_tags 'chat-app' &&"), "no tags");
    assert!(post_start("redis").is_none() && post_start("kafka").is_none());
    let redis = container("redis").args.unwrap().join(" ");
    assert!(redis.contains(r#"--user chat-app reset on ">$REDIS_APP_PASSWORD" '~chat:*' 'resetchannels' '-@all' '+ping'"#));
}

#[test]
fn an_external_dependency_gets_no_application_user() {
    use crate::crd::{DependenciesSpec, Dependency, ExternalDependency, SecretKeyReference};
    let spec = ChatDeploymentSpec {
        version: "0.1.0".into(),
        dependencies: Some(DependenciesSpec {
            redis: Some(Dependency::External(ExternalDependency {
                uri_secret: SecretKeyReference {
                    name: "mine".into(),
                    key: "url".into(),
                },
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cfg = cfg(spec);
    assert!(!cfg
        .generated_secret_names()
        .contains(&"chat-redis-app".to_string()));
    let objects = build(&cfg, &SecretDigests::default(), &Versions::target(&cfg));
    let template = &deployment(&objects, "gateway")
        .spec
        .as_ref()
        .unwrap()
        .template;
    assert!(secrets_read(template).contains(&"mine".to_string()));
}
