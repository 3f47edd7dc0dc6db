// End-to-end check with the stock socket.io-client, connecting exactly as the seed's frontend
// does: `io(url, { auth: { token } })`. Two users, each on a different chat replica (CHAT_A_URL,
// CHAT_B_URL), the REST API on API_URL. Prints one JSON line of results and exits non-zero on
// any failure. Run by tests/tests/realtime.rs.
import { io } from "socket.io-client";

const api = process.env.API_URL;
const [urlA, urlB] = [process.env.CHAT_A_URL, process.env.CHAT_B_URL ?? process.env.CHAT_A_URL];
const fail = (what) => { console.error("FAIL:", what); process.exit(1); };
const deadline = setTimeout(() => fail("timed out"), 20000);

async function post(path, body, token) {
  const res = await fetch(api + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const tag = Math.random().toString(36).slice(2, 8);
const register = async (name) =>
  (await post("/auth/register", { firstName: name, lastName: "Js", email: `${name}.${tag}@example.com`, password: "correct horse" })).body;

const ada = await register("ada");
const bob = await register("bob");
const group = (await post("/groups", { name: "js", memberIds: [bob.user.id] }, ada.accessToken)).body;

const connect = (url, auth) => new Promise((resolve, reject) => {
  const socket = io(url, { auth, transports: ["websocket"], reconnection: false });
  socket.on("connect", () => resolve(socket));
  socket.on("connect_error", (err) => reject(err));
});

// A bad token gets a clear connect_error.
const refused = await connect(urlA, { token: "nope" }).then(() => null, (err) => err.message);
if (refused !== "invalid or expired access token") fail(`connect_error was ${refused}`);
const anonymous = await connect(urlA, {}).then(() => null, (err) => err.message);
if (!anonymous?.includes("authentication required")) fail(`connect_error was ${anonymous}`);

const a = await connect(urlA, { token: ada.accessToken });
const b = await connect(urlB, { token: bob.accessToken });
const incoming = new Promise((resolve) => b.on("chat.message.incoming", resolve));
const started = Date.now();
const ack = await a.timeout(10000).emitWithAck("chat.message.send", { groupId: group.id, content: "hello from js", clientMessageId: "js-1" });
if (!ack.ok || ack.message.seq !== 1) fail(`ack ${JSON.stringify(ack)}`);
const received = await incoming;
if (received.content !== "hello from js" || received.seq !== 1) fail(`received ${JSON.stringify(received)}`);
const latencyMs = Date.now() - started;

const bad = await a.timeout(10000).emitWithAck("chat.message.send", { groupId: "000000000000000000000000", content: "x" });
if (bad.ok || bad.error.code !== "forbidden" || bad.error.reason !== "not_member") fail(`non-member send ${JSON.stringify(bad)}`);

clearTimeout(deadline);
console.log(JSON.stringify({ ok: true, latencyMs }));
a.close();
b.close();
process.exit(0);
