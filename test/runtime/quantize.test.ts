/** 4- and 8-bit block quantization (MatMulNBits weights) and the decoder running on it. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { buildModel } from '../../sidecar/src/model/graph/onnxBuilder.js';
import { dequantize4, dequantizeBlocks, quantize4, quantizeBlocks, type QuantizedBits } from '../../sidecar/src/model/graph/quantize.js';
import { parseWeightBits } from '../../sidecar/src/model/text/decoderGraph.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { onnx } from 'onnx-proto';
import { architectureFor } from '../../sidecar/src/model/architectures/registry.js';
import { ACCURACY_LEVEL } from '../../sidecar/src/model/graph/layers/linear.js';
import type { SessionSpec } from '../../sidecar/src/model/architectures/architecture.js';

/** `x [rows, K]` as int8 per block of 32 (absmax / 127, rounded) and back: what MatMulNBits at accuracy_level 4 multiplies. */
function int8Activations(x: Float32Array, K: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length; b += 32) {
    const block = x.subarray(b, Math.min(b + 32, b + K - (b % K)));
    const scale = Math.max(...block.map(Math.abs)) / 127;
    block.forEach((v, j) => (out[b + j] = scale > 0 ? Math.round(v / scale) * scale : 0));
  }
  return out;
}

/**
 * The float32 decoder graph with every quantized projection's input passed through int8 per
 * block of 32 as `int8Activations` does, in the graph (Reshape, ReduceMax of Abs, Div, Round, Mul):
 * the reference of a MatMulNBits graph computing in int8.
 */
function withInt8Activations(bytes: Uint8Array, quantized: RegExp): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph!;
  const nodes: onnx.INodeProto[] = [];
  const constant = (name: string, dims: number[], values: number[], type: 'int64' | 'float32') => {
    graph.initializer!.push(type === 'int64' ? { name, dims, dataType: onnx.TensorProto.DataType.INT64, int64Data: values } : { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, floatData: values });
    return name;
  };
  const blocks = constant('/test/int8/blocks', [3], [0, -1, 32], 'int64');
  const rowsShape = (k: string) => constant(`/test/int8/rows_${k}`, [2], [0, Number(k)], 'int64');
  const q127 = constant('/test/int8/127', [], [127], 'float32');
  const zero = constant('/test/int8/zero', [], [0], 'float32');
  const one = constant('/test/int8/one', [], [1], 'float32');
  for (const node of graph.node!) {
    const weight = node.opType === 'Gemm' ? graph.initializer!.find((t) => t.name === node.input![1]) ?? null : null;
    if (!weight || !quantized.test(weight.name!)) {
      nodes.push(node);
      continue;
    }
    const K = String(weight.dims![1]);
    const n = `/test/int8/${node.name}`;
    const op = (opType: string, inputs: string[], suffix: string, attribute: onnx.IAttributeProto[] = []) => (nodes.push({ name: `${n}/${suffix}`, opType, input: inputs, output: [`${n}/${suffix}`], attribute }), `${n}/${suffix}`);
    const x = op('Reshape', [node.input![0], blocks], 'blocks');
    const absmax = op('ReduceMax', [op('Abs', [x], 'abs')], 'absmax', [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [2] }, { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 1 }]);
    const scale = op('Where', [op('Equal', [absmax, zero], 'is_zero'), one, op('Div', [absmax, q127], 'scale_raw')], 'scale');
    const rounded = op('Mul', [op('Round', [op('Div', [x, scale], 'scaled')], 'codes'), scale], 'dequantized');
    nodes.push({ ...node, input: [op('Reshape', [rounded, rowsShape(K)], 'rows'), ...node.input!.slice(1)] });
  }
  graph.node = nodes;
  return onnx.ModelProto.encode(model).finish();
}

describe('4-bit block quantization', () => {
  it('round-trips within half a step of each block\'s scale, zero blocks exactly', () => {
    const N = 3;
    const K = 80; // not a multiple of the block: the last block is padded
    const w = Float32Array.from({ length: N * K }, (_, i) => (i % K < 32 && Math.floor(i / K) === 1 ? 0 : Math.sin(i * 1.7) * (1 + (i % 7))));
    const q = quantize4(w, N, K);
    assert.equal(q.blocks, 3);
    assert.equal(q.data.length, N * 3 * 16);
    const back = dequantize4(q, N, K);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const scale = q.scales[n * q.blocks + Math.floor(k / 32)];
        assert.ok(Math.abs(back[n * K + k] - w[n * K + k]) <= scale / 2 + 1e-6, `row ${n} col ${k}`);
      }
    }
    assert.ok(back.subarray(K, K + 32).every((v) => v === 0), 'an all-zero block stays zero');
  });
});

describe('8-bit block quantization', () => {
  it('round-trips within half a step of each block\'s scale (absmax / 127), one code per byte around 128', () => {
    const [N, K] = [3, 80];
    const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 7)));
    const q = quantizeBlocks(w, N, K, 8);
    assert.equal(q.blocks, 3);
    assert.equal(q.data.length, N * 3 * 32);
    const back = dequantizeBlocks(q, N, K, 8);
    for (let n = 0; n < N; n++) {
      for (let b = 0; b < q.blocks; b++) {
        const row = w.subarray(n * K + b * 32, n * K + Math.min(K, (b + 1) * 32));
        assert.ok(Math.abs(q.scales[n * q.blocks + b] - Math.max(...row.map(Math.abs)) / 127) < 1e-6, `scale of row ${n} block ${b}`);
      }
      for (let k = 0; k < K; k++) {
        const scale = q.scales[n * q.blocks + Math.floor(k / 32)];
        assert.ok(Math.abs(back[n * K + k] - w[n * K + k]) <= scale / 2 + 1e-6, `row ${n} col ${k}`);
      }
    }
    // The padding of the last block (K = 80: 16 codes) holds the zero point.
    assert.ok(q.data.subarray(2 * 32 + 16, 3 * 32).every((code) => code === 128));
  });

  it('--weight-bits takes 32, 8 and 4 and names the choices otherwise', () => {
    assert.deepEqual(['32', '8', '4', undefined].map(parseWeightBits), [32, 8, 4, 32]);
    assert.throws(() => parseWeightBits('16'), /--weight-bits must be 32, 8 or 4, got 16/);
  });
});

describe('onnxruntime MatMulNBits on our packing', () => {
  for (const bits of [4, 8] as QuantizedBits[]) {
  it(`computes x · dequantize(W)ᵀ at ${bits} bits as the decoder runs it (same codes, same scales, same packing; int8 activations at 8 bits)`, async () => {
    const [M, N, K] = [3, 5, 64];
    const w = Float32Array.from({ length: N * K }, (_, i) => Math.cos(i * 0.37) * (1 + (i % 5)));
    const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.11));
    const q = quantizeBlocks(w, N, K, bits);
    const scalesAt = 512;
    const model = buildModel({
      name: `q${bits}`,
      inputs: [{ name: 'x', type: 'float32', dims: [M, K] }],
      outputs: [{ name: 'y', type: 'float32', dims: [M, N] }],
      nodes: [{ op: 'MatMulNBits', domain: 'com.microsoft', inputs: ['x', 'w', 'scales'], outputs: ['y'], attributes: { K, N, bits, block_size: 32, accuracy_level: ACCURACY_LEVEL[bits] } }],
      external: [
        { name: 'w', dims: [N, q.blocks, (32 * bits) / 8], location: 'w.bin', offset: 0, type: 'uint8' },
        { name: 'scales', dims: [N * q.blocks], location: 'w.bin', offset: scalesAt, type: 'float32' },
      ],
    });
    const bytes = new Uint8Array(scalesAt + 4 * q.scales.length);
    bytes.set(q.data, 0);
    bytes.set(new Uint8Array(q.scales.buffer), scalesAt);
    const session = await ort.InferenceSession.create(model, { externalData: [{ path: 'w.bin', data: bytes }] });
    const y = (await session.run({ x: new ort.Tensor('float32', x, [M, K]) })).y.data as Float32Array;
    await session.release();
    const wq = dequantizeBlocks(q, N, K, bits);
    const xs = ACCURACY_LEVEL[bits] === 4 ? int8Activations(x, K) : x;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let expected = 0;
        for (let k = 0; k < K; k++) expected += xs[m * K + k] * wq[n * K + k];
        assert.ok(Math.abs(y[m * N + n] - expected) < 1e-3 * (1 + Math.abs(expected)), `y[${m},${n}] = ${y[m * N + n]}, expected ${expected}`);
      }
    }
  });
  }
});

describe('decoder on 4- and 8-bit weights (onnxruntime MatMulNBits)', () => {
  for (const bits of [4, 8] as QuantizedBits[]) {
  it(`equals the float32 decoder run on the dequantized weights (${bits} bits)`, async () => {
    const checkpoint = Checkpoint.open(join(__dirname, '../fixtures/models/tiny-llava-llama'));
    // The same checkpoint, its projection weights replaced by what their 4-bit codes stand for.
    // 8-bit weights quantize the LM head too (lmHeadBits): here the tied embedding table, read whole by the head only.
    const LINEAR = bits === 8 ? /layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$|^text\.(embed_tokens|lm_head)\.weight$/ : /layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/;
    const rounded = Object.create(checkpoint) as Checkpoint;
    rounded.readFloat32Into = (name: string, shape: number[], into: Float32Array, first = 0) => {
      if (!LINEAR.test(name)) return checkpoint.readFloat32Into(name, shape, into, first);
      const w = checkpoint.float32(name, shape);
      into.set(dequantizeBlocks(quantizeBlocks(w, shape[0], shape[1], bits), shape[0], shape[1], bits).subarray(first, first + into.length));
    };
    // At 8 bits the projections compute on int8 activations (ACCURACY_LEVEL): the reference does too.
    const spec = architectureFor(checkpoint.config.architecture).sessions(checkpoint.config, { weightBits: 32 }).find((s) => s.role === 'decoder') as Extract<SessionSpec, { role: 'decoder' }>;
    const int8 = ACCURACY_LEVEL[bits] === 4;
    const reference = await TextDecoder.fromSpec(rounded, { ...spec, build: (w) => { const built = spec.build(w); return int8 ? { ...built, model: withInt8Activations(built.model, LINEAR) } : built; } }, { threads: 1 });
    const q4 = await TextDecoder.create(checkpoint, { threads: 1, weightBits: bits });
    const plain = await TextDecoder.create(checkpoint, { threads: 1 });
    try {
      const ids = Array.from({ length: 24 }, (_, i) => 5 + ((i * 29) % 200));
      const positions = Int32Array.from({ length: ids.length }, (_, i) => i);
      const run = async (d: TextDecoder, allLogits = !int8) => (await d.forward(d.embed(ids), positions, d.emptyPast(), { allLogits })).logits;
      // Every row's logits at 4 bits; at 8 bits the last row's (the reference's int8 head is in the decoder graph only).
      const [a, b, c] = [await run(reference), await run(q4), await run(plain)];
      const relative = (x: Float32Array, y: Float32Array) => Math.sqrt(x.reduce((sum, v, i) => sum + (v - y[i]) ** 2, 0) / x.reduce((sum, v) => sum + v * v, 0));
      assert.ok(relative(a, b) < 1e-4, `${bits}-bit graph vs dequantized float32: ${relative(a, b)}`);
      if (int8) {
        // The every-row head (its own session) computes at the decoder's precision: its last row is last_logits.
        const every = await run(q4, true);
        assert.ok(relative(b, every.subarray(every.length - b.length)) < 1e-6, 'the every-row LM head at 8 bits too');
      }
      // Measured on this fixture: 0.31 at 4 bits, 0.027 at 8 bits (a: 0 and 4e-7).
      assert.ok(relative(c, b) > 1e-3, `the ${bits}-bit path really quantized (${relative(c, b)} from float32)`);
    } finally {
      await Promise.all([reference.release(), q4.release(), plain.release()]);
    }
  });
  }
});
