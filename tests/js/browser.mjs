// A frontend on another origin, in a real browser (Debian's Chromium, headless, driven by
// playwright-core): REST with fetch and the stock socket.io-client over long-polling and over
// WebSocket. The pages come from two small servers on localhost, as a Vite dev server would
// serve them: the frontend's origin, which the chat server must allow (CORS_ALLOWED_ORIGINS),
// and another origin, which the browser itself must refuse.
//
// It prints `origin <frontend origin>` first and then reads one line of JSON from stdin,
// `{"api": <gateway URL>, "chat": <chat replica URL>}`, so the servers under test can be
// started with that origin allowed. CHROMIUM: the browser (default /usr/bin/chromium).
// Exits 0 when every check passed; prints what it saw.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { launchChromium } from "./chromium.mjs";

// The browser bundle the package ships (not among its exports, so read by path).
const client = readFileSync(
  new URL("./node_modules/socket.io-client/dist/socket.io.min.js", import.meta.url),
  "utf8",
);

/** A page server on localhost; resolves to its origin. */
function serve() {
  const server = createServer((req, res) => {
    if (req.url === "/socket.io.min.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      return res.end(client);
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end('<!doctype html><script src="/socket.io.min.js"></script>');
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      server.unref();
      resolve(`http://localhost:${server.address().port}`);
    }),
  );
}

const FRONTEND_ORIGIN = await serve();
const OTHER_ORIGIN = await serve();
console.log(`origin ${FRONTEND_ORIGIN}`);
const line = await new Promise((resolve) => {
  const rl = createInterface({ input: process.stdin });
  rl.once("line", (l) => { rl.close(); resolve(l); });
});
const { api: API_URL, chat: CHAT_URL } = JSON.parse(line);

async function pageAt(context, origin) {
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  return page;
}

const browser = await launchChromium();
let failed = false;
try {
  const context = await browser.newContext();
  const allowed = await pageAt(context, FRONTEND_ORIGIN);
  const seen = await allowed.evaluate(
    async ({ api, chat }) => {
      const post = async (path, body, token) => {
        const headers = { "content-type": "application/json" };
        if (token) headers.authorization = `Bearer ${token}`;
        const r = await fetch(api + path, { method: "POST", headers, body: JSON.stringify(body) });
        return { status: r.status, body: await r.json() };
      };
      const stamp = Date.now();
      const ada = await post("/auth/register", {
        firstName: "Ada", lastName: "Lovelace", email: `ada.${stamp}@example.com`, password: "correct horse",
      });
      const bob = await post("/auth/register", {
        firstName: "Bob", lastName: "Browser", email: `bob.${stamp}@example.com`, password: "correct horse",
      });
      const group = await post(
        "/groups", { name: "Cross-origin", memberIds: [bob.body.user.id] }, ada.body.accessToken,
      );
      const connect = (token, transports) =>
        new Promise((resolve, reject) => {
          const socket = io(chat, { auth: { token }, transports });
          socket.on("connect", () => resolve(socket));
          socket.on("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`)));
        });
      // Ada on long-polling only: every request of hers is a cross-origin XHR.
      const polling = await connect(ada.body.accessToken, ["polling"]);
      const websocket = await connect(bob.body.accessToken, ["websocket"]);
      const incoming = new Promise((resolve) => websocket.on("chat.message.incoming", resolve));
      const ack = await polling.timeout(10000).emitWithAck("chat.message.send", {
        groupId: group.body.id, content: "hello from another origin", clientMessageId: `b-${stamp}`,
      });
      const received = await Promise.race([
        incoming,
        new Promise((resolve) => setTimeout(() => resolve(null), 10000)),
      ]);
      const transport = polling.io.engine.transport.name;
      polling.close();
      websocket.close();
      return {
        register: ada.status, group: group.status, ack,
        received: received && received.content, pollingTransport: transport,
      };
    },
    { api: API_URL, chat: CHAT_URL },
  );
  console.log(`allowed origin ${FRONTEND_ORIGIN}: ${JSON.stringify(seen)}`);
  const ok =
    seen.register === 201 && seen.group === 201 && seen.ack && seen.ack.ok === true &&
    seen.received === "hello from another origin" && seen.pollingTransport === "polling";
  if (!ok) failed = true;

  // Another origin: the browser itself refuses the responses, REST and polling alike.
  const other = await pageAt(context, OTHER_ORIGIN);
  const refused = await other.evaluate(
    async ({ api, chat }) => {
      let rest;
      try {
        await fetch(`${api}/auth/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ email: "x@example.com", password: "whatever1" }),
        });
        rest = "answered";
      } catch (e) {
        rest = `blocked (${e.name})`;
      }
      const socket = await new Promise((resolve) => {
        const s = io(chat, { transports: ["polling"], reconnection: false, auth: { token: "x" } });
        s.on("connect", () => { s.close(); resolve("connected"); });
        s.on("connect_error", (e) => { s.close(); resolve(`blocked (${e.message})`); });
      });
      return { rest, socket };
    },
    { api: API_URL, chat: CHAT_URL },
  );
  console.log(`other origin ${OTHER_ORIGIN}: ${JSON.stringify(refused)}`);
  if (!refused.rest.startsWith("blocked") || !refused.socket.startsWith("blocked")) failed = true;
} catch (e) {
  console.log(`error: ${e.stack || e}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
