//! On a real cluster: upgrade a running ChatDeployment from one image tag to another while a
//! client keeps sending, then check that every acknowledged message is in history, once.
//!
//! Runs only when `CHAT_E2E_UPGRADE_TO` names the version to upgrade to and `kubectl` reaches a
//! cluster where the ChatDeployment `CHAT_E2E_NAME` (default `chat`) in `CHAT_E2E_NAMESPACE`
//! (default `chat`) is running and serves its API at `CHAT_E2E_URL` (default
//! `http://localhost`, the kind + Tilt setup of the README). Both images must be in the cluster
//! (`kind load docker-image …`). Otherwise it says why it skipped and passes.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_tests::{assert_stored_once, unique, Api, ChatClient};
use serde_json::json;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn kubectl(args: &[&str]) -> Option<String> {
    let out = Command::new("kubectl").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Connects again, retrying for up to a minute while the ingress has no ready chat pod.
async fn reconnect(url: &str, token: &str) -> ChatClient {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match ChatClient::try_connect_url(url, json!({"token": token})).await {
            Ok(client) => return client,
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                panic!("no chat pod took the client back within a minute: {e}")
            }
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_while_a_client_sends_loses_no_acknowledged_message() {
    let Ok(target) = std::env::var("CHAT_E2E_UPGRADE_TO") else {
        println!("skipping the upgrade e2e: set CHAT_E2E_UPGRADE_TO to the version to upgrade to");
        return;
    };
    let (namespace, name) = (
        env_or("CHAT_E2E_NAMESPACE", "chat"),
        env_or("CHAT_E2E_NAME", "chat"),
    );
    let chat = |path: &str| {
        kubectl(&[
            "-n",
            &namespace,
            "get",
            "chatdeployment",
            &name,
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let Some(from) = chat("{.status.version}") else {
        println!("skipping the upgrade e2e: kubectl does not reach a cluster with chatdeployment {namespace}/{name}");
        return;
    };
    assert_ne!(from, target, "the ChatDeployment already runs {target}");
    let base = env_or("CHAT_E2E_URL", "http://localhost");
    let api = Api::at(&base);
    let ada = api.user(&unique("ada")).await;
    let bob = api.user(&unique("bob")).await;
    let group = api.group(&ada, "Upgrade", &[&bob]).await;

    // The sender resends what was not acknowledged, with the same clientMessageId, after
    // reconnecting: what a real client does when its chat pod goes away.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, ids, g, url, token) = (
        done.clone(),
        acknowledged.clone(),
        group.clone(),
        base.clone(),
        ada.token.clone(),
    );
    let sender = tokio::spawn(async move {
        let mut client = ChatClient::connect_url(&url, json!({"token": token})).await;
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let data = json!({"groupId": g, "content": format!("m{n}"), "clientMessageId": format!("u{n}")});
            match client.try_request("chat.message.send", data).await {
                Some(ack) if ack["ok"] == true => {
                    ids.lock()
                        .unwrap()
                        .push(ack["message"]["id"].as_str().unwrap().to_string());
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => client = reconnect(&url, &token).await,
            }
        }
    });

    tokio::time::sleep(Duration::from_secs(5)).await;
    let patch = format!(r#"{{"spec":{{"version":"{target}"}}}}"#);
    kubectl(&[
        "-n",
        &namespace,
        "patch",
        "chatdeployment",
        &name,
        "--type",
        "merge",
        "-p",
        &patch,
    ])
    .expect("kubectl patch");
    let start = Instant::now();
    while chat("{.status.version}").as_deref() != Some(target.as_str())
        || chat("{.status.conditions[?(@.type==\"Ready\")].status}").as_deref() != Some("True")
    {
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the upgrade did not finish in 15 minutes"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.await.unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = api.all_messages(&group, &ada).await;
    assert_stored_once(&acknowledged, &stored);
    println!(
        "upgraded {from} -> {target} in {:?}; {} messages acknowledged, all in history",
        start.elapsed(),
        acknowledged.len()
    );
}
