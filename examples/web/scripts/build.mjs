// npm run build: bundles src/main.ts with socket.io-client into dist/app.js and copies
// index.html and style.css beside it; dist/ holds exactly these three files (the server embeds
// them). The output depends only on the sources and the locked versions (no timestamps, no
// absolute paths, no source map), so a build reproduces the committed dist/ byte for byte.
//
// npm run check:dist (this script with --check) builds in memory and compares with dist/
// without writing anything: exit 1, naming the files, when dist/ is stale.
import { build } from "esbuild";
import { readdir, readFile, rm, mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

process.chdir(fileURLToPath(new URL("..", import.meta.url)));
const checkOnly = process.argv.includes("--check");

const bundle = await build({
  entryPoints: ["src/main.ts"],
  outfile: "dist/app.js",
  write: false,
  bundle: true,
  format: "esm",
  target: "es2020",
  platform: "browser",
  minify: false,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
});
const outputs = {
  "index.html": await readFile("index.html"),
  "app.js": Buffer.from(bundle.outputFiles[0].contents),
  "style.css": await readFile("style.css"),
};

if (checkOnly) {
  const present = await readdir("dist").catch(() => []);
  const problems = present.filter((name) => !(name in outputs)).map((name) => `dist/${name} should not exist`);
  for (const [name, bytes] of Object.entries(outputs)) {
    const committed = await readFile(`dist/${name}`).catch(() => null);
    if (!committed) problems.push(`dist/${name} is missing`);
    else if (!committed.equals(bytes)) problems.push(`dist/${name} differs from a fresh build`);
  }
  if (problems.length) {
    console.error(`${problems.join("\n")}\nRun \`npm run build\` in examples/web and commit dist/.`);
    process.exit(1);
  }
  console.log("dist/ matches the sources");
} else {
  await mkdir("dist", { recursive: true });
  for (const name of await readdir("dist")) {
    if (!(name in outputs)) await rm(`dist/${name}`, { recursive: true });
  }
  for (const [name, bytes] of Object.entries(outputs)) await writeFile(`dist/${name}`, bytes);
}
