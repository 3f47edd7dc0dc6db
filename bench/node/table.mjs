// Prints the real-time benchmark's table from the JSON lines scripts/bench-realtime.sh wrote.
//   node table.mjs results.jsonl [p99 limit in ms, default 50]
import { readFileSync } from "node:fs";

const file = process.argv[2];
const LIMIT = Number(process.argv[3] ?? 50);
const lines = readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const runs = lines.filter((l) => l.kind === "run" || l.kind === "skip");
const targets = [...new Set(runs.map((r) => r.target))];
const rates = [...new Set(runs.map((r) => r.rate))].sort((a, b) => a - b);
const REF = "node-sqlite";

const ok = (r) => {
  const x = r.result;
  return r.kind === "run" && x && !x.error && x.failed === 0 && x.lost_deliveries === 0 &&
    x.acked > 0 && x.delivery_ms.p99 !== null && x.delivery_ms.p99 < LIMIT;
};
const fmt = (v) => (v === null || v === undefined ? "-" : v >= 100 ? String(Math.round(v)) : v.toFixed(1));
const cell = (r) => {
  if (!r) return "";
  if (r.kind === "skip") return "skipped";
  const x = r.result;
  if (!x || x.error) return `error: ${(x?.error ?? "no result").slice(0, 30)}`;
  let s = `${fmt(x.delivery_ms.p50)} / ${fmt(x.delivery_ms.p99)}`;
  const bad = [];
  if (x.failed) bad.push(`${x.failed} failed`);
  if (x.lost_deliveries) bad.push(`${x.lost_deliveries} lost`);
  if (bad.length) s += ` (${bad.join(", ")})`;
  else if (!ok(r)) s += " *";
  return s;
};

const best = {};
for (const t of targets) {
  const passed = runs.filter((r) => r.target === t && ok(r)).map((r) => r.rate);
  best[t] = passed.length ? Math.max(...passed) : 0;
}
const topRate = rates[rates.length - 1];
const bestText = (t) => (best[t] ? `${best[t]}${best[t] === topRate ? "+" : ""}` : "< " + rates[0]);

const header = ["sends/s (x members deliveries)", ...targets];
const rows = [];
for (const rate of rates) {
  const g = runs.find((r) => r.rate === rate && r.groups)?.groups;
  rows.push([`${rate}${g ? ` (${g} groups)` : ""}`, ...targets.map((t) => cell(runs.find((r) => r.target === t && r.rate === rate)))]);
}
rows.push(["highest sends/s, p99 < " + LIMIT + " ms, none lost", ...targets.map(bestText)]);
if (targets.includes(REF)) {
  rows.push([`ratio to ${REF}`, ...targets.map((t) => (best[REF] ? (best[t] / best[REF]).toFixed(2) + (best[t] === topRate || best[REF] === topRate ? " (sweep top)" : "") : "-"))]);
}
if (targets.includes("node-memory")) {
  rows.push(["ratio to node-memory", ...targets.map((t) => (best["node-memory"] ? (best[t] / best["node-memory"]).toFixed(2) : "-"))]);
}
const rss = (t, phase) => lines.find((l) => l.kind === "rss" && l.target === t && l.phase === phase)?.mib;
rows.push(["RSS MiB: start -> after the sweep", ...targets.map((t) => (rss(t, "start") ? `${rss(t, "start").toFixed(0)} -> ${rss(t, "after")?.toFixed(0) ?? "-"}` : "-"))]);
for (const n of [...new Set(lines.filter((l) => l.kind === "idle").map((l) => l.sockets))].sort((a, b) => a - b)) {
  rows.push([`KiB per idle socket (${n} sockets)`, ...targets.map((t) => {
    const l = lines.find((x) => x.kind === "idle" && x.target === t && x.sockets === n);
    if (!l) return "-";
    return l.connected === n ? l.per_socket_kib.toFixed(1) : `${l.connected}/${n} connected`;
  })]);
}

const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (cells) => "| " + cells.map((c, i) => String(c).padEnd(widths[i])).join(" | ") + " |";
console.log(line(header));
console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
for (const r of rows) console.log(line(r));
console.log(`\nCells: delivery latency p50 / p99 in ms (send to receipt by each of the group's members). * = p99 >= ${LIMIT} ms.` +
  ` "+" = passed the sweep's top rate, so the ratio is a lower bound. Raw JSON lines: ${file}`);
