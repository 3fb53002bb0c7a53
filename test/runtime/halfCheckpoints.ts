/**
 * Checkpoints written by the load tests: the tiny Qwen2 text model's tensors re-encoded as BF16 or
 * F16 (and, for comparison, the float32 values those halves stand for), or scaled up with random
 * weights so that what loading holds can be measured against the weights' size.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../../tools/fuzz/hostileModels.js';

export const TINY_TEXT = join(__dirname, '../fixtures/models/tiny-qwen2-text');
export type FloatDtype = 'F32' | 'F16' | 'BF16';

/** IEEE half to float, written from the definition (independent of the loader's lookup table). */
export function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

/** A half close to `x` (truncated; any nearby half will do: the comparison is with its own widening). */
export function floatToHalfBits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65504) return sign | 0x7bff;
  if (a < 2 ** -14) return sign | Math.floor(a / 2 ** -24);
  const exponent = Math.floor(Math.log2(a));
  return sign | ((exponent + 15) << 10) | Math.floor((a / 2 ** exponent - 1) * 1024);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
export const bf16BitsToFloat = (h: number): number => ((u32[0] = h << 16), f32[0]);
export const floatToBf16Bits = (x: number): number => ((f32[0] = x), u32[0] >>> 16);

/** `values` encoded as `dtype` (F32 as is), and the float32 values the encoding stands for. */
export function encode(values: Float32Array, dtype: FloatDtype): { bytes: Buffer; widened: Float32Array } {
  if (dtype === 'F32') return { bytes: Buffer.from(values.buffer, values.byteOffset, values.byteLength), widened: values };
  const halves = new Uint16Array(values.length);
  const widened = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    halves[i] = dtype === 'F16' ? floatToHalfBits(values[i]) : floatToBf16Bits(values[i]);
    widened[i] = dtype === 'F16' ? halfBitsToFloat(halves[i]) : bf16BitsToFloat(halves[i]);
  }
  return { bytes: Buffer.from(halves.buffer), widened };
}

/** Writes `tensors` (name -> shape and values) as one safetensors file in `dtype`; returns the values it stands for. */
export function writeTensors(file: string, tensors: Map<string, { shape: number[]; values: Float32Array }>, dtype: FloatDtype): Map<string, Float32Array> {
  const header: Parameters<typeof writeSafetensors>[1] = {};
  const parts: Buffer[] = [];
  const widened = new Map<string, Float32Array>();
  let offset = 0;
  for (const [name, { shape, values }] of tensors) {
    const encoded = encode(values, dtype);
    header[name] = { dtype, shape, data_offsets: [offset, offset + encoded.bytes.length] };
    offset += encoded.bytes.length;
    parts.push(encoded.bytes);
    widened.set(name, encoded.widened);
  }
  writeSafetensors(file, header, Buffer.concat(parts));
  return widened;
}

/** The tiny text model's tensors, as float32. */
export function tinyTensors(): Map<string, { shape: number[]; values: Float32Array }> {
  const { header, data } = readSafetensors(join(TINY_TEXT, 'model.safetensors'));
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = entry.data_offsets;
    out.set(name, { shape: entry.shape, values: new Float32Array(data.buffer.slice(data.byteOffset + begin, data.byteOffset + end)) });
  }
  return out;
}

/** A copy of the tiny text model with its tensors in `dtype`; returns the float32 values they stand for. */
export function writeTinyAs(dir: string, dtype: FloatDtype, tensors = tinyTensors()): Map<string, Float32Array> {
  cpSync(TINY_TEXT, dir, { recursive: true });
  return writeTensors(join(dir, 'model.safetensors'), tensors, dtype);
}

/**
 * The tiny text model scaled up: `vocab` rows of embeddings (tied to the LM head, as in Qwen2-0.5B,
 * where the table is over half the weights) and an MLP `intermediate` wide, random weights in `dtype`.
 */
export function writeScaled(dir: string, dtype: FloatDtype, { vocab, intermediate }: { vocab: number; intermediate: number }): void {
  cpSync(TINY_TEXT, dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const [oldVocab, oldIntermediate] = [config.vocab_size, config.intermediate_size] as number[];
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, vocab_size: vocab, intermediate_size: intermediate }));
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) / 10;
  const tensors = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const [name, { shape }] of tinyTensors()) {
    const scaled = shape.map((d) => (d === oldVocab ? vocab : d === oldIntermediate ? intermediate : d));
    tensors.set(name, { shape: scaled, values: Float32Array.from({ length: scaled.reduce((a, b) => a * b, 1) }, random) });
  }
  writeTensors(join(dir, 'model.safetensors'), tensors, dtype);
}
