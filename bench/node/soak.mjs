// Soak load (issue 16.6): steady real-time traffic for a long time, one line of figures a minute,
// to show that memory, open descriptors and latency stay flat.
//
//   node soak.mjs --api http://127.0.0.1:5000 --sockets http://127.0.0.1:5000,http://127.0.0.1:5001 \
//     --groups 20 --members 10 --rate 200 --minutes 30 --pids 1234,5678 --label all
//
// G groups of M members register through the REST API (--api) and connect one websocket each,
// spread over the chat endpoints (--sockets). R sends/s go out open-loop, each delivered to the M
// members. Once a second a member reads GET /groups; once a minute a tenth of the sockets are
// replaced (the new one connects first and takes the sends; the old one closes 11 s later, once
// what was sent on it is answered). Every minute it prints one JSON
// line: sends acknowledged and refused, deliveries lost (a message acknowledged but not received
// by every member within 10 s), acknowledgement and delivery p50/p99, and the resident memory and
// open descriptors of the processes named by --pids (summed), read from /proc.
import { io } from "socket.io-client";
import { randomUUID } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const API = arg("api", "http://127.0.0.1:5000");
const SOCKETS = arg("sockets", API).split(",");
const G = Number(arg("groups", 20));
const M = Number(arg("members", 10));
const RATE = Number(arg("rate", 200));
const MINUTES = Number(arg("minutes", 30));
const PIDS = arg("pids", "").split(",").filter(Boolean);
const LABEL = arg("label", "soak");
const MINUTE_MS = Number(arg("minute-ms", 60000));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const pct = (xs, p) => {
  if (!xs.length) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  return Number(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))].toFixed(1));
};

async function request(method, path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(API + path, { method, headers, body: body && JSON.stringify(body) });
  const json = await res.json();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

function processFigures() {
  let rss = 0, fds = 0;
  for (const pid of PIDS) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      rss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      fds += readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      return { rss_mib: null, fds: null }; // a process is gone
    }
  }
  return { rss_mib: Math.round(rss), fds };
}

// ------------------------------------------------------------------ set-up
const tag = randomUUID().slice(0, 8);
const users = [];
for (let i = 0; i < G * M; i += 8) {
  const batch = [];
  for (let j = i; j < Math.min(G * M, i + 8); j++) {
    batch.push(request("POST", "/auth/register", { firstName: "Soak", lastName: `U${j}`, email: `soak-${j}-${tag}@example.com`, password: "soak test password" }));
  }
  users.push(...(await Promise.all(batch)));
}
const members = []; // { token, groupId, slot, socket }
for (let g = 0; g < G; g++) {
  const of = users.slice(g * M, (g + 1) * M);
  const group = await request("POST", "/groups", { name: `soak ${g} ${tag}`, memberIds: of.slice(1).map((u) => u.user.id) }, of[0].accessToken);
  of.forEach((u, m) => members.push({ token: u.accessToken, refreshToken: u.refreshToken, groupId: group.id, slot: g * M + m }));
}
await sleep(500);

// Messages acknowledged or under way: clientMessageId -> { sentAt, received: Set of slots }.
const open = new Map();
let window = { acked: 0, refused: 0, errors: {}, delivered: 0, lost: 0, ack: [], delivery: [], reads: 0, readFailures: 0, replaced: 0 };
const totals = { acked: 0, refused: 0, lost: 0, delivered: 0 };

function connect(member, n) {
  return new Promise((resolve, reject) => {
    const s = io(SOCKETS[(member.slot + n) % SOCKETS.length], { auth: { token: member.token }, transports: ["websocket"], reconnection: true, forceNew: true });
    s.on("chat.message.incoming", (m) => {
      const entry = open.get(m.clientMessageId);
      if (!entry || entry.received.has(member.slot)) return;
      entry.received.add(member.slot);
      window.delivered++;
      window.delivery.push(now() - entry.sentAt);
      if (entry.received.size === M && entry.acked) open.delete(m.clientMessageId);
    });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}
for (const member of members) member.socket = await connect(member, 0);

// ------------------------------------------------------------------ load
let issued = 0, rr = 0, generation = 0;
const start = now();
const endAt = start + MINUTES * MINUTE_MS;
let nextReport = start + MINUTE_MS, nextRead = start + 1000, minute = 0;
// Access tokens live 15 minutes by default: renewed every 10, as a client does.
let nextRefresh = start + 10 * 60000;

async function refreshTokens() {
  for (const member of members) {
    try {
      const session = await request("POST", "/auth/refresh", { refreshToken: member.refreshToken });
      member.token = session.accessToken;
      member.refreshToken = session.refreshToken;
    } catch {
      window.readFailures++;
    }
  }
}

function send() {
  const member = members[rr++ % members.length];
  const id = randomUUID();
  const entry = { sentAt: now(), received: new Set(), acked: false };
  open.set(id, entry);
  member.socket.timeout(10000).emitWithAck("chat.message.send", { groupId: member.groupId, content: "soak", clientMessageId: id })
    .then((a) => {
      if (a?.ok) {
        entry.acked = true;
        window.acked++;
        window.ack.push(now() - entry.sentAt);
        if (entry.received.size === M) open.delete(id);
      } else {
        open.delete(id);
        window.refused++;
        const c = a?.error?.reason ?? a?.error?.code ?? "?";
        window.errors[c] = (window.errors[c] ?? 0) + 1;
      }
    })
    .catch(() => { open.delete(id); window.refused++; window.errors.timeout = (window.errors.timeout ?? 0) + 1; });
}

async function replaceSome() {
  generation++;
  const chosen = members.filter((_, i) => i % 10 === generation % 10);
  for (const member of chosen) {
    const old = member.socket;
    try {
      member.socket = await connect(member, generation);
      window.replaced++;
    } catch {
      continue;
    }
    // Sends already under way on the old socket are answered before it closes.
    setTimeout(() => old.disconnect(), 11000);
  }
}

function report(extra = {}) {
  const t = now();
  for (const [id, entry] of open) {
    if (entry.acked && t - entry.sentAt > 10000) {
      window.lost += M - entry.received.size;
      open.delete(id);
    } else if (!entry.acked && t - entry.sentAt > 20000) {
      open.delete(id);
    }
  }
  minute++;
  totals.acked += window.acked; totals.refused += window.refused; totals.lost += window.lost; totals.delivered += window.delivered;
  console.log(JSON.stringify({
    label: LABEL, minute, sends_acked: window.acked, refused: window.refused, errors: window.errors,
    deliveries: window.delivered, lost: window.lost,
    ack_ms: { p50: pct(window.ack, 0.5), p99: pct(window.ack, 0.99) },
    delivery_ms: { p50: pct(window.delivery, 0.5), p99: pct(window.delivery, 0.99) },
    reads: window.reads, read_failures: window.readFailures, sockets_replaced: window.replaced,
    ...processFigures(), ...extra,
  }));
  window = { acked: 0, refused: 0, errors: {}, delivered: 0, lost: 0, ack: [], delivery: [], reads: 0, readFailures: 0, replaced: 0 };
}

while (now() < endAt) {
  const due = Math.floor((RATE * (now() - start)) / 1000) - issued;
  for (let k = 0; k < due; k++, issued++) send();
  if (now() >= nextRead) {
    nextRead += 1000;
    const member = members[Math.floor(Math.random() * members.length)];
    request("GET", "/groups", undefined, member.token).then(() => window.reads++, () => window.readFailures++);
  }
  if (now() >= nextRefresh) {
    nextRefresh += 10 * 60000;
    refreshTokens();
  }
  if (now() >= nextReport) {
    nextReport += MINUTE_MS;
    report();
    replaceSome();
  }
  await sleep(5);
}
if (minute < MINUTES) report();
await sleep(11000);
report({ tail: true }); // what was still under way when the load stopped
console.log(JSON.stringify({ label: LABEL, total: true, ...totals }));
for (const member of members) member.socket.disconnect();
process.exit(0);
