import { LlavaProcessor } from '../sidecar/src/model/processor.js';
import { imageBombs } from './fuzz/imageBombs.js';
(async () => {
  const p = LlavaProcessor.open('test/fixtures/models/tiny-llava-llama', 399, 16);
  for (const { name, bytes } of imageBombs()) {
    const s = performance.now();
    const r = await p.preprocessImage(bytes).then((r) => `ok ${r.width}x${r.height}`, (e: Error) => `${e.name}: ${e.message.slice(0, 160)}`);
    console.log(`${name}: ${(performance.now() - s).toFixed(1)} ms ${r}`);
  }
})();
import { gifWithFrames, tiffWithPages } from './fuzz/imageBombs.js';
(async () => {
  const p = LlavaProcessor.open('test/fixtures/models/tiny-llava-llama', 399, 16);
  for (const [name, bytes] of [['gif 200k', gifWithFrames(200_000)], ['tiff 170k', tiffWithPages(170_000)], ['gif screen', gifWithFrames(2, 65535, 65535, 1, 1)]] as const) {
    const s = performance.now();
    const r = await p.preprocessImage(bytes).then((r) => `ok ${r.width}x${r.height}`, (e: Error) => `${e.name}: ${e.message.slice(0, 160)}`);
    console.log(`${name} ${bytes.length}: ${(performance.now() - s).toFixed(1)} ms ${r}`);
  }
})();
