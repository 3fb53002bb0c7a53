/* eslint-disable -- plain CommonJS sample for tools/host; the repository's TypeScript rules do not apply */
// Test module for tools/host/run-tests.mjs (also usable with @vscode/test-electron):
// exports run(): Promise<void>; a rejected promise makes the host exit non-zero.
//
// Variant "fail" (run({ variant: 'fail' }), test/failing.js, or HOST_SAMPLE_VARIANT=fail in the
// environment of the runner) adds a test that throws, to prove failures reach the exit code.
'use strict';
const assert = require('assert');
const fs = require('fs');
const vscode = require('vscode');

const EXTENSION_ID = 'local-test.host-sample';

async function run(opts = {}) {
  const variant = opts.variant || process.env.HOST_SAMPLE_VARIANT || 'pass';
  const tests = [
    ['extension is present and activates', async () => {
      const ext = vscode.extensions.getExtension(EXTENSION_ID);
      assert.ok(ext, `${EXTENSION_ID} not found`);
      const api = await ext.activate();
      assert.strictEqual(ext.isActive, true);
      assert.strictEqual(typeof api.activatedAt, 'number');
    }],
    ['command returns its result', async () => {
      const r = await vscode.commands.executeCommand('hostSample.hello', 'host');
      assert.strictEqual(r.greeting, 'hello, host');
      assert.strictEqual(r.vscodeVersion, vscode.version);
      assert.ok(r.node, 'expected to run in the Node extension host');
    }],
    ['the workspace folder is the one the runner opened', async () => {
      const folders = vscode.workspace.workspaceFolders || [];
      assert.strictEqual(folders.length, 1, 'expected one workspace folder');
      if (process.env.VSCODE_HOST_WORKSPACE) {
        assert.strictEqual(folders[0].uri.path, process.env.VSCODE_HOST_WORKSPACE);
      }
    }],
  ];
  if (variant === 'fail') {
    tests.push(['deliberate failure (variant "fail")', async () => {
      const r = await vscode.commands.executeCommand('hostSample.hello', 'host');
      assert.strictEqual(r.greeting, 'this is not what the command returns');
    }]);
  }

  const results = { variant, vscodeVersion: vscode.version, node: process.versions.node, tests: [] };
  for (const [name, fn] of tests) {
    const t0 = Date.now();
    try {
      await fn();
      results.tests.push({ name, ok: true, ms: Date.now() - t0 });
      console.log(`ok   - ${name}`);
    } catch (e) {
      results.tests.push({ name, ok: false, ms: Date.now() - t0, error: String((e && e.stack) || e) });
      console.error(`FAIL - ${name}: ${e && e.message}`);
    }
  }
  results.passed = results.tests.filter((t) => t.ok).length;
  results.failed = results.tests.length - results.passed;

  // The runner sets VSCODE_HOST_RESULTS_FILE and prints the file: extension-host console output
  // reaches it only as mangled browser console messages.
  if (process.env.VSCODE_HOST_RESULTS_FILE) {
    fs.writeFileSync(process.env.VSCODE_HOST_RESULTS_FILE, JSON.stringify(results, null, 2));
  }
  if (results.failed) {
    throw new Error(`${results.failed} of ${results.tests.length} test(s) failed`);
  }
}

module.exports = { run };
