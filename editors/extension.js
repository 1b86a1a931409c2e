// The nnspec extension for VS Code: the TextMate grammar (declared in package.json) and a
// language client that starts `nnspec lsp` over stdio for .nn files: diagnostics as you
// type, hover with the inferred shapes, go-to-definition and completion.
// The executable is the setting `nnspec.path` (default: `nnspec` on PATH), with
// `nnspec.args` put before `lsp`.
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client = null;

function serverOptions() {
  const config = vscode.workspace.getConfiguration("nnspec");
  const command = config.get("path") || "nnspec";
  const args = [...(config.get("args") || []), "lsp"];
  return { command, args, transport: TransportKind.stdio };
}

async function start(context) {
  const output = vscode.window.createOutputChannel("nnspec");
  context.subscriptions.push(output);
  client = new LanguageClient("nnspec", "nnspec language server", serverOptions(), {
    documentSelector: [
      { scheme: "file", language: "nnspec" },
      { scheme: "untitled", language: "nnspec" },
    ],
    outputChannel: output,
    synchronize: {
      fileEvents: vscode.workspace.createFileSystemWatcher("**/*.nn"),
    },
  });
  try {
    await client.start();
  } catch (e) {
    const { command } = serverOptions();
    vscode.window.showErrorMessage(
      `nnspec: could not start the language server with '${command} lsp' (${e.message || e}). ` +
      "Install it with pip install 'nnspec[lsp]', or set nnspec.path to its executable.");
  }
}

async function stop() {
  if (client) {
    const c = client;
    client = null;
    if (c.isRunning()) {
      await c.stop();
    }
  }
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand("nnspec.restartServer", async () => {
      await stop();
      await start(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration("nnspec.path") || e.affectsConfiguration("nnspec.args")) {
        await stop();
        await start(context);
      }
    }));
  await start(context);
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
