// Bundles the extension and the sidecar into dist/. Native packages stay external: they are
// loaded from node_modules at run time (onnxruntime-node ships per-platform binaries).
import * as esbuild from 'esbuild';
import { existsSync } from 'node:fs';

const watch = process.argv.includes('--watch');
const common = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', sourcemap: true, logLevel: 'info' };

const targets = [
  { entryPoints: ['extension/src/extension.ts'], outfile: 'dist/extension.js', external: ['vscode'] },
  { entryPoints: ['sidecar/src/main.ts'], outfile: 'dist/sidecar.js', external: ['onnxruntime-node', 'sharp'] },
  // The sidecar's engine runs in a worker thread started from dist/sidecar.js (see engine/host.ts).
  { entryPoints: ['sidecar/src/engine/worker.ts'], outfile: 'dist/engine.js', external: ['onnxruntime-node', 'sharp'] },
].filter((t) => existsSync(t.entryPoints[0]));

// `--host-tests`: the integration-test module a VS Code host loads (see tools/host/).
if (process.argv.includes('--host-tests')) {
  targets.splice(0, targets.length, { entryPoints: ['test/host/suite.ts'], outfile: 'dist-test/host.js', external: ['vscode'] });
}

for (const options of targets) {
  if (watch) await (await esbuild.context({ ...common, ...options })).watch();
  else await esbuild.build({ ...common, ...options });
}
