#!/usr/bin/env node
// `npm run package`: builds and packs the extension into lookm-vscode-<platform>-<arch>.vsix with
// @vscode/vsce. The package holds the two bundles (dist/extension.js, dist/sidecar.js), media/, the
// manifest, the user guide as its README (docs/USER.md, see vsixReadme.mjs), and the native
// packages the sidecar loads at run time (onnxruntime-node, sharp), for THIS platform only: .vscodeignore plus the other platforms' binaries, in a temporary ignore file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vsixReadme } from './vsixReadme.mjs';

const root = join(import.meta.dirname, '..');
const { platform, arch } = process;
const target = `${platform}-${arch}`;
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const out = join(root, `${manifest.name}-${target}-${manifest.version}.vsix`);
// Written by the build into dist/ (not committed); vsce packs it as the extension's readme.md.
const README = 'dist/README.md';

// vsce lets a negation win over any exclusion, so the broad "keep this package" lines are narrowed
// to this platform's binaries instead of excluding the others afterwards.
const narrowed = {
  '!node_modules/onnxruntime-node/**': ['!node_modules/onnxruntime-node/*', '!node_modules/onnxruntime-node/dist/**', `!node_modules/onnxruntime-node/bin/napi-v6/${platform}/${arch}/**`],
  '!node_modules/@img/**': ['!node_modules/@img/colour/**', `!node_modules/@img/sharp-${platform}-${arch}/**`, `!node_modules/@img/sharp-libvips-${platform}-${arch}/**`],
};
const ignore = readFileSync(join(root, '.vscodeignore'), 'utf8')
  .split('\n')
  .flatMap((line) => narrowed[line.trim()] ?? [line])
  .join('\n');
const dir = mkdtempSync(join(tmpdir(), 'lookm-package-'));
const ignoreFile = join(dir, '.vscodeignore');
writeFileSync(ignoreFile, ignore);

const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
try {
  run(process.execPath, ['esbuild.mjs']);
  // The extension page shows the user guide; the repository's README.md is for developers.
  writeFileSync(join(root, README), vsixReadme(readFileSync(join(root, 'docs/USER.md'), 'utf8')));
  run(process.execPath, [join(root, 'node_modules/@vscode/vsce/vsce'), 'package', '--target', target, '--ignoreFile', ignoreFile, '--readme-path', README, '--skip-license', '--allow-missing-repository', '--no-rewrite-relative-links', '--out', out]);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`${out}: ${(statSync(out).size / 2 ** 20).toFixed(1)} MiB`);
