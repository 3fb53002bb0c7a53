import { mkdtempSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlavaRuntime } from '../sidecar/src/runtime/llava.js';
import { hostileModels } from './fuzz/hostileModels.js';
(async () => {
  const root = mkdtempSync(join(tmpdir(), 'x-'));
  for (const [i, m] of hostileModels().entries()) {
    const dir = join(root, String(i));
    cpSync('test/fixtures/models/tiny-llava-llama', dir, { recursive: true });
    m.breakIt(dir);
    const s = performance.now();
    const msg = await LlavaRuntime.load(dir, { threads: 1 }).then(() => 'LOADED', (e: Error) => e.message.replace(root, '<tmp>'));
    console.log(`${m.name}: ${(performance.now() - s).toFixed(1)} ms\n   ${msg.replace(/\n/g, ' | ')}`);
  }
})();
