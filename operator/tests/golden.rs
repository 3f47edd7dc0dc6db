//! The build step as golden files: for representative ChatDeployments, every object the
//! operator would write, compared with `tests/golden/<case>.yaml` and validated against the
//! Kubernetes 1.30 schemas.

mod common;

use chat_operator::build::build;
use chat_operator::config::{validate, Component};
use chat_operator::crd::ChatDeployment;
use chat_operator::secrets::{
    generated_secrets, key_pair_pem, KeyPairPem, SecretDigests, SecretGenerator,
};
use chat_operator::status;
use chat_operator::upgrade::{Release, Versions};
use chrono::TimeZone;
use ring::signature::{Ed25519KeyPair, KeyPair};

const REGENERATE: &str = "UPDATE_GOLDEN=1 cargo test -p chat-operator --test golden";

/// Stable values instead of random ones, so the files do not change between runs.
struct FixedGenerator(u32);

impl SecretGenerator for FixedGenerator {
    fn password(&mut self) -> String {
        self.0 += 1;
        format!("golden-password-{}", self.0)
    }
    fn ed25519(&mut self) -> KeyPairPem {
        let seed = [7u8; 32];
        // PKCS#8 v1 (RFC 8410) of an Ed25519 seed.
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&seed);
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        key_pair_pem(&pkcs8, pair.public_key().as_ref())
    }
    fn kafka_cluster_id(&mut self) -> String {
        "Z29sZGVuLWNsdXN0ZXItaWQ".into()
    }
}

fn load(path: &str) -> ChatDeployment {
    let text = std::fs::read_to_string(common::crate_dir().join(path)).unwrap();
    // Through JSON, as the API server delivers it: serde_yaml wants YAML tags for enums.
    let value: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let mut cd: ChatDeployment = serde_json::from_value(value).unwrap();
    cd.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    cd.metadata.uid = Some("6f1c3b1e-0000-4000-8000-000000000001".into());
    cd.metadata.generation = Some(1);
    cd
}

/// `value` with every object's keys sorted. Whether serde_json keeps insertion order depends on
/// which crates share the build (bson turns on `preserve_order` in the workspace), so golden
/// files must not depend on it.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(canonical).collect())
        }
        other => other,
    }
}

/// What the operator writes for `cd`, as multi-document YAML, with every workload at the
/// spec's version.
fn render(cd: &ChatDeployment) -> String {
    render_with(cd, Versions::target)
}

/// What the operator writes for `cd` when `versions` says what each workload runs.
fn render_with(
    cd: &ChatDeployment,
    versions: impl Fn(&chat_operator::config::ValidatedConfig) -> Versions,
) -> String {
    let now = chrono::Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    if cd.spec.paused {
        return format!(
            "# paused: no object is written; only this status is patched\n{}",
            serde_yaml::to_string(&status::paused(cd, now)).unwrap()
        );
    }
    let cfg = validate(cd).expect("the fixture is valid");
    let secrets = generated_secrets(&cfg, &mut FixedGenerator(0), now);
    let mut digests = SecretDigests::default();
    secrets.iter().for_each(|s| digests.insert_secret(s));
    let mut docs: Vec<String> = secrets
        .iter()
        .map(|s| serde_yaml::to_string(s).unwrap())
        .collect();
    docs.extend(
        build(&cfg, &digests, &versions(&cfg))
            .iter()
            .map(|o| serde_yaml::to_string(&canonical(o.to_json())).unwrap()),
    );
    docs.join("---\n")
}

fn check(case: &str, input: &str) {
    check_rendered(case, input, render);
}

fn check_rendered(case: &str, input: &str, render: impl Fn(&ChatDeployment) -> String) {
    let cd = load(input);
    let rendered = render(&cd);
    let golden = common::crate_dir().join(format!("tests/golden/{case}.yaml"));
    common::assert_golden(&golden, &rendered, REGENERATE);
    if !cd.spec.paused {
        common::validate_manifests(&golden);
    }
}

#[test]
fn minimal_example_builds_the_whole_stack() {
    check("minimal", "examples/minimal.yaml");
}

#[test]
fn everything_set_example_builds_overrides_ingress_and_scaling() {
    check("full", "examples/full.yaml");
}

#[test]
fn external_dependencies_are_only_wired_in() {
    check("external", "tests/fixtures/external.yaml");
}

#[test]
fn autoscaled_components_get_an_hpa_and_no_replicas() {
    check("autoscaling", "tests/fixtures/autoscaling.yaml");
}

#[test]
fn paused_writes_only_its_status() {
    check("paused", "tests/fixtures/paused.yaml");
}

#[test]
fn stopped_scales_everything_to_zero_without_autoscalers_or_budgets() {
    check("stopped", "tests/fixtures/stopped.yaml");
}

#[test]
fn mid_upgrade_holds_back_the_components_not_reached_yet() {
    check_rendered("upgrade", "tests/fixtures/upgrade.yaml", |cd| {
        render_with(cd, |cfg| {
            let mut versions = Versions::target(cfg);
            for component in [
                Component::Group,
                Component::Auth,
                Component::Chat,
                Component::Gateway,
            ] {
                versions.components.insert(
                    component,
                    Release {
                        version: "0.1.0".into(),
                        image: "ghcr.io/scalable-chat/chat-server:0.1.0".into(),
                    },
                );
            }
            versions.migration = true;
            versions
        })
    });
}
