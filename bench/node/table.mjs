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
const mib = (t, phase) => rss(t, phase)?.toFixed(0) ?? "-";
rows.push(["RSS MiB: start -> after the sweep -> idle", ...targets.map((t) => (rss(t, "start") ? `${mib(t, "start")} -> ${mib(t, "after")} -> ${mib(t, "idle")}` : "-"))]);
for (const n of [...new Set(lines.filter((l) => l.kind === "idle").map((l) => l.sockets))].sort((a, b) => a - b)) {
  rows.push([`KiB per idle socket (${n} sockets)`, ...targets.map((t) => {
    const l = lines.find((x) => x.kind === "idle" && x.target === t && x.sockets === n);
    if (!l) return "-";
    return l.connected === n ? l.per_socket_kib.toFixed(1) : `${l.connected}/${n} connected`;
  })]);
}

function print(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => "| " + cells.map((c, i) => String(c).padEnd(widths[i])).join(" | ") + " |";
  console.log(line(header));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const r of rows) console.log(line(r));
}
print(header, rows);
console.log(`\nCells: delivery latency p50 / p99 in ms (send to receipt by each of the group's members). * = p99 >= ${LIMIT} ms.` +
  ` "+" = passed the sweep's top rate, so the ratio is a lower bound. Raw JSON lines: ${file}`);

// The servers' CPU over the measured window alone (the Rust driver's window_cpu): what each
// send costs, comparable between targets whatever their latency did.
if (runs.some((r) => r.result?.window_cpu)) {
  const cpu = (r) => {
    const w = r?.result?.window_cpu;
    return w ? `${w.cores.toFixed(2)} / ${w.us_per_send === null ? "-" : Math.round(w.us_per_send)}` : "";
  };
  const cpuRows = rates.map((rate) => [String(rate), ...targets.map((t) => cpu(runs.find((r) => r.target === t && r.rate === rate)))]);
  console.log("\nServer CPU over the measured window (warm-up end to the last send due): cores / CPU µs per send");
  print(["sends/s", ...targets], cpuRows);
}

// The multi-process stack's time per hop: the differences between the snapshots of its
// chat_message_hop_seconds histograms (summed over its processes) taken after each rate.
const HOPS = ["command_queued", "command_log", "store_queued", "store", "fact_log", "emit"];
const snaps = lines.filter((l) => l.kind === "hops");
// FACTS_RELAY of the run: with `redis` the facts hop is Redis pub/sub, not the Kafka stand-in.
const relay = snaps[0]?.relay ?? "kafka";
const LOG_HOPS = relay === "redis" ? ["command_log"] : ["command_log", "fact_log"];
if (snaps.length > 1) {
  const delta = (a, b) => Object.fromEntries(HOPS.map((hop) => {
    const [x, y] = [a.hops[hop], b.hops[hop]];
    return [hop, {
      count: y.count - x.count,
      sum: y.sum - x.sum,
      buckets: y.buckets.map(([le, c], i) => [le, c - x.buckets[i][1]]),
    }];
  }));
  // The q-quantile, linear within its bucket (">" when it lies past the last bound).
  const quantile = (h, q) => {
    const target = q * h.count;
    let [lo, below] = [0, 0];
    for (const [le, c] of h.buckets) {
      if (c >= target && c > below) {
        if (le === "+Inf") return { ms: lo * 1000, over: true };
        return { ms: (lo + (le - lo) * (target - below) / (c - below)) * 1000 };
      }
      if (le !== "+Inf") [lo, below] = [le, c];
    }
    return { ms: lo * 1000, over: true };
  };
  const ms = (v) => (v < 1 ? v.toFixed(2) : fmt(v));
  const q = (h, p) => { const r = quantile(h, p); return (r.over ? ">" : "") + ms(r.ms); };
  const columns = [];
  for (let i = 1; i < snaps.length; i++) columns.push({ label: `${snaps[i].at}/s`, rate: Number(snaps[i].at), d: delta(snaps[i - 1], snaps[i]) });
  if (columns.length > 1) columns.push({ label: "whole sweep", d: delta(snaps[0], snaps[snaps.length - 1]) });
  const mean = (h) => (h.count ? (h.sum / h.count) * 1000 : 0);
  const total = (d) => HOPS.reduce((t, hop) => t + mean(d[hop]), 0);
  const share = (d, hops) => (total(d) ? Math.round((100 * hops.reduce((t, hop) => t + mean(d[hop]), 0)) / total(d)) : 0);
  const hopRows = HOPS.map((hop) => [hop, ...columns.map(({ d }) => (d[hop].count
    ? `${ms(mean(d[hop]))} (${share(d, [hop])} %), ${q(d[hop], 0.5)} / ${q(d[hop], 0.99)}` : "-"))]);
  hopRows.push(["sum of the means", ...columns.map(({ d }) => ms(total(d)))]);
  hopRows.push([`Kafka stand-in: ${LOG_HOPS.join(" + ")}`, ...columns.map(({ d }) => `${share(d, LOG_HOPS)} %`)]);
  hopRows.push(["messages stored (store count)", ...columns.map(({ d }) => String(d.store.count))]);
  const run = (rate) => runs.find((r) => r.kind === "run" && r.target === "chat-stack" && r.rate === rate);
  hopRows.push(["cores: roles / MongoDB / Kafka stand-ins / nginx", ...columns.map(({ rate }) => {
    const r = run(rate);
    if (!r) return "";
    const o = r.other_cores ?? {};
    return [r.server_cores, o.mongodb, o.kafka, o.ingress].map((c) => (c === undefined ? "-" : c.toFixed(2))).join(" / ");
  })]);
  console.log(`\nchat-stack (facts over ${relay === "redis" ? "Redis pub/sub" : "Kafka"}), time per hop` +
    " (the roles' chat_message_hop_seconds, warm-up included):" +
    " mean in ms (its share of the sum of the means), p50 / p99 in ms");
  print(["hop", ...columns.map((c) => c.label)], hopRows);
  console.log((relay === "redis"
    ? "command_log: the Kafka stand-in's produce, broker and fetch; fact_log: Redis's PUBLISH and relay to the" +
      " subscribers (FACTS_RELAY=redis)"
    : "command_log and fact_log: the Kafka stand-in's produce, broker and fetch") +
    " (wall clocks of two processes); fact_log and emit are counted once per chat replica. p50/p99 are" +
    " interpolated within the histogram's buckets (x2 apart); means are exact.");
  const procs = (phase) => lines.find((l) => l.kind === "rss" && l.target === "chat-stack" && l.phase === phase)?.procs;
  const [start, after, idle] = [procs("start"), procs("after"), procs("idle")];
  if (start) {
    console.log("chat-stack RSS MiB, start -> after the sweep -> idle: " +
      Object.keys(start).map((n) => `${n} ${[start, after, idle].map((p) => p?.[n]?.toFixed(0) ?? "-").join(" -> ")}`).join(", "));
  }
}
