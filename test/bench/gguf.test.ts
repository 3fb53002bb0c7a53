/** The GGUF writer and the checkpoint converter of the llama.cpp benchmark peer. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { bool, f32, GGUF_ALIGNMENT, halfToFloat, i32s, readGguf, readGgufTensor, str, strings, TensorType, toHalfBits, u32, ValueType, writeGguf } from '../../bench/llamacpp/gguf.js';
import { convertToGguf, ggufArchitecture, interleaveRotaryRows } from '../../bench/llamacpp/toGguf.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'gguf-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const fixtures = join(__dirname, '../fixtures/models');

describe('GGUF writer', () => {
  it('writes what a reader reads back: metadata of each kind, F32 and F16 tensors at aligned offsets', () => {
    const file = join(dir, 'round-trip.gguf');
    const a = Float32Array.from({ length: 6 }, (_, i) => i * 0.5 - 1);
    const b = Float32Array.of(1, -2, 0.099975586, 65504, 2 ** -24);
    writeGguf(file, {
      'general.architecture': str('qwen2'),
      'x.count': u32(7),
      'x.eps': f32(1e-6),
      'x.flag': bool(true),
      'x.big': { type: ValueType.UINT64, value: 2n ** 40n },
      'x.words': strings(['a', 'Ġb', '']),
      'x.ints': i32s([-1, 0, 5]),
    }, [
      { name: 'a', dims: [3, 2], type: TensorType.F32, data: () => a },
      { name: 'b', dims: [5], type: TensorType.F16, data: () => b },
    ]);
    const read = readGguf(file);
    assert.equal(read.version, 3);
    assert.equal(read.metadata.get('general.architecture'), 'qwen2');
    assert.equal(read.metadata.get('general.alignment'), GGUF_ALIGNMENT);
    assert.equal(read.metadata.get('x.count'), 7);
    assert.ok(Math.abs((read.metadata.get('x.eps') as number) - 1e-6) < 1e-12);
    assert.equal(read.metadata.get('x.flag'), true);
    assert.equal(read.metadata.get('x.big'), 2n ** 40n);
    assert.deepEqual(read.metadata.get('x.words'), ['a', 'Ġb', '']);
    assert.deepEqual(read.metadata.get('x.ints'), [-1, 0, 5]);
    assert.deepEqual(read.tensors.map((t) => [t.name, t.dims, t.type]), [['a', [3, 2], 0], ['b', [5], 1]]);
    for (const t of read.tensors) assert.equal(t.offset % GGUF_ALIGNMENT, 0, `${t.name} is aligned`);
    assert.deepEqual(readGgufTensor(file, read.tensors[0]), a);
    assert.deepEqual(Array.from(readGgufTensor(file, read.tensors[1])), [1, -2, halfToFloat(toHalfBits(0.099975586)), 65504, 2 ** -24]);
  });

  it('rejects a tensor whose data does not fill its dims, and duplicate names', () => {
    assert.throws(() => writeGguf(join(dir, 'bad.gguf'), {}, [{ name: 'a', dims: [4], type: TensorType.F32, data: () => new Float32Array(3) }]), /has 3 values, its dims \[4\] hold 4/);
    assert.throws(() => writeGguf(join(dir, 'bad.gguf'), {}, ['a', 'a'].map((name) => ({ name, dims: [1], type: TensorType.F32, data: () => new Float32Array(1) }))), /listed twice/);
  });

  it('narrows float32 to float16 rounding to nearest, ties to even', () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-Infinity, 0xfc00],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [1 + 2 ** -11 + 2 ** -20, 0x3c01],
      [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [2 ** -14, 0x0400], [2 ** -14 - 2 ** -25, 0x0400],
    ];
    for (const [x, bits] of cases) assert.equal(toHalfBits(x), bits, `${x}`);
    assert.equal(toHalfBits(NaN) & 0x7e00, 0x7e00);
    for (let bits = 0; bits < 0x7c00; bits += 37) assert.equal(toHalfBits(halfToFloat(bits)), bits, `exact half ${bits}`);
  });
});

describe('checkpoint to GGUF', () => {
  it('interleaves the rotary halves of each head (Llama layout)', () => {
    // 2 heads x headDim 4, one column: [x0 x1 | y0 y1] per head becomes [x0 y0 x1 y1].
    assert.deepEqual(Array.from(interleaveRotaryRows(Float32Array.of(0, 1, 2, 3, 10, 11, 12, 13), 2, 4, 1)), [0, 2, 1, 3, 10, 12, 11, 13]);
    assert.deepEqual(Array.from(interleaveRotaryRows(Float32Array.of(0, 1, 2, 3, 4, 5, 6, 7), 1, 4, 2)), [0, 1, 4, 5, 2, 3, 6, 7]);
  });

  it('writes a Qwen2 checkpoint under llama.cpp names, dims reversed, Q/K as stored, a vocabulary of the model size', () => {
    const model = join(fixtures, 'tiny-llava-qwen2');
    const file = join(dir, 'qwen2.gguf');
    convertToGguf(model, file);
    const { metadata, tensors } = readGguf(file);
    const text = Checkpoint.open(model).config.text;
    assert.equal(metadata.get('general.architecture'), 'qwen2');
    assert.equal(metadata.get('qwen2.block_count'), text.numLayers);
    assert.equal(metadata.get('qwen2.attention.head_count_kv'), text.numKvHeads);
    assert.equal(metadata.get('qwen2.rope.scaling.type'), 'linear');
    assert.equal(metadata.get('tokenizer.ggml.model'), 'gpt2');
    assert.equal((metadata.get('tokenizer.ggml.tokens') as string[]).length, text.vocabSize);
    assert.equal(new Set(metadata.get('tokenizer.ggml.tokens') as string[]).size, text.vocabSize, 'tokens are unique');
    const names = tensors.map((t) => t.name);
    for (const name of ['token_embd.weight', 'output_norm.weight', 'blk.0.attn_q.bias', 'blk.1.ffn_down.weight']) assert.ok(names.includes(name), name);
    assert.ok(!names.includes('output.weight'), 'tied head: llama.cpp reuses token_embd');
    const q = tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    assert.deepEqual(q.dims, [text.hiddenSize, text.numHeads * text.headDim]);
    assert.deepEqual(readGgufTensor(file, q), Checkpoint.open(model).float32('text.layers.0.self_attn.q_proj.weight', [text.numHeads * text.headDim, text.hiddenSize]));
  });

  it('permutes Llama Q/K for llama.cpp and narrows matrices (not norms) to F16 on request', () => {
    const model = join(fixtures, 'tiny-llava-llama');
    const file = join(dir, 'llama.gguf');
    convertToGguf(model, file, 'f16');
    const { metadata, tensors } = readGguf(file);
    const text = Checkpoint.open(model).config.text;
    assert.equal(metadata.get('general.architecture'), 'llama');
    assert.equal(metadata.get('general.file_type'), 1);
    const byName = (n: string) => tensors.find((t) => t.name === n)!;
    assert.equal(byName('blk.0.attn_k.weight').type, TensorType.F16);
    assert.equal(byName('blk.0.attn_norm.weight').type, TensorType.F32);
    const rows = text.numHeads * text.headDim;
    const hf = Checkpoint.open(model).float32('text.layers.0.self_attn.q_proj.weight', [rows, text.hiddenSize]);
    const expected = interleaveRotaryRows(hf, text.numHeads, text.headDim, text.hiddenSize).map((v) => halfToFloat(toHalfBits(v)));
    assert.deepEqual(readGgufTensor(file, byName('blk.0.attn_q.weight')), expected);
  });

  it('says what it cannot convert', () => {
    assert.throws(() => convertToGguf(join(fixtures, 'tiny-qwen2-text'), join(dir, 'sliding.gguf')), /sliding-window layers are not supported/);
    const text = Checkpoint.open(join(fixtures, 'tiny-llava-qwen2')).config.text;
    assert.throws(() => ggufArchitecture({ ...text, modelType: 'gemma2' }), /supports Qwen2 and Llama text decoders; this checkpoint's is "gemma2"/);
    assert.throws(() => ggufArchitecture({ ...text, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } }), /rope scaling "llama3"/);
  });
});
