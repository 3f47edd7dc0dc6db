// Idle sockets: opens N Socket.IO connections to a target and holds them, so the caller can read
// the server's resident memory with N idle sockets connected. Prints {"setup": "done"} after the
// set-up, waits 3 s, connects, and prints one JSON line once every socket is connected ({"connected": N, "seconds": ...}), holds them --hold seconds, then exits.
//
//   node idle.mjs --target chat --base http://127.0.0.1:5000 --sockets 1000 --hold 5
//   node idle.mjs --target ref  --base http://127.0.0.1:5100 --sockets 1000 --hold 5
//
// chat: one user is registered and owns one group; every socket authenticates as that user (a
// socket costs the same whoever it belongs to). ref: the handshake names one group.
import { io } from "socket.io-client";
import { randomUUID } from "node:crypto";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const TARGET = arg("target", "chat");
const BASE = arg("base", TARGET === "chat" ? "http://127.0.0.1:5000" : "http://127.0.0.1:5100");
const N = Number(arg("sockets", 1000));
const HOLD = Number(arg("hold", 5));
const PARALLEL = Number(arg("parallel", 50));

async function post(path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(BASE + path, { method: "POST", headers, body: JSON.stringify(body) });
  const json = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const tag = randomUUID().slice(0, 8);
let auth;
if (TARGET === "ref") {
  auth = { token: `idle-${tag}`, groups: [`idle-${tag}`] };
} else {
  const user = await post("/auth/register", { firstName: "Idle", lastName: "User", email: `idle-${tag}@example.com`, password: "idle test password" });
  await post("/groups", { name: `idle ${tag}`, memberIds: [] }, user.accessToken);
  auth = { token: user.accessToken };
}

function connect() {
  return new Promise((resolve, reject) => {
    const s = io(BASE, { auth, transports: ["websocket"], reconnection: false, forceNew: true });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

// The caller reads the server's memory now, after the set-up (a registration hashes a password).
console.log(JSON.stringify({ setup: "done" }));
await new Promise((r) => setTimeout(r, 3000));
const t0 = performance.now();
const sockets = [];
let failed = 0;
for (let i = 0; i < N; i += PARALLEL) {
  const batch = [];
  for (let j = i; j < Math.min(N, i + PARALLEL); j++) batch.push(connect().then((s) => sockets.push(s), () => failed++));
  await Promise.all(batch);
}
console.log(JSON.stringify({ target: TARGET, connected: sockets.length, failed, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) }));
await new Promise((r) => setTimeout(r, HOLD * 1000));
for (const s of sockets) s.disconnect();
process.exit(0);
