//! The committed CRD is exactly what `chat-operator crd` prints, and the API server's own
//! schema accepts it.

mod common;

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = common::crate_dir().join("../crds/chatdeployment.yaml");
    common::assert_golden(
        &path,
        &chat_operator::crd_yaml(),
        "cargo run -p chat-operator -- crd > crds/chatdeployment.yaml",
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
