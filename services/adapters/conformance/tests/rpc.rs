//! RPC over the real RabbitMQ started by `scripts/infra.sh`: round trip, errors, timeouts,
//! bounded concurrency, and recovery when the broker drops connections or restarts. The contract
//! tests run on the in-process bus of `chat-server all` too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::config::Secret;
use chat_domain::rpc::CallContext;
use chat_domain::{Error, ErrorCode};
use chat_embedded::LocalBus;
use chat_ports::rpc::{RpcClient, RpcListener, RpcServer};
use chat_rabbitmq::{AmqpClient, AmqpListener};
use tokio_util::sync::CancellationToken;

chat_domain::rpc_pattern!(Echo, "test.echo", String => String);
chat_domain::rpc_pattern!(Fail, "test.fail", () => ());
chat_domain::rpc_pattern!(Slow, "test.slow", u64 => u64);
chat_domain::rpc_pattern!(Unserved, "test.unserved", () => ());

fn uri() -> Secret {
    Secret::new(
        std::env::var("RABBITMQ_URI")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    )
}

struct Bus {
    client: RpcClient,
    server_name: String,
    in_flight_max: Arc<AtomicUsize>,
    /// Slow requests whose handler started.
    started: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Which bus a test runs on: RabbitMQ, or the in-process bus of `chat-server all`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    RabbitMq,
    InProcess,
}

/// A RabbitMQ server and client (the tests about the broker itself).
async fn bus(prefetch: u16, timeout: Duration) -> Bus {
    bus_on(Transport::RabbitMq, prefetch, timeout).await
}

/// A server answering the test patterns and a client, in a fresh namespace.
async fn bus_on(transport: Transport, prefetch: u16, timeout: Duration) -> Bus {
    let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let shutdown = CancellationToken::new();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight_max = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (now, max, count) = (in_flight.clone(), in_flight_max.clone(), started.clone());
    let server = RpcServer::new()
        .handle::<Echo, _, _>(|s, _| async move { Ok(s) })
        .handle::<Fail, _, _>(|_, _| async { Err(Error::conflict("already there")) })
        .handle::<Slow, _, _>(move |ms, _| {
            let (now, max) = (now.clone(), max.clone());
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(ms)
            }
        });
    let server_name = format!("{namespace}-server");
    let handlers = server.into_handlers();
    let grace = Duration::from_secs(1);
    if transport == Transport::InProcess {
        let local = Arc::new(LocalBus::new(prefetch));
        tokio::spawn(local.clone().serve(handlers, shutdown.clone(), grace));
        return Bus {
            client: RpcClient::new(local, timeout),
            server_name,
            in_flight_max,
            started,
            shutdown,
        };
    }
    let listener = Arc::new(AmqpListener::new(uri(), &namespace, &server_name, prefetch));
    let status = listener.status();
    tokio::spawn(listener.serve(handlers, shutdown.clone(), grace));
    let client = AmqpClient::start(
        uri(),
        &namespace,
        &format!("{namespace}-client"),
        shutdown.clone(),
    );
    let client_status = client.status();
    wait_until(Duration::from_secs(10), || {
        status.is_connected() && client_status.is_connected()
    })
    .await;
    Bus {
        client: RpcClient::new(Arc::new(client), timeout),
        server_name,
        in_flight_max,
        started,
        shutdown,
    }
}

/// The bus contract, on RabbitMQ and on the in-process bus alike.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_rabbitmq {
            $(#[tokio::test] async fn $name() { super::$name(super::Transport::RabbitMq).await })*
        }
        mod in_process {
            $(#[tokio::test] async fn $name() { super::$name(super::Transport::InProcess).await })*
        }
    };
}

conformance!(
    a_call_returns_the_handlers_answer,
    handler_errors_arrive_with_their_code_and_status,
    a_slow_handler_times_out_with_504,
    a_pattern_nobody_serves_fails_fast_as_unavailable,
    prefetch_bounds_concurrent_handlers,
    malformed_requests_get_a_bad_request_reply,
    a_request_whose_caller_gave_up_before_its_turn_is_never_carried_out,
);

/// Waits until `ready`; a hang guard of `limit`, not a timing check.
async fn wait_until(limit: Duration, ready: impl Fn() -> bool) {
    let poll = async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(limit, poll).await.is_err() {
        panic!("not ready within {limit:?}");
    }
}

/// Asks the broker to close every connection whose client-provided name is `name`. rabbitmqctl
/// talks to the node over Erlang distribution and, on a node busy with the other tests, may
/// answer a listing with nothing or refuse a close: it is asked again, a bounded number of times.
fn broker_closes_connection(name: &str) {
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    let mut last = String::new();
    for _ in 0..20 {
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "list_connections",
                "--no-table-headers",
                "pid",
                "client_properties",
            ])
            .output()
            .expect("rabbitmqctl runs");
        let listing = String::from_utf8_lossy(&out.stdout).to_string();
        // The pid is `<rabbit@host.x.y.z>`, followed by a tab or, in some outputs, by nothing.
        let pids: Vec<&str> = listing
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.find('>').map(|end| &l[..=end]))
            .collect();
        let closed = !pids.is_empty()
            && pids.iter().all(|pid| {
                std::process::Command::new("rabbitmqctl")
                    .args([
                        "-q",
                        "close_connection",
                        pid,
                        "test: broker drops the connection",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        if closed {
            return;
        }
        last = format!("{listing}{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("connection {name} not found or not closed; last listing:\n{last}");
}

async fn a_call_returns_the_handlers_answer(transport: Transport) {
    let bus = bus_on(transport, 8, Duration::from_secs(5)).await;
    let ctx = CallContext::internal();
    let reply = bus
        .client
        .call::<Echo>(&"hello".to_string(), &ctx)
        .await
        .unwrap();
    assert_eq!(reply, "hello");

    // Round-trip latency, printed for the record (not asserted: speed belongs in benchmarks).
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        bus.client.call::<Echo>(&i.to_string(), &ctx).await.unwrap();
    }
    println!(
        "rpc round trip: {:.3} ms mean over {n} sequential calls",
        start.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
}

async fn handler_errors_arrive_with_their_code_and_status(transport: Transport) {
    let bus = bus_on(transport, 8, Duration::from_secs(5)).await;
    let err = bus
        .client
        .call::<Fail>(&(), &CallContext::internal())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert_eq!(err.message, "already there");
    assert_eq!(err.code.status().as_u16(), 409);
}

async fn a_slow_handler_times_out_with_504(transport: Transport) {
    let bus = bus_on(transport, 8, Duration::from_millis(300)).await;
    let start = Instant::now();
    let err = bus
        .client
        .call::<Slow>(&2000, &CallContext::internal())
        .await
        .unwrap_err();
    // A caller that waited for the 2 s handler would have its answer, not a timeout.
    assert_eq!(err.code, ErrorCode::Timeout);
    assert_eq!(err.code.status().as_u16(), 504);
    println!("timed out after {:?}", start.elapsed());
}

async fn a_pattern_nobody_serves_fails_fast_as_unavailable(transport: Transport) {
    let bus = bus_on(transport, 8, Duration::from_secs(5)).await;
    let start = Instant::now();
    let err = bus
        .client
        .call::<Unserved>(&(), &CallContext::internal())
        .await
        .unwrap_err();
    // Unavailable, not the timeout a caller waiting 5 s for nobody would get.
    assert_eq!(err.code, ErrorCode::Unavailable);
    println!("refused after {:?}", start.elapsed());
}

async fn prefetch_bounds_concurrent_handlers(transport: Transport) {
    let bus = bus_on(transport, 2, Duration::from_secs(10)).await;
    let calls = (0..8).map(|_| {
        let client = bus.client.clone();
        async move { client.call::<Slow>(&100, &CallContext::internal()).await }
    });
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap(), 100);
    }
    let max = bus.in_flight_max.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "max concurrent handlers {max}");
}

async fn malformed_requests_get_a_bad_request_reply(transport: Transport) {
    // A caller with a different idea of the contract: sends a number where a string is expected.
    chat_domain::rpc_pattern!(EchoNumber, "test.echo", u64 => String);
    let bus = bus_on(transport, 8, Duration::from_secs(5)).await;
    let err = bus
        .client
        .call::<EchoNumber>(&5, &CallContext::internal())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

#[tokio::test]
async fn both_sides_reconnect_when_the_broker_drops_their_connections() {
    let bus = bus(8, Duration::from_secs(10)).await;
    let ctx = CallContext::internal();
    assert_eq!(
        bus.client
            .call::<Echo>(&"before".into(), &ctx)
            .await
            .unwrap(),
        "before"
    );
    broker_closes_connection(&bus.server_name);
    broker_closes_connection(&format!(
        "{}-client",
        bus.server_name.trim_end_matches("-server")
    ));
    // Both supervisors reconnect by themselves. A call made while the server's consumer is not
    // back yet is answered `unavailable` at once (nobody serves the pattern for that moment),
    // never left waiting; calls succeed again without a restart.
    let after = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match bus.client.call::<Echo>(&"after".into(), &ctx).await {
                Ok(answer) => return answer,
                Err(e) if e.code == ErrorCode::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await
    .expect("calls succeed again once both sides reconnected");
    assert_eq!(after, "after");
}

/// Restarts the RabbitMQ application; run alone (scripts/test.sh runs `broker_restart` tests
/// after the others) because it interrupts every connection to the shared broker.
#[tokio::test]
async fn broker_restart_is_survived_without_restarting_the_service() {
    let bus = bus(8, Duration::from_secs(30)).await;
    let ctx = CallContext::internal();
    assert_eq!(
        bus.client
            .call::<Echo>(&"before".into(), &ctx)
            .await
            .unwrap(),
        "before"
    );
    let ctl = |arg: &str| {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["-q", arg])
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "rabbitmqctl {arg} failed");
    };
    ctl("stop_app");
    let down = bus
        .client
        .call_with_timeout::<Echo>(&"down".into(), &ctx, Duration::from_millis(500))
        .await;
    assert!(
        down.is_err(),
        "a call while the broker is stopped must fail, not hang"
    );
    ctl("start_app");
    let start = Instant::now();
    assert_eq!(
        bus.client
            .call::<Echo>(&"after".into(), &ctx)
            .await
            .unwrap(),
        "after"
    );
    println!("recovered {:?} after start_app", start.elapsed());
}

async fn a_request_whose_caller_gave_up_before_its_turn_is_never_carried_out(transport: Transport) {
    let bus = bus_on(transport, 1, Duration::from_secs(10)).await;
    // The only slot is taken for 1.5 s.
    let client = bus.client.clone();
    let busy =
        tokio::spawn(async move { client.call::<Slow>(&1500, &CallContext::internal()).await });
    wait_until(Duration::from_secs(10), || {
        bus.started.load(Ordering::SeqCst) == 1
    })
    .await;
    // A caller that waits 300 ms for its turn gives up: it is told so...
    let late = bus
        .client
        .call_with_timeout::<Slow>(&0, &CallContext::internal(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(late.code, ErrorCode::Timeout);
    assert_eq!(busy.await.unwrap().unwrap(), 1500);
    // ...and its request is dropped when the slot frees, not carried out for nobody. A request
    // sent now still is.
    assert_eq!(
        bus.client
            .call::<Slow>(&0, &CallContext::internal())
            .await
            .unwrap(),
        0
    );
    assert_eq!(bus.started.load(Ordering::SeqCst), 2);
}
