/**
 * The graphs' manifests, which are all the runtime reads of a graph's inputs and outputs: every
 * decoder lists each layer's past and outputs by role once, a past position only for the layers
 * with a sliding window; an image encoder its pixels and features with their fixed sizes; a role
 * a graph lacks is named in the error.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { architectureFor } from '../../sidecar/src/model/architectures/registry.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { fixedDim, valueOf, type IoRole } from '../../sidecar/src/model/graph/manifest.js';
import { WeightPool } from '../../sidecar/src/model/graph/weightPool.js';

const models = join(__dirname, '../fixtures/models');
const PER_LAYER: IoRole[] = ['pastKey', 'pastValue', 'key', 'value', 'columnSums', 'windowColumnSums'];

describe('graph manifests', () => {
  for (const name of ['tiny-llava-llama', 'tiny-llava-qwen2-hub', 'tiny-qwen2-text', 'tiny-mistral-text']) {
    it(`${name}: the decoder's values by role, per layer; the image encoder's sizes`, () => {
      const checkpoint = Checkpoint.open(join(models, name));
      const { config } = checkpoint;
      const sessions = architectureFor(config.architecture).sessions(config, { weightBits: 32 });
      const decoder = sessions.find((s) => s.role === 'decoder')!;
      const { manifest } = decoder.build(new WeightPool(checkpoint));
      const all = [...manifest.inputs, ...manifest.outputs];
      for (const role of ['embeds', 'positions', 'attentionMask', 'windowRows', 'hidden', 'lastLogits'] as const) assert.equal(all.filter((v) => v.role === role).length, 1, role);
      // Every row's logits come from the separate LM-head graph: onnxruntime would run a [chunk, vocab] head here on every step, fetched or not.
      assert.equal(all.some((v) => v.role === 'logits'), false, 'the decoder has no all-rows logits output');
      for (let layer = 0; layer < config.text.numLayers; layer++) {
        for (const role of PER_LAYER) assert.equal(all.filter((v) => v.role === role && v.layer === layer).length, 1, `${role} of layer ${layer}`);
        const windowed = config.text.layerWindows[layer] !== null;
        assert.equal(manifest.inputs.some((v) => v.role === 'pastPosition' && v.layer === layer), windowed, `past positions of layer ${layer}`);
      }
      assert.equal(fixedDim(valueOf(manifest.inputs, 'embeds'), 1), config.text.hiddenSize);
      assert.equal(fixedDim(valueOf(manifest.outputs, 'lastLogits'), 1), config.text.vocabSize);
      const encoder = sessions.find((s) => s.role === 'imageEncoder');
      assert.equal(encoder !== undefined, config.vision !== null, 'an image encoder exactly when the model reads images');
      if (encoder) {
        const image = architectureFor(config.architecture).imageInput(config)!;
        const built = encoder.build(new WeightPool(checkpoint)).manifest;
        assert.equal(fixedDim(valueOf(built.inputs, 'pixels'), 2), image.imageSize);
        assert.equal(fixedDim(valueOf(built.outputs, 'imageFeatures'), 1), image.tokensPerImage);
        assert.equal(fixedDim(valueOf(built.outputs, 'imageFeatures'), 2), config.text.hiddenSize);
      }
    });
  }

  it('names a role the graph lacks', () => {
    assert.throws(() => valueOf([], 'pastKey', 3), /the graph has no pastKey of layer 3 value/);
    assert.throws(() => fixedDim({ name: 'x', type: 'float32', dims: ['chunk'], role: 'embeds' }, 0), /x has a symbolic dimension chunk at axis 0/);
  });
});
