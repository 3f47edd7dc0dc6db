// Runs the README's examples, so README and code cannot drift: every `sh` block that calls the
// API with curl, in the README's order in one shell session (a block may use what an earlier one
// set, as a reader would), and every `js` block as an ES module with the stock socket.io-client.
//
// Usage: node readme.mjs <README.md> <base URL> <ingress base URL>
//   <base URL>          a fresh `chat-server all` standing in for `localhost:5000`;
//   <ingress base URL>  another fresh one standing in for the kind Ingress (`localhost/`): the
//                       kind walkthrough registers the same user as the API section does.
// A curl answered with an HTTP error fails its block (`--fail-with-body`), as does a block that
// exits non-zero, a socket that does not connect, or an acknowledgement that is not `ok`.
// Prints one line per block; exits 0 when all passed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [readmePath, base, ingress] = process.argv.slice(2);
if (!ingress) {
  console.error("usage: node readme.mjs <README.md> <base URL> <ingress base URL>");
  process.exit(2);
}
const readme = readFileSync(readmePath, "utf8");

/** Fenced blocks with their language and first line number, indentation removed. */
function blocks(text) {
  const found = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^(\s*)```(\w+)\s*$/);
    if (!open) continue;
    const [indent, lang] = [open[1].length, open[2]];
    const body = [];
    let j = i + 1;
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j])) body.push(lines[j++].slice(indent));
    found.push({ lang, line: i + 1, code: body.join("\n") });
    i = j;
  }
  return found;
}

const work = mkdtempSync(join(tmpdir(), "readme-"));
// What the attachment example splits: an MP4 (by its signature) of 6 MiB, two 5 MiB chunks.
const video = Buffer.alloc(6 * 1024 * 1024, 7);
Buffer.from("\0\0\0\x18ftypmp42", "latin1").copy(video);
writeFileSync(join(work, "video.mp4"), video);

const shellPrelude = `set -eo pipefail
curl() { command curl --fail-with-body --show-error "$@"; }
`;
// The variables the shell blocks so far have set, as `declare -p` wrote them: a later block
// starts from them, as in one terminal session, without running the earlier blocks again.
const state = join(work, "variables.sh");
writeFileSync(state, "");
let failed = 0;

function runShell(block) {
  const target = /localhost\//.test(block.code) ? ingress : base;
  const code = block.code
    .replaceAll("localhost:5000", target.replace(/^http:\/\//, ""))
    .replaceAll(/localhost\//g, `${target.replace(/^http:\/\//, "")}/`);
  const assigned = [...new Set([...code.matchAll(/(?:^|[\s;(])([A-Za-z_]\w*)=/g)].map((m) => m[1]))];
  const keep = assigned.length ? `declare -p ${assigned.join(" ")} >> "${state}" 2>/dev/null || true` : "";
  const script = `${shellPrelude}source "${state}"\n${code}\n${keep}\n`;
  execFileSync("bash", ["-c", script], { cwd: work, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
}

// Names the socket examples take from the surrounding app: defined only where a block uses one
// without declaring it.
const given = {
  accessToken: "const accessToken = __session.accessToken;",
  groupId: "const groupId = __group.id;",
  lastSeqYouHave: "const lastSeqYouHave = 0;",
  render: "const render = () => {};",
};

async function runJs(block) {
  // `chat-server all` is one origin, like the Ingress.
  const code = block.code
    .replaceAll("http://localhost:5000", base)
    .replaceAll("http://localhost", base);
  const declared = (name) => new RegExp(`\\b(const|let|var)\\b[^=;]*\\b${name}\\b`).test(code);
  const prelude = Object.entries(given)
    .filter(([name]) => new RegExp(`\\b${name}\\b`).test(code) && !declared(name))
    .map(([, line]) => line)
    .join("\n");
  const module = `
const __post = async (path, body, token) => {
  const r = await fetch(${JSON.stringify(base)} + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: "Bearer " + token } : {}) },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
};
const __session = await __post("/auth/login", { email: "ada@example.com", password: "correct horse" });
const __group = await __post("/groups", { name: "README", memberIds: [] }, __session.accessToken);
${prelude}
${code}
// The example's socket connects, and what it sent was acknowledged.
await new Promise((ok, fail) => {
  if (socket.connected) return ok();
  socket.once("connect", ok);
  socket.once("connect_error", fail);
  setTimeout(() => fail(new Error("the socket did not connect within 10 s")), 10_000);
});
if (typeof ack !== "undefined" && ack.ok !== true) throw new Error("not acknowledged: " + JSON.stringify(ack));
socket.close();
`;
  // In this directory, so `import "socket.io-client"` finds the package.
  const file = new URL(`./.readme-${block.line}.mjs`, import.meta.url);
  writeFileSync(file, module);
  try {
    execFileSync("node", [file.pathname], { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
  } finally {
    rmSync(file, { force: true });
  }
}

for (const block of blocks(readme)) {
  const runnable =
    (block.lang === "sh" && /\bcurl\b/.test(block.code)) || block.lang === "js";
  if (!runnable) continue;
  try {
    if (block.lang === "sh") runShell(block);
    else await runJs(block);
    console.log(`ok   README.md:${block.line} (${block.lang})`);
  } catch (e) {
    failed++;
    const output = [e.stdout, e.stderr].filter(Boolean).map(String).join("\n").trim();
    console.log(`FAIL README.md:${block.line} (${block.lang}): ${e.message.split("\n")[0]}\n${output}`);
  }
}
process.exit(failed ? 1 : 0);
