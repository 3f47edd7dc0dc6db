//! The OpenAPI document is the contract: schemathesis (PyPI, installed by `scripts/infra.sh
//! tools`) generates requests from `GET /openapi.json`, valid and invalid, follows the document's
//! links from one call to the next, and checks every answer against the document with all of its
//! checks (status codes, bodies, headers, schema-valid data accepted, schema-invalid data
//! refused, no server errors). Run against the separate roles on the real servers, and against
//! `chat-server all` in the embedded pass. Any finding fails the test; the allowances it may use
//! are in `tests/contract/schemathesis.toml`, each with its reason.

use std::path::PathBuf;
use std::time::Duration;

use chat_tests::RealtimeStack;

/// `name` from the environment, else `default`. `CHAT_CONTRACT_EXAMPLES` (requests generated per
/// operation and phase, 30) and `CHAT_CONTRACT_SEED` (1: CI's run is reproducible) widen the
/// search by hand.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::test]
async fn the_server_answers_exactly_as_its_openapi_document_says() {
    let venv = std::env::var("CHAT_TOOLS_VENV")
        .expect("CHAT_TOOLS_VENV: run `eval \"$(scripts/infra.sh tools)\"` (scripts/test.sh does)");
    let schemathesis = PathBuf::from(venv).join("bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "no {} (scripts/infra.sh tools installs it)",
        schemathesis.display()
    );
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contract/schemathesis.toml");
    // No request limits: the fuzzer sends thousands of requests from one address and user.
    let stack = RealtimeStack::start(&[
        ("API_MAX_REQUESTS_PER_ADDRESS", "0"),
        ("API_MAX_REQUESTS_PER_USER", "0"),
        ("LOGIN_MAX_ATTEMPTS_PER_EMAIL", "1000000"),
        ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "1000000"),
    ])
    .await;
    let api = stack.api();
    let caller = api.user("fuzzer").await;
    let run = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", api.base)])
        .args([
            "--checks",
            "all",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .args(["--request-timeout", "15"])
        .args(["--max-examples", &setting("CHAT_CONTRACT_EXAMPLES", "30")])
        .args(["--seed", &setting("CHAT_CONTRACT_SEED", "1")])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", caller.token),
        ])
        // Its replay cache (`.schemathesis/`) goes to a scratch directory, not the checkout.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis did not finish within 10 minutes")
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found the server and its document disagreeing ({}):\n{report}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
