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
import type { BuildOptions } from '../../sidecar/src/model/architectures/architecture.js';
import { architectureFor } from '../../sidecar/src/model/architectures/registry.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { WeightPool } from '../../sidecar/src/model/graph/weightPool.js';
import { graphOptionsFor } from '../../sidecar/src/runtime/device.js';
import { createSession } from '../../sidecar/src/runtime/weights.js';
import * as ort from 'onnxruntime-node';

const models = join(__dirname, '../fixtures/models');

/** The decoder graph of fixture `name`, built with `options`. */
function decoderGraph(name: string, options: BuildOptions = { weightBits: 32 }): { graph: onnx.IGraphProto; layers: number; vocab: number } {
  const checkpoint = Checkpoint.open(join(models, name));
  const { config } = checkpoint;
  const decoder = architectureFor(config.architecture).sessions(config, options).find((s) => s.role === 'decoder')!;
  const model = onnx.ModelProto.decode(decoder.build(new WeightPool(checkpoint)).model);
  return { graph: model.graph!, layers: config.text.numLayers, vocab: config.text.vocabSize };
}

function decoderNodes(name: string, options?: BuildOptions): { nodes: onnx.INodeProto[]; layers: number; vocab: number } {
  const { graph, layers, vocab } = decoderGraph(name, options);
  return { nodes: graph.node!, layers, vocab };
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

  // A decode step runs every node of every layer for one token: small nodes cost their launch.
  for (const name of ['tiny-qwen2-text', 'tiny-qwen2-vl']) {
    it(`${name}: each norm one kernel, each of q and k rotated by one kernel reading the chunk's own half-width tables`, () => {
      const { nodes, layers } = decoderNodes(name);
      const ops = (op: string) => nodes.filter((n) => n.opType === op);
      assert.equal(ops('SimplifiedLayerNormalization').length, 2 * layers + 1, 'two norms a layer and the final one');
      for (const op of ['ReduceMean', 'Sqrt', 'Reciprocal', 'Neg']) assert.equal(ops(op).length, 0, `no ${op} left of a composed norm or rotation`);
      const rotations = ops('RotaryEmbedding');
      assert.deepEqual(rotations.map((n) => n.name), Array.from({ length: layers }, (_, i) => [`/text/layers.${i}/attn/q_rope`, `/text/layers.${i}/attn/k_rope`]).flat());
      for (const r of rotations) {
        assert.equal(r.domain, 'com.microsoft');
        assert.deepEqual(r.input!.slice(2), ['/rope/cos', '/rope/sin'], 'every rotation reads the one pair of tables');
        assert.equal(Number(r.attribute!.find((a) => a.name === 'interleaved')?.i ?? 0), 0, 'rotate-half, not interleaved');
      }
    });
  }

  it('built for WebGPU: no FusedMatMul (the provider has no kernel for it), the scores a MatMul of the scaled query and the transposed keys', () => {
    const cpu = decoderNodes('tiny-qwen2-text', graphOptionsFor('cpu'));
    assert.equal(cpu.nodes.filter((n) => n.opType === 'FusedMatMul').length, cpu.layers);
    const { nodes, layers } = decoderNodes('tiny-qwen2-text', graphOptionsFor('webgpu'));
    assert.deepEqual(nodes.filter((n) => n.domain === 'com.microsoft' && n.opType !== 'RotaryEmbedding').map((n) => n.opType), [], 'only contrib ops WebGPU runs');
    for (let i = 0; i < layers; i++) {
      const scores = nodes.find((n) => n.name === `/text/layers.${i}/attn/qk`)!;
      const producer = (value: string) => nodes.find((n) => n.output!.includes(value));
      assert.equal(scores.opType, 'MatMul');
      const [query, keys] = scores.input!.map((v) => producer(v)!);
      assert.equal(query.opType, 'Mul', 'the query scaled by 1 / sqrt(head_dim)');
      assert.equal(keys.opType, 'Transpose');
      assert.deepEqual(keys.input, [`present_key.${i}`]);
    }
  });

  it('present K/V are graph outputs, listed first, only when built for a cache on the device', () => {
    const outputs = (presentOutputs: boolean) => {
      const { graph, layers } = decoderGraph('tiny-qwen2-text', { weightBits: 32, presentOutputs });
      return { names: graph.output!.map((o) => o.name!), layers };
    };
    const host = outputs(false).names;
    assert.ok(!host.some((name) => name.startsWith('present_')), `host outputs: ${host.join(', ')}`);
    const { names: device, layers: L } = outputs(true);
    assert.deepEqual(device.slice(0, 2 * L).sort(), Array.from({ length: L }, (_, i) => [`present_key.${i}`, `present_value.${i}`]).flat().sort());
    assert.deepEqual(device.slice(2 * L), host, 'the other outputs are the same');
  });

  it('a decode step: column sums one row per KV head, window sums without a column', async () => {
    // GQA (4 query heads on 2 KV heads), no sliding window.
    const checkpoint = Checkpoint.open(join(models, 'tiny-llava-qwen2'));
    const { config } = checkpoint;
    const { numHeads: Hq, numKvHeads: Hkv, headDim: D, numLayers, hiddenSize: E } = config.text;
    assert.ok(Hq > Hkv, 'the fixture has GQA');
    const spec = architectureFor(config.architecture).sessions(config, { weightBits: 32 }).find((s) => s.role === 'decoder')!;
    const weights = new WeightPool(checkpoint);
    const session = await createSession(spec.build(weights).model, weights, { threads: 1 });
    try {
      const P = 3;
      const feeds: Record<string, ort.Tensor> = {
        inputs_embeds: new ort.Tensor('float32', new Float32Array(E).fill(0.1), [1, E]),
        position_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(P)), [1]),
        attention_mask: new ort.Tensor('float32', new Float32Array(P + 1), [1, P + 1]),
        window_rows: new ort.Tensor('int64', BigInt64Array.of(0n), [1]),
      };
      for (let i = 0; i < numLayers; i++) {
        feeds[`past_key.${i}`] = new ort.Tensor('float32', Float32Array.from({ length: Hkv * P * D }, (_, k) => Math.sin(k)), [Hkv, P, D]);
        feeds[`past_value.${i}`] = new ort.Tensor('float32', Float32Array.from({ length: Hkv * P * D }, (_, k) => Math.cos(k)), [Hkv, P, D]);
      }
      const layers = Array.from({ length: numLayers }, (_, i) => i);
      const out = await session.run(feeds, layers.flatMap((i) => [`colsum.${i}`, `window_colsum.${i}`]));
      for (const i of layers) {
        const sums = out[`colsum.${i}`];
        assert.deepEqual(sums.dims, [Hkv, P + 1], `colsum.${i}`);
        // One query row: each KV head's sums add up to its group's query heads, one each.
        for (let h = 0; h < Hkv; h++) {
          const row = (sums.data as Float32Array).subarray(h * (P + 1), (h + 1) * (P + 1));
          assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - Hq / Hkv) < 1e-5, `colsum.${i} head ${h}`);
        }
        assert.deepEqual(out[`window_colsum.${i}`].dims, [Hkv, Hq / Hkv, 0], `window_colsum.${i}`);
      }
    } finally {
      await session.release();
    }
  });
});
