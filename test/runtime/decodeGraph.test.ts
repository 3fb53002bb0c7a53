/**
 * What one decode step of the decoder graph computes, read from the graph itself (onnxruntime
 * runs every node whatever is fetched, so what a step costs is what the graph holds): no
 * full-vocabulary product over every row, and the past read only by the attention products,
 * never concatenated, transposed or broadcast into a copy.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { onnx } from 'onnx-proto';
import { architectureFor } from '../../sidecar/src/model/architectures/registry.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { WeightPool } from '../../sidecar/src/model/graph/weightPool.js';

const models = join(__dirname, '../fixtures/models');

function decoderNodes(name: string): { nodes: onnx.INodeProto[]; layers: number; vocab: number } {
  const checkpoint = Checkpoint.open(join(models, name));
  const { config } = checkpoint;
  const decoder = architectureFor(config.architecture).sessions(config, { weightBits: 32 }).find((s) => s.role === 'decoder')!;
  const model = onnx.ModelProto.decode(decoder.build(new WeightPool(checkpoint)).model);
  return { nodes: model.graph!.node!, layers: config.text.numLayers, vocab: config.text.vocabSize };
}

describe('the decoder graph of a decode step', () => {
  // GQA (4 query heads on 2 KV heads), tied and untied heads, sliding windows.
  for (const name of ['tiny-qwen2-text', 'tiny-mistral-text', 'tiny-llava-qwen2-hub']) {
    it(`${name}: one LM-head product, on the last row only`, () => {
      const { nodes } = decoderNodes(name);
      const heads = nodes.filter((n) => n.opType === 'Gemm' && n.input!.some((i) => /embed_tokens|lm_head/.test(i)));
      assert.deepEqual(heads.map((n) => n.output![0]), ['last_logits']);
      const slice = nodes.find((n) => n.output![0] === heads[0].input![0]);
      assert.equal(slice?.opType, 'Slice', 'the head reads a slice of the final hidden states (the last row)');
    });

    it(`${name}: the past is read by the attention products only, never copied`, () => {
      const { nodes, layers } = decoderNodes(name);
      for (let i = 0; i < layers; i++) {
        const readers = (input: string) => nodes.filter((n) => n.input!.includes(input)).map((n) => n.opType).sort();
        // Shape reads only the dimensions (the past's length, where past and chunk probabilities split).
        assert.deepEqual(readers(`past_key.${i}`), ['FusedMatMul', 'Shape'], `readers of past_key.${i}`);
        assert.deepEqual(readers(`past_value.${i}`), ['MatMul'], `readers of past_value.${i}`);
      }
    });
  }
});
