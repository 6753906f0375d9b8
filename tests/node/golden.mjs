// Runs every golden case through the plugin component in Node.js (jco).
//
// Run with (the Rust test `node::golden_cases_agree_in_node_via_jco` does this):
//   npm ci && npx jco transpile PLUGIN.wasm -o OUT --name plugin
//   node golden.mjs OUT/plugin.js ../golden/cases ../fixtures
//
// Each case's request is built exactly as tests/golden.rs builds it (headers
// file, extra headers, form encoding, HMAC signing), or its poll observation
// taken as it is, passed to the component's `evaluate-json`, and the result compared with expected.json
// after JSON normalization (parse, then compare as values).

import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { createHmac } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { pathToFileURL } from "node:url";

const [modulePath, casesDir, fixturesDir] = process.argv.slice(2);
if (!modulePath || !casesDir || !fixturesDir) {
  console.error("usage: node golden.mjs TRANSPILED.js CASES_DIR FIXTURES_DIR");
  process.exit(2);
}
const { json: jsonApi } = await import(pathToFileURL(modulePath).href);

function readHeaders(path) {
  const out = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const l = line.replace(/\r$/, "");
    if (!l.trim() || l.trimStart().startsWith("#")) continue;
    const i = l.indexOf(":");
    out.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
  }
  return out;
}

function buildInput(c) {
  // A poll observation is already in evaluate-json's format.
  if (c.poll !== undefined) {
    return JSON.stringify({ stacks: c.stacks, delivery: { poll: c.poll }, context: c.context ?? {} });
  }
  let json = Buffer.alloc(0);
  if (c.fixture !== undefined) json = readFileSync(join(fixturesDir, c.fixture));
  else if (c.body !== undefined) json = Buffer.from(c.body, "utf8");
  // A derived payload: each [from, to] replaces the one occurrence of from.
  if (c.replace?.length) {
    let text = json.toString("utf8");
    for (const [from, to] of c.replace) {
      if (text.split(from).length !== 2) throw new Error(`replace ${JSON.stringify(from)}: not exactly once`);
      text = text.replace(from, () => to);
    }
    json = Buffer.from(text, "utf8");
  }
  const headers = [];
  let headersFile = null;
  if (c.headers) headersFile = join(fixturesDir, c.headers);
  else if (c.fixture && !c.no_headers_file) {
    const p = join(fixturesDir, c.fixture).replace(/\.json$/, ".headers");
    if (existsSync(p)) headersFile = p;
  }
  if (headersFile) headers.push(...readHeaders(headersFile));
  headers.push(...(c.extra_headers ?? []));
  let body = json;
  if (c.form) {
    headers.push(["Content-Type", "application/x-www-form-urlencoded"]);
    body = Buffer.from(new URLSearchParams({ payload: json.toString("utf8") }).toString(), "utf8");
  }
  if (c.sign) {
    const over = c.sign.over === "json" ? json : body;
    const mac = createHmac("sha256", c.sign.secret).update(over).digest("hex");
    headers.push([c.sign.header, (c.sign.prefix ?? "") + mac]);
  }
  return JSON.stringify({
    stacks: c.stacks,
    delivery: {
      http: {
        method: c.method ?? "POST",
        query: c.query ?? "",
        headers,
        body: body.toString("utf8"),
      },
    },
    context: c.context ?? {},
  });
}

let failed = 0;
let passed = 0;
for (const name of readdirSync(casesDir).sort()) {
  const dir = join(casesDir, name);
  if (!existsSync(join(dir, "case.json"))) continue;
  const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8"));
  const expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8"));
  let actual;
  try {
    actual = JSON.parse(jsonApi.evaluateJson(buildInput(c)));
  } catch (e) {
    if (e && e.payload && typeof e.payload.tag === "string") {
      actual = { error: { kind: e.payload.tag, message: e.payload.val } };
    } else {
      actual = { trap: String(e) };
    }
  }
  if (isDeepStrictEqual(actual, expected)) {
    passed++;
  } else {
    failed++;
    console.log(`${name}: differs\n  expected: ${JSON.stringify(expected)}\n  actual:   ${JSON.stringify(actual)}`);
  }
}
console.log(`node golden: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
