/**
 * Parity of the Idefics3 (SmolVLM) architecture with transformers
 * (`Idefics3ForConditionalGeneration`, float32, eager attention) on the tiny checkpoints of
 * tools/model/make_smolvlm.py: image features (tower, post-layernorm, pixel shuffle, projection)
 * per frame, the merged prompt embeddings, the prefill's logits, keys, values and attention column
 * sums (1e-4), chunked prefill equal to one pass, 32 greedy tokens, and a two-turn greedy
 * conversation on one cache. The processor side (ids, frames) is idefics3Processor.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isIdefics3Config, parseIdefics3Config } from '../../sidecar/src/model/architectures/idefics3/config.js';
import { idefics3 } from '../../sidecar/src/model/architectures/idefics3/index.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { idefics3PositionIds } from '../../sidecar/src/model/vision/towers/idefics3.js';
import { readSafetensorsHeader } from '../../sidecar/src/model/safetensors.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { VisionEncoder } from '../../sidecar/src/runtime/visionEncoder.js';
import { decoderParityTests, openEncoderAndDecoder, type DecoderCase } from './decoderParity.js';
import { maxRelDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');
const TOLERANCE = 1e-4;

function fixture(model: string, name: string) {
  const { case: c, has, tensor } = parityFixture<DecoderCase>(model, name);
  return { c, has, tensor };
}

const CASES: [string, string[]][] = [
  ['tiny-smolvlm', ['two-images', 'small-square', 'long', 'conversation']],
  ['tiny-smolvlm-nosplit', ['two-images', 'long', 'conversation']],
];

for (const [model, names] of CASES) {
  describe(`Idefics3 parity with transformers: ${model}`, () => {
    const dir = join(root, 'test/fixtures/models', model);
    let vision: VisionEncoder;
    let decoder: TextDecoder;
    let checkpoint: Checkpoint;
    before(async () => {
      checkpoint = Checkpoint.open(dir);
      assert.ok(isIdefics3Config(checkpoint.config), 'the registry parses it as Idefics3');
      ({ vision, decoder } = await openEncoderAndDecoder(checkpoint, idefics3.sessions(checkpoint.config, { weightBits: 32 })));
    });
    after(async () => {
      await vision.release();
      await decoder.release();
    });

    for (const name of names) {
      const { c, has, tensor } = fixture(model, name);

      it(`${name}: the same image features for every frame (tower, post-layernorm, pixel shuffle, projection)`, async () => {
        const pixels = tensor('pixel_values');
        const frames = pixels.length / (3 * vision.imageSize ** 2);
        const features = await vision.encode(pixels, frames);
        const diff = maxRelDiff(features, tensor('image_features'));
        assert.ok(diff <= TOLERANCE, `image features ${diff}`);
      });

      decoderParityTests(name, c, { has, tensor }, () => decoder);
    }
  });
}

describe('Idefics3 config', () => {
  it('counts the image side\'s parameters as the checkpoint holds them (memory figures)', () => {
    for (const model of ['tiny-smolvlm', 'tiny-smolvlm-nosplit']) {
      const dir = join(root, 'test/fixtures/models', model);
      const entries = readSafetensorsHeader(join(dir, 'model.safetensors'));
      const held = [...entries].filter(([name]) => name.startsWith('model.vision_model.') || name.startsWith('model.connector.')).reduce((n, [, e]) => n + e.shape.reduce((a, b) => a * b, 1), 0);
      const config = parseIdefics3Config(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
      assert.deepEqual(idefics3.imageSideParameters!(config), { read: held, unread: 0 }, model);
    }
  });

  const raw = JSON.parse(readFileSync(join(root, 'test/fixtures/models/tiny-smolvlm/config.json'), 'utf8')) as Record<string, unknown>;

  it('refuses what it does not support, naming the option', () => {
    assert.throws(() => parseIdefics3Config({ ...raw, scale_factor: 4 }), /scale_factor 4 does not divide the vision tower's 6 x 6 patch grid/);
    assert.throws(() => parseIdefics3Config({ ...raw, scale_factor: 1.5 }), /scale_factor/);
    assert.throws(() => parseIdefics3Config({ ...raw, text_config: { ...(raw.text_config as object), model_type: 'qwen2' } }), /text_config model_type "qwen2" is not supported \(llama only/);
    assert.throws(() => parseIdefics3Config({ ...raw, vision_config: { ...(raw.vision_config as object), hidden_act: 'relu6' } }), /vision hidden_act "relu6" is not supported/);
  });

  it('takes transformers\' defaults for what config.json leaves out', () => {
    const config = parseIdefics3Config({ architectures: ['Idefics3ForConditionalGeneration'], vision_config: { image_size: 512, patch_size: 16 } });
    assert.deepEqual([config.scaleFactor, config.imageTokenIndex, config.vision.hiddenSize, config.vision.numLayers, config.text.rmsNormEps, config.text.tieWordEmbeddings], [2, 128257, 1152, 12, 1e-5, false]);
    // Idefics3VisionConfig()'s own 224 / 32 makes a 7 x 7 grid, which scale_factor 2 cannot shuffle (transformers fails there too).
    assert.throws(() => parseIdefics3Config({ architectures: ['Idefics3ForConditionalGeneration'] }), /scale_factor 2 does not divide the vision tower's 7 x 7 patch grid/);
  });

  it('numbers the patches\' positions as transformers 4.57 buckets them (rows and columns 0 and 1 share a position)', () => {
    // torch: bucketize(arange(n) / n * (1 - 1e-6), arange(1 / n, 1.0, 1 / n), right=True)
    const side = (n: number) => idefics3PositionIds(n).slice(0, n);
    assert.deepEqual(side(4), [0, 0, 1, 2]);
    assert.deepEqual(side(6), [0, 0, 1, 2, 3, 4]);
    assert.deepEqual(side(32), [0, 0, ...Array.from({ length: 30 }, (_, k) => k + 1)]);
    assert.deepEqual(idefics3PositionIds(4).slice(4, 8), [0, 0, 1, 2], 'row 1 shares row 0\'s positions');
    assert.deepEqual(idefics3PositionIds(4).slice(8, 12), [4, 4, 5, 6]);
  });
});
