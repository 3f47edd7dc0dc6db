// Reads the chat_message_hop_seconds histograms from each given /metrics URL and prints them
// summed, as one JSON object: { <hop>: { buckets: [[le, cumulative count], ...], sum, count } }
// (le in seconds, "+Inf" last). scripts/bench-realtime.sh keeps one after each rate;
// table.mjs turns the differences into the per-hop table.
//   node hops.mjs http://127.0.0.1:PORT/metrics ...
const NAME = "chat_message_hop_seconds";
const hops = {};
for (const url of process.argv.slice(2)) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  for (const line of (await res.text()).split("\n")) {
    const m = line.match(/^chat_message_hop_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    const h = (hops[labels.hop] ??= { buckets: [], sum: 0, count: 0 });
    const value = Number(m[3]);
    if (m[1] === "sum") h.sum += value;
    else if (m[1] === "count") h.count += value;
    else {
      const le = labels.le === "+Inf" ? "+Inf" : Number(labels.le);
      const b = h.buckets.find((x) => x[0] === le);
      if (b) b[1] += value;
      else h.buckets.push([le, value]);
    }
  }
}
for (const h of Object.values(hops)) h.buckets.sort((a, b) => (a[0] === "+Inf" ? 1 : b[0] === "+Inf" ? -1 : a[0] - b[0]));
if (!Object.keys(hops).length) throw new Error(`no ${NAME} in ${process.argv.slice(2).join(" ")}`);
console.log(JSON.stringify(hops));
