/**
 * The model info's `maxTokensPerImage`, which the chat's token count takes per image where an
 * image's tokens depend on its size: SmolVLM (tiles plus a global image), Qwen2-VL (its own
 * resolution) and LLaVA-NeXT / OneVision (tiles at a pinpoint, unpadded). No image becomes more, and
 * a large image comes close (SmolVLM's square one reaches it, and so does an image of a pinpoint's
 * size; Qwen2-VL's bound is max_pixels in merged patches, which only some aspect ratios fill exactly).
 */
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';

const root = join(__dirname, '../..');
const png = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: { r: 30, g: 120, b: 200 } } }).png().toBuffer();
const SIZES: [number, number][] = [[16, 16], [48, 20], [200, 60], [60, 200], [500, 500], [1000, 1000], [1000, 800], [1200, 1000]];

const ANYRES = ['tiny-llava-next', 'tiny-llava-onevision', 'tiny-llava-next-siglip', 'tiny-llava-onevision-clip'];

for (const model of ['tiny-smolvlm', 'tiny-smolvlm-nosplit', 'tiny-qwen2-vl', 'tiny-qwen2.5-vl', ...ANYRES]) {
  describe(`${model}: the most tokens one image can become`, () => {
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(root, 'test/fixtures/models', model), { threads: 1 });
    });
    after(async () => runtime?.release());

    it('bounds every image; a large one comes close', async () => {
      const most = runtime.info.maxTokensPerImage;
      assert.ok(most !== undefined && most > 0, `maxTokensPerImage ${most}`);
      // Any resolution: every pinpoint's own size too (config.json's [height, width] pairs).
      const config = JSON.parse(readFileSync(join(root, 'test/fixtures/models', model, 'config.json'), 'utf8')) as { image_grid_pinpoints?: [number, number][] };
      const sizes = [...SIZES, ...(config.image_grid_pinpoints ?? []).map(([h, w]): [number, number] => [w, h])];
      const tokens = await Promise.all(
        sizes.map(async ([w, h]) => {
          // The prompt tokens an image becomes: its feature rows.
          return (await runtime.encodeImages([await png(w, h)])).length / runtime.info.hiddenSize;
        }),
      );
      for (const [i, n] of tokens.entries()) assert.ok(n <= most, `${sizes[i].join(' x ')}: ${n} tokens, above ${most}`);
      if (model.startsWith('tiny-smolvlm') || ANYRES.includes(model)) assert.equal(Math.max(...tokens), most);
      else assert.ok(Math.max(...tokens) >= 0.8 * most, `the largest image: ${Math.max(...tokens)} of ${most}`);
    });
  });
}
