/**
 * What one decode step of the decoder graph computes, read from the graph itself (onnxruntime
 * runs every node whatever is fetched, so what a step costs is what the graph holds): no
 * full-vocabulary product over every row, and the keys read by the attention product as they
 * are, never transposed into a copy nor broadcast over a GQA group's query heads.
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

    it(`${name}: keys read transposed by the product, neither transposed into a copy nor broadcast over the group`, () => {
      const { nodes, layers } = decoderNodes(name);
      const readers = (value: string) => nodes.filter((n) => n.input!.includes(value));
      for (let i = 0; i < layers; i++) {
        // The past is appended to once (the chunk's keys / values), and that is read by one product each.
        const [keys] = readers(`past_key.${i}`);
        assert.deepEqual(readers(`past_key.${i}`).map((n) => n.opType), ['Concat'], `readers of past_key.${i}`);
        const scores = readers(keys.output![0]);
        const transB = (n: onnx.INodeProto): number => Number(n.attribute!.find((a) => a.name === 'transB')?.i ?? 0);
        assert.deepEqual(scores.map((n): [string, number] => [n.opType!, transB(n)]), [['FusedMatMul', 1]], `readers of layer ${i}'s keys`);
        const [values] = readers(`past_value.${i}`);
        assert.deepEqual(readers(values.output![0]).map((n) => n.opType), ['MatMul'], `readers of layer ${i}'s values`);
      }
    });
  }
});
