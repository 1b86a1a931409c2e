// Tokenise .nn files with nnspec.tmLanguage.json through the TextMate engine VS Code uses
// (vscode-textmate + vscode-oniguruma), and print the tokens as JSON:
//   {"file": [[[start, end, [scope, ...]], ...] per line], ...}
// Usage: node editors/tokenize.js FILE...  (modules from editors/node_modules or NODE_PATH).
// Exit 3 when the engine is not installed (npm ci --prefix editors).
"use strict";
const fs = require("fs");
const path = require("path");

let vsctm, oniguruma;
try {
  vsctm = require("vscode-textmate");
  oniguruma = require("vscode-oniguruma");
} catch (e) {
  process.stderr.write(`the TextMate engine is not installed: ${e.message}\n`);
  process.exit(3);
}

const wasm = fs.readFileSync(
  path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm"));
const grammarPath = path.join(__dirname, "nnspec.tmLanguage.json");

async function main() {
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.length));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => scopeName === "source.nnspec"
      ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, "utf8"), grammarPath) : null,
  });
  const grammar = await registry.loadGrammar("source.nnspec");
  const out = {};
  for (const file of process.argv.slice(2)) {
    let stack = vsctm.INITIAL;
    out[file] = fs.readFileSync(file, "utf8").split("\n").map((line) => {
      const r = grammar.tokenizeLine(line, stack);
      stack = r.ruleStack;
      return r.tokens.map((t) => [t.startIndex, Math.min(t.endIndex, line.length), t.scopes]);
    });
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
