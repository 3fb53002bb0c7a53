/**
 * The model info's `maxTokensPerImage`, which the chat's token count takes per image where an
 * image's tokens depend on its size: SmolVLM (tiles plus a global image) and Qwen2-VL (its own
 * resolution). No image becomes more, and a large image comes close (SmolVLM's square one reaches it;
 * Qwen2-VL's bound is max_pixels in merged patches, which only some aspect ratios fill exactly).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';

const root = join(__dirname, '../..');
const png = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: { r: 30, g: 120, b: 200 } } }).png().toBuffer();
const SIZES: [number, number][] = [[16, 16], [48, 20], [200, 60], [60, 200], [500, 500], [1000, 1000], [1000, 800], [1200, 1000]];

for (const model of ['tiny-smolvlm', 'tiny-smolvlm-nosplit', 'tiny-qwen2-vl', 'tiny-qwen2.5-vl']) {
  describe(`${model}: the most tokens one image can become`, () => {
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(root, 'test/fixtures/models', model), { threads: 1 });
    });
    after(async () => runtime?.release());

    it('bounds every image; a large one comes close', async () => {
      const most = runtime.info.maxTokensPerImage;
      assert.ok(most !== undefined && most > 0, `maxTokensPerImage ${most}`);
      const tokens = await Promise.all(
        SIZES.map(async ([w, h]) => {
          // The prompt tokens an image becomes: its feature rows.
          return (await runtime.encodeImages([await png(w, h)])).length / runtime.info.hiddenSize;
        }),
      );
      for (const [i, n] of tokens.entries()) assert.ok(n <= most, `${SIZES[i].join(' x ')}: ${n} tokens, above ${most}`);
      if (model.startsWith('tiny-smolvlm')) assert.equal(Math.max(...tokens), most);
      else assert.ok(Math.max(...tokens) >= 0.8 * most, `the largest image: ${Math.max(...tokens)} of ${most}`);
    });
  });
}
