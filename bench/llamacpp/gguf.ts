/**
 * A small GGUF (version 3) writer and reader, for handing a checkpoint to llama.cpp in the
 * llama.cpp benchmark peer (`bench/llamacpp.ts`). The layout, all little-endian:
 *
 *   "GGUF", u32 version 3, u64 tensor count, u64 metadata count,
 *   metadata: (string key, u32 value type, value)*,
 *   tensor infos: (string name, u32 n_dims, u64 dims[n_dims] fastest-varying first, u32 ggml type,
 *                  u64 offset into the data section)*,
 *   padding to `general.alignment` (32), then each tensor's data at its offset (each aligned).
 *
 * A string is a u64 byte length and UTF-8 bytes; an array is a u32 element type, a u64 count and
 * the elements. Only the tensor types this project writes are supported: F32 and F16.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** gguf_type: the metadata value types. */
export enum ValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml_type values of the tensor types written here. */
export enum TensorType {
  F32 = 0,
  F16 = 1,
}
const TENSOR_BYTES: Record<TensorType, number> = { [TensorType.F32]: 4, [TensorType.F16]: 2 };

export type Scalar = { type: Exclude<ValueType, ValueType.ARRAY | ValueType.STRING>; value: number | bigint | boolean } | { type: ValueType.STRING; value: string };
export type Value = Scalar | { type: ValueType.ARRAY; itemType: Exclude<ValueType, ValueType.ARRAY>; value: (number | bigint | boolean | string)[] };

export const u32 = (value: number): Value => ({ type: ValueType.UINT32, value });
export const i32 = (value: number): Value => ({ type: ValueType.INT32, value });
export const f32 = (value: number): Value => ({ type: ValueType.FLOAT32, value });
export const str = (value: string): Value => ({ type: ValueType.STRING, value });
export const bool = (value: boolean): Value => ({ type: ValueType.BOOL, value });
export const strings = (value: string[]): Value => ({ type: ValueType.ARRAY, itemType: ValueType.STRING, value });
export const i32s = (value: number[]): Value => ({ type: ValueType.ARRAY, itemType: ValueType.INT32, value });

export interface TensorSpec {
  name: string;
  /** ggml dims, fastest-varying first: a row-major `[rows, cols]` matrix is `[cols, rows]`. */
  dims: number[];
  type: TensorType;
  /** The tensor's values in row-major order, as float32 (narrowed to F16 on write when asked). */
  data: () => Float32Array;
}

/** Bytes for the header, growing as needed. */
class ByteWriter {
  private buffer = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    const next = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + n));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  scalar(type: Exclude<ValueType, ValueType.ARRAY>, value: number | bigint | boolean | string): void {
    if (type === ValueType.STRING) {
      const bytes = Buffer.from(String(value), 'utf8');
      this.scalar(ValueType.UINT64, BigInt(bytes.length));
      this.reserve(bytes.length);
      bytes.copy(this.buffer, this.length);
      this.length += bytes.length;
      return;
    }
    const size = { [ValueType.UINT8]: 1, [ValueType.INT8]: 1, [ValueType.BOOL]: 1, [ValueType.UINT16]: 2, [ValueType.INT16]: 2, [ValueType.UINT32]: 4, [ValueType.INT32]: 4, [ValueType.FLOAT32]: 4, [ValueType.UINT64]: 8, [ValueType.INT64]: 8, [ValueType.FLOAT64]: 8 }[type];
    this.reserve(size);
    const b = this.buffer;
    const at = this.length;
    const n = Number(value);
    switch (type) {
      case ValueType.UINT8: b.writeUInt8(n, at); break;
      case ValueType.INT8: b.writeInt8(n, at); break;
      case ValueType.BOOL: b.writeUInt8(value ? 1 : 0, at); break;
      case ValueType.UINT16: b.writeUInt16LE(n, at); break;
      case ValueType.INT16: b.writeInt16LE(n, at); break;
      case ValueType.UINT32: b.writeUInt32LE(n, at); break;
      case ValueType.INT32: b.writeInt32LE(n, at); break;
      case ValueType.FLOAT32: b.writeFloatLE(n, at); break;
      case ValueType.UINT64: b.writeBigUInt64LE(BigInt(value), at); break;
      case ValueType.INT64: b.writeBigInt64LE(BigInt(value), at); break;
      case ValueType.FLOAT64: b.writeDoubleLE(n, at); break;
    }
    this.length += size;
  }

  value(v: Value): void {
    this.scalar(ValueType.UINT32, v.type);
    if (v.type !== ValueType.ARRAY) return this.scalar(v.type, v.value);
    this.scalar(ValueType.UINT32, v.itemType);
    this.scalar(ValueType.UINT64, BigInt(v.value.length));
    for (const item of v.value) this.scalar(v.itemType, item);
  }

  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.reserve(n);
    this.buffer.fill(0, this.length, this.length + n);
    this.length += n;
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

const align = (n: number) => Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
const elementsOf = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

const scratch = new DataView(new ArrayBuffer(4));
/** IEEE binary16 bits of `x`, rounded to nearest, ties to even (as numpy's astype(float16)). */
export function toHalfBits(x: number): number {
  scratch.setFloat32(0, x);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // Inf, NaN
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to infinity
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: zero
    mantissa |= 0x800000; // the implicit 1, then shift into a subnormal
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const midway = 1 << (shift - 1);
    return sign | (half + (rest > midway || (rest === midway && (half & 1)) ? 1 : 0));
  }
  const rest = mantissa & 0x1fff;
  let half = (e << 10) | (mantissa >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++; // may carry into the exponent: still right
  e = half >>> 10;
  return sign | (e >= 0x1f ? 0x7c00 : half);
}

/** The tensor's bytes as stored: F32 as is, F16 narrowed. */
function tensorBytes(data: Float32Array, type: TensorType): Uint8Array {
  if (type === TensorType.F32) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const half = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) half[i] = toHalfBits(data[i]);
  return new Uint8Array(half.buffer);
}

/**
 * Writes a GGUF file: the header first, then each tensor's data one at a time (`data()` is called
 * once per tensor, so only one tensor is held at a time). Returns the bytes written.
 */
export function writeGguf(file: string, metadata: Record<string, Value>, tensors: TensorSpec[]): number {
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`GGUF: tensor ${t.name} is listed twice`);
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > 4 || t.dims.some((d) => !(Number.isInteger(d) && d >= 1))) throw new Error(`GGUF: tensor ${t.name} has dims [${t.dims.join(', ')}]: 1 to 4 positive integers expected`);
  }
  const header = new ByteWriter();
  header.scalar(ValueType.UINT32, GGUF_MAGIC);
  header.scalar(ValueType.UINT32, GGUF_VERSION);
  header.scalar(ValueType.UINT64, BigInt(tensors.length));
  const entries = Object.entries({ 'general.alignment': u32(GGUF_ALIGNMENT), ...metadata });
  header.scalar(ValueType.UINT64, BigInt(entries.length));
  for (const [key, value] of entries) {
    header.scalar(ValueType.STRING, key);
    header.value(value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    header.scalar(ValueType.STRING, t.name);
    header.scalar(ValueType.UINT32, t.dims.length);
    for (const d of t.dims) header.scalar(ValueType.UINT64, BigInt(d));
    header.scalar(ValueType.UINT32, t.type);
    header.scalar(ValueType.UINT64, BigInt(offset));
    offsets.push(offset);
    offset = align(offset + elementsOf(t.dims) * TENSOR_BYTES[t.type]);
  }
  header.pad(GGUF_ALIGNMENT);
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, header.bytes());
    const dataStart = header.length;
    for (const [i, t] of tensors.entries()) {
      const data = t.data();
      if (data.length !== elementsOf(t.dims)) throw new Error(`GGUF: tensor ${t.name} has ${data.length} values, its dims [${t.dims.join(', ')}] hold ${elementsOf(t.dims)}`);
      const bytes = tensorBytes(data, t.type);
      writeSync(fd, bytes, 0, bytes.length, dataStart + offsets[i]);
      const end = offsets[i] + bytes.length;
      const next = i + 1 < tensors.length ? offsets[i + 1] : align(end);
      if (next > end) writeSync(fd, Buffer.alloc(next - end), 0, next - end, dataStart + end);
    }
    return dataStart + offset;
  } finally {
    closeSync(fd);
  }
}

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: number;
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, unknown>;
  tensors: GgufTensorInfo[];
}

/** Reads a GGUF file's header (metadata values and tensor infos, not the data). */
export function readGguf(file: string, maxHeaderBytes = 64 * 2 ** 20): GgufFile {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(maxHeaderBytes);
    const size = readSync(fd, buffer, 0, maxHeaderBytes, 0);
    let at = 0;
    const need = (n: number) => {
      if (at + n > size) throw new Error(`GGUF ${file}: truncated header at byte ${at}`);
      const here = at;
      at += n;
      return here;
    };
    const read = (type: ValueType): unknown => {
      switch (type) {
        case ValueType.UINT8: return buffer.readUInt8(need(1));
        case ValueType.INT8: return buffer.readInt8(need(1));
        case ValueType.BOOL: return buffer.readUInt8(need(1)) !== 0;
        case ValueType.UINT16: return buffer.readUInt16LE(need(2));
        case ValueType.INT16: return buffer.readInt16LE(need(2));
        case ValueType.UINT32: return buffer.readUInt32LE(need(4));
        case ValueType.INT32: return buffer.readInt32LE(need(4));
        case ValueType.FLOAT32: return buffer.readFloatLE(need(4));
        case ValueType.UINT64: return buffer.readBigUInt64LE(need(8));
        case ValueType.INT64: return buffer.readBigInt64LE(need(8));
        case ValueType.FLOAT64: return buffer.readDoubleLE(need(8));
        case ValueType.STRING: {
          const n = Number(buffer.readBigUInt64LE(need(8)));
          return buffer.toString('utf8', need(n), at);
        }
        case ValueType.ARRAY: {
          const itemType = buffer.readUInt32LE(need(4)) as ValueType;
          const n = Number(buffer.readBigUInt64LE(need(8)));
          return Array.from({ length: n }, () => read(itemType));
        }
        default: throw new Error(`GGUF ${file}: unknown value type ${String(type)} at byte ${at}`);
      }
    };
    if (buffer.readUInt32LE(need(4)) !== GGUF_MAGIC) throw new Error(`${file} is not a GGUF file (no "GGUF" magic)`);
    const version = buffer.readUInt32LE(need(4));
    const tensorCount = Number(buffer.readBigUInt64LE(need(8)));
    const kvCount = Number(buffer.readBigUInt64LE(need(8)));
    const metadata = new Map<string, unknown>();
    for (let i = 0; i < kvCount; i++) {
      const key = read(ValueType.STRING) as string;
      metadata.set(key, read(buffer.readUInt32LE(need(4))));
    }
    const infos: Omit<GgufTensorInfo, 'offset'>[] = [];
    const relative: number[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = read(ValueType.STRING) as string;
      const nDims = buffer.readUInt32LE(need(4));
      const dims = Array.from({ length: nDims }, () => Number(buffer.readBigUInt64LE(need(8))));
      const type = buffer.readUInt32LE(need(4));
      relative.push(Number(buffer.readBigUInt64LE(need(8))));
      infos.push({ name, dims, type });
    }
    const alignment = Number(metadata.get('general.alignment') ?? GGUF_ALIGNMENT);
    const dataStart = Math.ceil(at / alignment) * alignment;
    return { version, metadata, tensors: infos.map((t, i) => ({ ...t, offset: dataStart + relative[i] })) };
  } finally {
    closeSync(fd);
  }
}

/** One F32 or F16 tensor of a GGUF file as float32 (for checks; reads the whole tensor). */
export function readGgufTensor(file: string, info: GgufTensorInfo): Float32Array {
  const count = elementsOf(info.dims);
  const type = info.type as TensorType;
  if (type !== TensorType.F32 && type !== TensorType.F16) throw new Error(`GGUF: tensor ${info.name} has type ${info.type}; only F32 and F16 are read here`);
  const bytes = Buffer.alloc(count * TENSOR_BYTES[type]);
  const fd = openSync(file, 'r');
  try {
    if (readSync(fd, bytes, 0, bytes.length, info.offset) !== bytes.length) throw new Error(`GGUF ${file}: tensor ${info.name} is truncated`);
  } finally {
    closeSync(fd);
  }
  const out = new Float32Array(count);
  if (type === TensorType.F32) {
    for (let i = 0; i < count; i++) out[i] = bytes.readFloatLE(i * 4);
  } else {
    for (let i = 0; i < count; i++) out[i] = halfToFloat(bytes.readUInt16LE(i * 2));
  }
  return out;
}

/** The value of IEEE binary16 bits. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
