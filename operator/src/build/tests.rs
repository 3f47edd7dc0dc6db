//! The desired-state builder on its own: scaling, `stopped`, versions held back during an
//! upgrade, pod lifecycle and the migration Job.

use k8s_openapi::api::core::v1::Container;

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
    &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
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

#[test]
fn the_longest_name_still_gives_a_valid_job_name() {
    let mut cd = ChatDeployment::new(&"c".repeat(crate::config::MAX_NAME_LENGTH), fixed(1));
    cd.metadata.namespace = Some("default".into());
    let job = migration_job(&validate(&cd).unwrap());
    assert!(job.metadata.name.unwrap().len() <= 63);
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
