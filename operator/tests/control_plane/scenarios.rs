//! The scenarios, each a test on its own namespace.

use std::time::Duration;

use chat_operator::build::{build, Resource};
use chat_operator::config::validate;
use chat_operator::crd::ChatDeployment;
use chat_operator::secrets::{SecretDigests, SecretGenerator, SystemGenerator};
use chat_operator::upgrade::Versions;
use kube::api::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Api, ResourceExt};

use super::common;
use super::harness::{owned_and_labelled, Stack};

/// Longest wait for a stack to become Ready: PVC binding by the real binder, the dependencies,
/// the migration Job, then the components. A guard against hangs, not a performance target.
const READY_WITHIN: Duration = Duration::from_secs(180);

fn read(path: &str) -> String {
    std::fs::read_to_string(common::crate_dir().join(path)).unwrap()
}

/// Every object the operator builds for `cd` at its target version exists, is labelled and is
/// owned by it.
async fn assert_objects_owned(stack: &Stack, cd: &ChatDeployment) {
    let cfg = validate(cd).expect("a valid spec");
    let uid = cd.uid().expect("the ChatDeployment has a uid");
    for object in build(&cfg, &SecretDigests::default(), &Versions::target(&cfg)) {
        if matches!(object, Resource::Job(_)) {
            continue; // the migration Job is pruned once it succeeded
        }
        let ar = object.api_resource();
        let gvk = GroupVersionKind::gvk(&ar.group, &ar.version, &ar.kind);
        let (resource, _) = pinned_kind(&stack.admin, &gvk).await.unwrap();
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(stack.admin.clone(), &stack.namespace, &resource);
        let live = api
            .get(object.name())
            .await
            .unwrap_or_else(|e| panic!("{} {} was not created: {e}", ar.kind, object.name()));
        owned_and_labelled(&live, &uid).unwrap_or_else(|e| panic!("{}: {e}", ar.kind));
    }
}

/// Apply the spec in `path` (with `secrets` created first) and wait for `Ready=True` with every
/// object created, owned and labelled.
async fn reaches_ready(test: &str, path: &str, secrets: &[(&str, &[(&str, &str)])]) -> Stack {
    let mut stack = Stack::new(test).await;
    stack.start_operator("chat-operator-0");
    for (name, data) in secrets {
        stack.create_secret(name, data).await;
    }
    stack.apply_chat_yaml(&read(path), "chat").await;
    let cd = stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
    assert_objects_owned(&stack, &cd).await;
    let status = cd.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, cd.metadata.generation);
    assert_eq!(status.version.as_deref(), Some(cd.spec.version.as_str()));
    stack
}

#[tokio::test]
async fn minimal_example_reaches_ready() {
    reaches_ready("minimal", "examples/minimal.yaml", &[]).await;
}

#[tokio::test]
async fn chart_example_reaches_ready() {
    reaches_ready(
        "chart-example",
        "../charts/chat-operator/examples/chatdeployment.yaml",
        &[],
    )
    .await;
}

#[tokio::test]
async fn full_example_reaches_ready() {
    reaches_ready(
        "full",
        "examples/full.yaml",
        &[("chat-mongodb-admin", &[("password", "a-url-safe-password")])],
    )
    .await;
}

#[tokio::test]
async fn autoscaling_spec_reaches_ready() {
    reaches_ready("autoscaling", "tests/fixtures/autoscaling.yaml", &[]).await;
}

#[tokio::test]
async fn external_dependencies_spec_reaches_ready() {
    let key = SystemGenerator::default().ed25519();
    reaches_ready(
        "external",
        "tests/fixtures/external.yaml",
        &[
            (
                "chat-external",
                &[
                    ("mongodb-uri", "mongodb://mongo.example:27017/chat"),
                    ("rabbitmq-uri", "amqp://u:p@rabbit.example:5672/%2f"),
                    ("kafka-brokers", "kafka.example:9092"),
                    ("redis-url", "redis://redis.example:6379"),
                ],
            ),
            (
                "chat-signing-key",
                &[
                    ("private.pem", key.private_pem.as_str()),
                    ("public.pem", key.public_pem.as_str()),
                ],
            ),
        ],
    )
    .await;
}
