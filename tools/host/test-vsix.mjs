#!/usr/bin/env node
// `npm run test:vsix`: installs the packaged .vsix into the offline VS Code host the way a user
// would (code-server --install-extension) and runs the host test suite against the INSTALLED
// copy, so what the package lacks (a bundle, a native binary, media) fails here.
//
//   node tools/host/test-vsix.mjs [path/to.vsix] [--screenshots DIR]
//   (default .vsix: the one `npm run package` writes; --screenshots: as run-tests.mjs, see
//   `npm run screenshots`)
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { hostLayout } from './layout.mjs';

const root = join(import.meta.dirname, '../..');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { values: options, positionals } = parseArgs({ allowPositionals: true, options: { screenshots: { type: 'string' } } });
const vsix = positionals[0] ?? join(root, `${manifest.name}-${process.platform}-${process.arch}-${manifest.version}.vsix`);
const { node: node22, codeServer } = hostLayout();

const dir = mkdtempSync(join(tmpdir(), 'lookm-vsix-'));
try {
  const extensions = join(dir, 'extensions');
  execFileSync(node22, [codeServer, '--extensions-dir', extensions, '--user-data-dir', join(dir, 'data'), '--install-extension', vsix], { stdio: 'inherit', env: { ...process.env, HOME: dir } });
  const installed = readdirSync(extensions).find((d) => d.startsWith(`${manifest.publisher}.${manifest.name}-`));
  if (!installed) throw new Error(`the extension was not installed into ${extensions}`);
  console.log(`installed: ${installed}`);
  // VS Code resolves `require('vscode')` by the requiring file's extension folder: the test module
  // (not part of the package) goes inside the installed copy.
  const tests = join(extensions, installed, 'dist-test/host.js');
  mkdirSync(dirname(tests), { recursive: true });
  copyFileSync(join(root, 'dist-test/host.js'), tests);
  // The host starts on this extensions folder, so the extension is an installed one (its page, its
  // README and icon are the package's), and LOOKM_INSTALLED_VSIX tells the tests so.
  const screenshots = options.screenshots ? ['--screenshots', options.screenshots] : [];
  execFileSync(process.execPath, [join(root, 'tools/host/run-tests.mjs'), '--extension', join(extensions, installed), '--extensions-dir', extensions, '--tests', tests, '--env', `LOOKM_REPO=${root}`, '--env', 'LOOKM_INSTALLED_VSIX=1', '--timeout', '240', ...screenshots], { stdio: 'inherit' });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
