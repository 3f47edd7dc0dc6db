// npm run serve -- --api http://localhost:5000 [--port 5173]
//
// Serves dist/ at / and passes everything else (REST, /socket.io on both transports) to the
// chat server, so the client runs on one origin with its default relative URLs, as it will when
// `chat-server all` serves it. For development while that server does not serve dist/ itself.
import { readFile } from "node:fs/promises";
import { createServer, request } from "node:http";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { api: { type: "string", default: "http://localhost:5000" }, port: { type: "string", default: "5173" } },
});
const api = new URL(values.api);
if (api.protocol !== "http:") {
  console.error("--api must be an http:// URL (the chat server on this machine)");
  process.exit(2);
}
const dist = fileURLToPath(new URL("../dist/", import.meta.url));
const files = { "/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css" };
const types = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8" };

const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  const file = req.method === "GET" ? files[path] : undefined;
  if (file) {
    const body = await readFile(dist + file).catch(() => null);
    if (!body) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end(`dist/${file} is missing: run npm run build`);
    }
    res.writeHead(200, { "content-type": types[file.split(".").pop()], "cache-control": "no-cache" });
    return res.end(body);
  }
  const upstream = request(
    { host: api.hostname, port: api.port, method: req.method, path: req.url, headers: { ...req.headers, host: api.host } },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on("error", () => {
    res.writeHead(502, { "content-type": "text/plain" });
    res.end("chat server unreachable");
  });
  req.pipe(upstream);
});

// WebSocket upgrades: replay the request head upstream, then pipe both ways.
server.on("upgrade", (req, socket, head) => {
  const upstream = connect(Number(api.port) || 80, api.hostname, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const [name, value] = [req.rawHeaders[i], req.rawHeaders[i + 1]];
      lines.push(`${name}: ${name.toLowerCase() === "host" ? api.host : value}`);
    }
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    upstream.write(head);
    socket.pipe(upstream).pipe(socket);
  });
  const close = () => {
    socket.destroy();
    upstream.destroy();
  };
  upstream.on("error", close);
  socket.on("error", close);
  upstream.on("close", close);
  socket.on("close", close);
});

server.listen(Number(values.port), "127.0.0.1", () =>
  console.log(`client on http://localhost:${values.port}/, API and Socket.IO passed to ${api.origin}`),
);
