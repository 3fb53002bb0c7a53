/* eslint-disable -- plain CommonJS sample for tools/host; the repository's TypeScript rules do not apply */
// Minimal extension: one command that returns a value the test can assert on.
'use strict';
const vscode = require('vscode');

function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('hostSample.hello', (name = 'world') => ({
      greeting: `hello, ${name}`,
      vscodeVersion: vscode.version,
      // proves the extension runs in the Node extension host (not a web worker)
      node: process.versions.node,
    })),
  );
  return { activatedAt: Date.now() };
}

function deactivate() {}

module.exports = { activate, deactivate };
