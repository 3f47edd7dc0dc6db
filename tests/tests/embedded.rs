//! `chat-server all` with nothing installed: the embedded adapters keep their data across a
//! restart, and a SIGKILL during a stream of sends loses no acknowledged message. These run in
//! every test pass (they start their own embedded deployment).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_tests::{assert_stored_once, Api, ChatClient, Deployment};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_stream_of_sends_keeps_every_acknowledged_message() {
    let deployment = Deployment::embedded(&[]);
    let mut all = deployment.spawn("all").await;
    let api = Api::new(all.port);
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Durable", &[&bob]).await;

    let a = ChatClient::connect(all.port, json!({"token": ada.token})).await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let (ids, g) = (acknowledged.clone(), group.clone());
    let sender = tokio::spawn(async move {
        for n in 0..500 {
            let data = json!({"groupId": g, "content": format!("m{n}"), "clientMessageId": format!("c{n}")});
            match a.try_request("chat.message.send", data).await {
                Some(ack) if ack["ok"] == true => ids
                    .lock()
                    .unwrap()
                    .push(ack["message"]["id"].as_str().unwrap().to_string()),
                Some(ack) if ack["error"]["code"] == "rate_limited" => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => break, // the server is gone
            }
        }
    });
    chat_tests::within(Duration::from_secs(30), "40 sends acknowledged", async {
        while acknowledged.lock().unwrap().len() < 40 {
            assert!(
                !sender.is_finished(),
                "the sender stopped before 40 acknowledgements"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    tokio::task::block_in_place(|| all.kill());
    sender.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();

    // Same data directory, new process: the account, the signing key and the messages are there.
    let all = deployment.spawn("all").await;
    let api = Api::new(all.port);
    let me = api.get("/auth/me", Some(&ada.token)).await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "the old token still verifies: {}",
        me.text
    );
    let stored = api.all_messages(&group, &ada).await;
    assert_stored_once(&acknowledged, &stored);
    let last_seq = stored
        .last()
        .map(|m| m["seq"].as_i64().unwrap())
        .unwrap_or(0);
    assert_eq!(
        last_seq as usize,
        stored.len(),
        "sequence numbers have gaps"
    );
    println!(
        "{} acknowledged before SIGKILL, {} stored after the restart",
        acknowledged.len(),
        stored.len()
    );
}

#[tokio::test]
async fn all_without_infrastructure_says_so_and_keeps_data_across_restarts() {
    let deployment = Deployment::embedded(&[]);
    let mut first = deployment.spawn("all").await;
    let api = Api::new(first.port);
    let session = api
        .register("Grace", "Hopper", "grace@example.com", "correct horse")
        .await;
    assert!(session["accessToken"].is_string());
    let status = first
        .terminate(Duration::from_secs(15))
        .expect("stops on SIGTERM");
    assert!(status.success());
    let second = deployment.spawn("all").await;
    let api = Api::new(second.port);
    let login = api
        .post(
            "/auth/login",
            json!({"email": "grace@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let ready = api.get("/readyz?verbose", None).await;
    assert_eq!(
        ready.body["dependencies"]["database"], "ok",
        "{}",
        ready.text
    );
    assert!(deployment.data_dir.join("chat.db").is_file());
    drop(second);
}

/// A message's way (socket → command → store → fact → emit) is timed hop by hop on `/metrics`
/// (`chat_message_hop_seconds`), each hop counting it once (`all` runs one chat replica).
#[tokio::test]
async fn a_send_is_timed_at_every_hop_on_metrics() {
    let deployment = Deployment::embedded(&[]);
    let all = deployment.spawn("all").await;
    let api = Api::new(all.port);
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Timed", &[&bob]).await;
    let a = ChatClient::connect(all.port, json!({"token": ada.token})).await;
    let mut b = ChatClient::connect(all.port, json!({"token": bob.token})).await;
    let ack = a.send(&group, "hello", "c1").await;
    assert_eq!(ack["ok"], true, "{ack}");
    b.next("chat.message.incoming", Duration::from_secs(10))
        .await;
    let hops = [
        "command_queued",
        "command_log",
        "store_queued",
        "store",
        "fact_log",
        "emit",
    ];
    let management = Api::new(all.management_port);
    let counts = |text: &str| -> Vec<Option<u64>> {
        hops.iter()
            .map(|hop| {
                let series = format!("chat_message_hop_seconds_count{{hop=\"{hop}\"}} ");
                text.lines()
                    .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
            })
            .collect()
    };
    // The ack and the delivery may come before the last hops are counted: a few tries.
    let mut text = String::new();
    for _ in 0..50 {
        text = management.get("/metrics", None).await.text;
        if counts(&text).iter().all(|count| *count == Some(1)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not every hop counted the message once: {hops:?} = {:?}\n{text}",
        counts(&text)
    );
}

/// `chat-server` starts itself again without glibc's per-thread caches of freed blocks (after a
/// load run they kept a third of what it had grown by), unless `GLIBC_TUNABLES` already sizes
/// them.
#[tokio::test]
async fn the_server_runs_without_glibcs_thread_caches_unless_told_otherwise() {
    let tunables = |process: &chat_tests::RoleProcess| {
        let pid = process.pid().expect("a spawned process");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        environ
            .split(|byte| *byte == 0)
            .find_map(|variable| variable.strip_prefix(b"GLIBC_TUNABLES="))
            .map(|value| String::from_utf8_lossy(value).into_owned())
    };
    let default = Deployment::embedded(&[]);
    let all = default.spawn("all").await;
    assert_eq!(
        tunables(&all).as_deref(),
        Some("glibc.malloc.tcache_count=0")
    );
    let sized = Deployment::embedded(&[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=3")]);
    let all = sized.spawn("all").await;
    assert_eq!(
        tunables(&all).as_deref(),
        Some("glibc.malloc.tcache_count=3")
    );
}

#[test]
fn a_partial_infrastructure_setting_is_refused_by_name() {
    let mut command = without_infrastructure();
    command
        .env("MONGODB_URI", "mongodb://127.0.0.1:27017/partial")
        .env("PORT", "0")
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("chat-server runs");
    let status = chat_tests::wait_at_most(&mut child, Duration::from_secs(30));
    let _ = child.kill();
    assert!(status.is_some_and(|s| !s.success()), "refused and exited");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("missing: RABBITMQ_URI, KAFKA_BROKERS, REDIS_URL"),
        "{stderr}"
    );
}

#[test]
fn the_first_log_line_names_the_embedded_mode_and_no_broker_is_named() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(chat_tests::unique("chat-first-line-"));
    let mut child = without_infrastructure()
        .env("CHAT_DATA_DIR", &dir)
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("chat-server runs");
    // Read on a thread, so a server that prints nothing fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30));
    let listening = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(30)).ok())
        .find(|line| line["message"] == "listening");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let first = first.expect("a first log line within 30 s");
    let message = first["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("embedded mode"), "{first}");
    // The bus is in-process: no RabbitMQ address (a default nobody set) is reported.
    let listening = listening.expect("a listening line");
    assert!(listening.get("address").is_some(), "{listening}");
    assert!(listening.get("rabbitmq").is_none(), "{listening}");
}

/// `chat-server all` with none of the infrastructure variables set.
fn without_infrastructure() -> std::process::Command {
    let mut command = std::process::Command::new(chat_tests::chat_server_bin());
    command.arg("all");
    for name in chat_domain::config::INFRASTRUCTURE_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// The README's examples are executed, so they cannot drift from the code: every curl example
/// in the README's order against a fresh `chat-server all` on port 5000's place (the kind
/// walkthrough against another, standing in for the Ingress), and every JavaScript example with
/// the stock socket.io-client (tests/js/readme.mjs).
#[tokio::test]
async fn the_readme_examples_run_as_written() {
    let js = chat_tests::package_dir().join("js");
    assert!(
        js.join("node_modules/socket.io-client").exists(),
        "socket.io-client is not installed: run `npm ci --prefix tests/js` (scripts/test.sh does)"
    );
    let readme = chat_tests::package_dir().join("../README.md");
    let (api, ingress) = (Deployment::embedded(&[]), Deployment::embedded(&[]));
    let (api, ingress) = (api.spawn("all").await, ingress.spawn("all").await);
    let run = tokio::process::Command::new("node")
        .arg(js.join("readme.mjs"))
        .arg(&readme)
        .arg(format!("http://127.0.0.1:{}", api.port))
        .arg(format!("http://127.0.0.1:{}", ingress.port))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the README examples finish within 3 minutes")
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "README examples failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The reference web client (examples/web), as a newcomer meets it: `chat-server all` serves it
/// at `/`, and two people in two headless Chromium sessions register, make a group, chat with
/// receipts, typing and presence, send an image and a file, lose the network and catch up, and
/// page back through history (tests/js/webclient.mjs). Screenshots of each stage are kept in
/// `$CHAT_ARTIFACTS_DIR/web-client` (CI's artifacts; by default under the build cache).
#[tokio::test]
async fn the_reference_web_client_works_in_a_real_browser() {
    let js = chat_tests::package_dir().join("js");
    assert!(
        js.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/js` (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let screenshots = std::env::var("CHAT_ARTIFACTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("scalable-chat-artifacts"))
        .join("web-client");
    let deployment = Deployment::embedded(&[]);
    let all = deployment.spawn("all").await;
    let run = tokio::process::Command::new("node")
        .arg(js.join("webclient.mjs"))
        .arg(format!("http://127.0.0.1:{}", all.port))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser run finishes within 3 minutes")
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}screenshots in {}", screenshots.display());
    assert!(
        output.status.success(),
        "the web client failed in the browser:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The bundle `chat-server` compiles in (examples/web/dist) is what the client's sources build
/// to, and the sources type-check: editing `src/` without `npm run build` fails here.
#[test]
fn the_web_client_bundle_is_built_from_its_sources() {
    let web = chat_tests::package_dir().join("../examples/web");
    assert!(
        web.join("node_modules/esbuild").exists(),
        "the web client's tools are not installed: run `npm ci --prefix examples/web` (scripts/test.sh does)"
    );
    for script in ["check:dist", "check"] {
        let output = std::process::Command::new("npm")
            .args(["run", "--silent", script])
            .current_dir(&web)
            .output()
            .expect("npm runs");
        assert!(
            output.status.success(),
            "npm run {script} in examples/web:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The benchmark's load driver (`fanout`, which `scripts/bench-realtime.sh` runs with
/// `BENCH_DRIVER=rust`) in brief against `chat-server all`: its JSON line counts every send
/// acknowledged and delivered to each member, and gives the server's CPU over the measured
/// window. The figures belong to the benchmark; this keeps the driver working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_load_driver_runs_against_chat_server_all() {
    let deployment = Deployment::embedded(&[]);
    let all = deployment.spawn("all").await;
    let (port, pid) = (all.port, all.pid().unwrap());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
            .args([
                "--target",
                "chat",
                "--base",
                &format!("http://127.0.0.1:{port}"),
            ])
            .args(["--groups", "2", "--members", "3", "--rate", "12"])
            .args([
                "--seconds",
                "1",
                "--warmup",
                "0.5",
                "--cpu-pids",
                &pid.to_string(),
            ])
            .output()
            .expect("the driver runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["failed"], 0, "{line}");
    assert_eq!(line["lost_deliveries"], 0, "{line}");
    let acked = line["acked"].as_u64().unwrap();
    assert!(acked > 0, "{line}");
    assert_eq!(line["delivered"].as_u64(), Some(acked * 3), "{line}");
    let cpu = &line["window_cpu"];
    assert!(cpu["cpu_s"].as_f64().is_some_and(|s| s >= 0.0), "{line}");
    assert!(cpu["window_s"].as_f64().is_some(), "{line}");
}
