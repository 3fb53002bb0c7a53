/**
 * The Qwen2-VL / Qwen2.5-VL vision tower graph (patch embedding, 2-D rotary attention within each
 * image or Qwen2.5-VL window, LayerNorm/RMSNorm blocks, the 2x2 patch merger) against
 * transformers' `get_image_features` on the tiny checkpoints: every fixture image alone (several
 * sizes and aspect ratios, windows that do and do not divide the grid) and two images in one run,
 * within 1e-4.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { parseQwen2VLConfig, type Qwen2VLConfig } from '../../sidecar/src/model/architectures/qwen2vl/config.js';
import { buildQwen2VLVisionGraph } from '../../sidecar/src/model/architectures/qwen2vl/visionGraph.js';
import { unpermuteMerged, visionInputs, type Grid } from '../../sidecar/src/model/architectures/qwen2vl/visionInputs.js';
import { CheckpointVisionWeights } from './qwen2vlWeights.js';
import { maxRelDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');
const TOLERANCE = 1e-4;

interface Fixture {
  model_dir: string;
  images: { file: string; image_grid_thw: Grid }[];
}

for (const model of ['tiny-qwen2-vl', 'tiny-qwen2.5-vl']) {
  describe(`Qwen2-VL vision tower parity with transformers: ${model}`, () => {
    const { case: fixture, tensor } = parityFixture<Fixture>(model);
    const config: Qwen2VLConfig = parseQwen2VLConfig(JSON.parse(readFileSync(join(root, fixture.model_dir, 'config.json'), 'utf8')));
    let session: ort.InferenceSession;

    before(async () => {
      const weights = new CheckpointVisionWeights(join(root, fixture.model_dir));
      const graph = buildQwen2VLVisionGraph(config.vision, weights);
      session = await ort.InferenceSession.create(graph, { externalData: [weights.load()], intraOpNumThreads: 1, interOpNumThreads: 1 });
    });
    after(async () => session.release());

    const encode = async (images: number[]): Promise<Float32Array> => {
      const inputs = visionInputs(
        config.vision,
        images.map((i) => tensor(`images.${i}.pixel_values`)),
        images.map((i) => fixture.images[i].image_grid_thw),
      );
      const hd = config.vision.hiddenSize / config.vision.numHeads;
      const patchLen = inputs.pixels.length / inputs.rows;
      const feeds: Record<string, ort.Tensor> = {
        pixel_values: new ort.Tensor('float32', inputs.pixels, [inputs.rows, patchLen]),
        rotary_cos: new ort.Tensor('float32', inputs.cos, [inputs.rows, hd]),
        rotary_sin: new ort.Tensor('float32', inputs.sin, [inputs.rows, hd]),
        image_segment: new ort.Tensor('int64', inputs.imageSegment, [inputs.rows]),
      };
      if (config.vision.windowSize !== null) feeds.window_segment = new ort.Tensor('int64', inputs.windowSegment, [inputs.rows]);
      const out = await session.run(feeds);
      return unpermuteMerged(out.image_features.data as Float32Array, inputs.mergedOrder, config.text.hiddenSize);
    };

    it('encodes each image alone (every size and aspect ratio) to the same merged features', async () => {
      let worst = 0;
      for (const [i, img] of fixture.images.entries()) {
        const diff = maxRelDiff(await encode([i]), tensor(`images.${i}.features`));
        assert.ok(diff <= TOLERANCE, `${img.file} ${JSON.stringify(img.image_grid_thw)}: max rel diff ${diff}`);
        worst = Math.max(worst, diff);
      }
      console.log(`${model}: image features vs transformers, worst max rel diff over ${fixture.images.length} images: ${worst.toExponential(2)}`);
    });

    it('encodes several images in one run as it does each alone (attention stays within each image)', async () => {
      const together = await encode([0, 2, 3]);
      const want = [0, 2, 3].map((i) => tensor(`images.${i}.features`));
      const joined = new Float32Array(want.reduce((n, w) => n + w.length, 0));
      let at = 0;
      for (const w of want) {
        joined.set(w, at);
        at += w.length;
      }
      const diff = maxRelDiff(together, joined);
      assert.ok(diff <= TOLERANCE, `max rel diff ${diff}`);
    });
  });
}
