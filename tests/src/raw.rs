//! A Socket.IO client over raw HTTP long-polling packets: what a hostile client sends, and a way
//! to send many events at once with acknowledgement ids of its own.

use std::time::Duration;

use serde_json::{json, Value};

use crate::within;

/// A Socket.IO client over HTTP long-polling that sends raw packets: what a hostile client
/// sends, not what a library would.
pub struct RawSocket {
    http: reqwest::Client,
    url: String,
}

impl RawSocket {
    pub async fn open(port: u16, token: &str) -> RawSocket {
        Self::connect(port, json!({"token": token})).await.0
    }

    /// Opens a session with `auth` as the handshake payload; the socket and the packets that
    /// came after the server's CONNECT in the same answer (a replay starts right away).
    pub async fn connect(port: u16, auth: Value) -> (RawSocket, Vec<String>) {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling");
        let open = http.get(&base).send().await.unwrap().text().await.unwrap();
        let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
        let url = format!("{base}&sid={}", handshake["sid"].as_str().unwrap());
        let socket = RawSocket { http, url };
        socket.post(&format!("40{auth}")).await;
        loop {
            let packets = socket.receive().await;
            assert!(!packets.is_empty(), "the session ended before connecting");
            if let Some(at) = packets.iter().position(|p| p.starts_with("40")) {
                return (socket, packets[at + 1..].to_vec());
            }
        }
    }

    /// Posts one packet; the HTTP status.
    pub async fn post(&self, packet: &str) -> u16 {
        match self
            .http
            .post(&self.url)
            .body(packet.to_string())
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The next packets from the server (empty once the session is gone).
    pub async fn receive(&self) -> Vec<String> {
        let packets = self.receive_unanswered().await;
        // The server's pings are answered, or it ends the session.
        if packets.iter().any(|p| p == "2") {
            self.post("3").await;
        }
        packets
    }

    /// Like [`RawSocket::receive`], but leaves the server's pings unanswered, as a client that
    /// stopped reading would: the server ends the session after its ping timeout.
    pub async fn receive_unanswered(&self) -> Vec<String> {
        let answer = within(
            Duration::from_secs(40),
            "a long-polling answer",
            self.http.get(&self.url).send(),
        )
        .await;
        match answer {
            Ok(r) if r.status().is_success() => r
                .text()
                .await
                .unwrap_or_default()
                .split('\u{1e}')
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Sends every event in one request, acknowledgement ids 100 onwards, and returns their
    /// acknowledgements in the order sent. Fewer than 128 at once: a server holds at most that
    /// many packets for a client that has not read them, and drops the rest.
    pub async fn flood(&self, events: impl Iterator<Item = (&str, Value)>) -> Vec<Value> {
        let packets: Vec<String> = events
            .enumerate()
            .map(|(i, (event, data))| format!("42{}{}", 100 + i, json!([event, data])))
            .collect();
        let mut acks = vec![Value::Null; packets.len()];
        assert_eq!(self.post(&packets.join("\u{1e}")).await, 200);
        while acks.iter().any(Value::is_null) {
            let received = self.receive().await;
            assert!(!received.is_empty(), "the session ended during the flood");
            for packet in received {
                let Some(rest) = packet.strip_prefix("43") else {
                    continue;
                };
                let digits = rest.find('[').unwrap_or(rest.len());
                if let Ok(id) = rest[..digits].parse::<usize>() {
                    let args: Value = serde_json::from_str(&rest[digits..]).unwrap();
                    acks[id - 100] = args[0].clone();
                }
            }
        }
        acks
    }

    /// After a hostile packet that asked for acknowledgement 1, sends a heartbeat asking for
    /// acknowledgement 2, and reads until one of them arrives or the session ends.
    pub async fn outcome(&self) -> Outcome {
        self.post("422[\"user.heartbeat\"]").await;
        loop {
            let packets = self.receive().await;
            if packets.is_empty() || packets.iter().any(|p| p == "1" || p.starts_with("41")) {
                return Outcome::Ended;
            }
            if let Some(p) = packets.iter().find(|p| p.starts_with("431")) {
                let args: Value = serde_json::from_str(&p[3..]).unwrap();
                return Outcome::Answered(args[0].clone());
            }
            if packets.iter().any(|p| p.starts_with("432")) {
                return Outcome::Ignored;
            }
        }
    }
}

/// What became of a hostile packet.
#[derive(Debug)]
pub enum Outcome {
    /// Acknowledged (with an error, it must be).
    Answered(Value),
    /// Dropped, and the socket still answers the next event.
    Ignored,
    /// The server closed the session.
    Ended,
}

/// The `(event, data)` of an event packet (`42["event",data]`).
pub fn event_of(packet: &str) -> Option<(String, Value)> {
    let args: Value = serde_json::from_str(packet.strip_prefix("42")?).ok()?;
    Some((args[0].as_str()?.to_string(), args[1].clone()))
}
