/**
 * Loading weights holds one float32 copy of them: each tensor is read from its file straight into
 * the buffer onnxruntime receives (F16/BF16 widened in bounded slices, never a whole-tensor
 * temporary), the embedding table is read row by row from the file rather than kept as a second
 * copy, and half-precision checkpoints compute exactly what their float32 widening computes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { WeightPool } from '../../sidecar/src/model/graph/weightPool.js';
import { quantize4 } from '../../sidecar/src/model/graph/quantize.js';
import { HALF_SLICE_ELEMENTS, readFloat32Into, readSafetensorsHeader } from '../../sidecar/src/model/safetensors.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { writeSafetensors } from '../../tools/fuzz/hostileModels.js';
import { bf16BitsToFloat, halfBitsToFloat, writeScaled, writeTinyAs, type FloatDtype } from './halfCheckpoints.js';

const scratch = mkdtempSync(join(tmpdir(), 'lookm-loadmem-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => join(scratch, `m${dirs++}`);

describe('reading half-precision tensors', () => {
  it('widens every F16 and BF16 bit pattern exactly, across slices and from any element', () => {
    const file = join(scratch, 'patterns.safetensors');
    // Every pattern, then enough more that the read crosses a slice boundary.
    const count = HALF_SLICE_ELEMENTS + 65536 + 7;
    const halves = Uint16Array.from({ length: count }, (_, i) => (i * 40503) & 0xffff);
    const bytes = Buffer.from(halves.buffer);
    writeTensorsRaw(file, { f16: ['F16', bytes], bf16: ['BF16', bytes] });
    const entries = readSafetensorsHeader(file);
    for (const [name, widen] of [['f16', halfBitsToFloat], ['bf16', bf16BitsToFloat]] as const) {
      const all = new Float32Array(count);
      readFloat32Into(entries.get(name)!, all);
      const part = new Float32Array(100);
      readFloat32Into(entries.get(name)!, part, HALF_SLICE_ELEMENTS - 50);
      for (let i = 0; i < count; i++) {
        if (!Object.is(all[i], Math.fround(widen(halves[i])))) assert.fail(`${name} pattern 0x${halves[i].toString(16)}: ${all[i]}, expected ${widen(halves[i])}`);
      }
      assert.deepEqual(part, all.subarray(HALF_SLICE_ELEMENTS - 50, HALF_SLICE_ELEMENTS + 50));
    }
  });

  it('refuses elements past the end of the tensor', () => {
    const file = join(scratch, 'short.safetensors');
    writeTensorsRaw(file, { t: ['F32', Buffer.alloc(16)] });
    assert.throws(() => readFloat32Into(readSafetensorsHeader(file).get('t')!, new Float32Array(2), 3), /elements 3\.\.5 are outside tensor "t" \(4 elements\)/);
  });
});

describe('memory held while loading', () => {
  // About 100 MB of float32 weights, two thirds of them the embedding table (as in Qwen2-0.5B).
  const SIZES = { vocab: 262144, intermediate: 8192 };
  // The peak is the kernel's high-water mark, reset before the load: Linux only.
  const skip = existsSync('/proc/self/clear_refs') ? false : 'needs /proc/self/clear_refs (Linux)';
  for (const dtype of ['F32', 'BF16', 'F16'] as FloatDtype[]) {
    it(`a ${dtype} checkpoint: one float32 copy of the weights plus a bounded slice`, { skip }, async () => {
      const dir = newDir();
      writeScaled(dir, dtype, SIZES);
      const child = join(__dirname, 'loadPeak.child.ts');
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, dir], { cwd: join(__dirname, '../..') });
      const { float32Bytes, bufferBytes, peakRise } = JSON.parse(stdout) as { float32Bytes: number; bufferBytes: number; peakRise: number };
      assert.ok(bufferBytes >= float32Bytes && bufferBytes < float32Bytes + 2 ** 20, `the buffer holds the weights as float32 (${bufferBytes} bytes for ${float32Bytes})`);
      // The old loader held each tensor's bytes and a widened (or sliced) copy of them besides the buffer: 2x-2.5x the largest tensor more.
      const allowed = float32Bytes + 24 * 2 ** 20;
      assert.ok(peakRise <= allowed, `peak RSS rose ${(peakRise / 2 ** 20).toFixed(0)} MiB loading ${(float32Bytes / 2 ** 20).toFixed(0)} MiB of float32 weights (at most ${(allowed / 2 ** 20).toFixed(0)} MiB)`);
    });
  }
});

describe('the embedding table', () => {
  it('is read from the checkpoint on demand: the decoder holds no copy of it', async () => {
    const dir = newDir();
    const widened = writeTinyAs(dir, 'BF16');
    const checkpoint = Checkpoint.open(dir);
    const { vocabSize: V, hiddenSize: E } = checkpoint.config.text;
    const decoder = await TextDecoder.create(checkpoint, { threads: 1 });
    try {
      const big = typedArraysIn(decoder).filter((a) => a.byteLength >= V * E * 2);
      assert.deepEqual(big.map((a) => `${a.constructor.name}(${a.byteLength} bytes)`), [], 'no array the size of the table is held by the decoder');
      const ids = [0, 5, V - 1, 5];
      const table = widened.get('model.embed_tokens.weight')!;
      assert.deepEqual(decoder.embed(ids), Float32Array.from(ids.flatMap((id) => [...table.subarray(id * E, (id + 1) * E)])));
    } finally {
      await decoder.release();
    }
  });
});

describe('half-precision checkpoints', () => {
  for (const dtype of ['BF16', 'F16'] as FloatDtype[]) {
    it(`a ${dtype} checkpoint gives the logits of its float32 widening, exactly`, async () => {
      const [half, wide] = [newDir(), newDir()];
      const widened = writeTinyAs(half, dtype);
      writeTinyAs(wide, 'F32', new Map([...widened].map(([name, values]) => [name, { shape: readSafetensorsHeader(join(half, 'model.safetensors')).get(name)!.shape, values }])));
      const logits = async (dir: string) => {
        const decoder = await TextDecoder.create(Checkpoint.open(dir), { threads: 1 });
        try {
          const ids = Array.from({ length: 12 }, (_, i) => 4 + ((i * 37) % 400));
          return (await decoder.forward(decoder.embed(ids), Int32Array.from(ids, (_, i) => i), decoder.emptyPast(), { allLogits: true })).logits;
        } finally {
          await decoder.release();
        }
      };
      const [a, b] = [await logits(half), await logits(wide)];
      assert.equal(a.length, b.length);
      assert.ok(a.every((x, i) => Object.is(x, b[i])), `${dtype} logits differ from the float32 widening's`);
    });
  }
});

describe('4-bit weights', () => {
  it('quantized a slice of rows at a time equal quantizing the whole weight', () => {
    const dir = newDir();
    // gate/up [20480, 64] and down [64, 20480]: 1.3M floats each, more than one slice.
    writeScaled(dir, 'BF16', { vocab: 416, intermediate: 20480 });
    const checkpoint = Checkpoint.open(dir);
    const pool = new WeightPool(checkpoint);
    const names = ['text.layers.0.mlp.gate_proj.weight', 'text.layers.0.mlp.down_proj.weight'];
    const shapes: [number, number][] = [[20480, 64], [64, 20480]];
    const registered = names.map((name, i) => pool.useQuantized(name, shapes[i]));
    const { data } = pool.load();
    const at = new Map(pool.initializers.map((t) => [t.name, t.offset]));
    names.forEach((name, i) => {
      const [N, K] = shapes[i];
      const q = quantize4(checkpoint.float32(name, [N, K]), N, K);
      assert.deepEqual(data.subarray(at.get(registered[i].data), at.get(registered[i].data)! + q.data.length), q.data, `${name} codes`);
      assert.deepEqual(new Float32Array(data.buffer, at.get(registered[i].scales), q.scales.length), q.scales, `${name} scales`);
    });
  });
});

/** A safetensors file of raw 1-D tensors (name -> dtype and bytes). */
function writeTensorsRaw(file: string, tensors: Record<string, [FloatDtype, Buffer]>): void {
  const header: Parameters<typeof writeSafetensors>[1] = {};
  let offset = 0;
  for (const [name, [dtype, bytes]] of Object.entries(tensors)) {
    header[name] = { dtype, shape: [bytes.length / (dtype === 'F32' ? 4 : 2)], data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
  }
  writeSafetensors(file, header, Buffer.concat(Object.values(tensors).map(([, bytes]) => bytes)));
}

/** Every typed array reachable from `root` through object fields (not through onnxruntime's native session). */
function typedArraysIn(root: object): ArrayBufferView[] {
  const found: ArrayBufferView[] = [];
  const seen = new Set<object>();
  const visit = (value: unknown, depth: number) => {
    if (typeof value !== 'object' || value === null || seen.has(value) || depth > 4) return;
    seen.add(value);
    if (ArrayBuffer.isView(value)) return void found.push(value);
    for (const key of Object.getOwnPropertyNames(value)) visit((value as Record<string, unknown>)[key], depth + 1);
  };
  visit(root, 0);
  return found;
}
