/**
 * Reading `.safetensors` files (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}}`, then the
 * tensor bytes. Every header entry is checked against the file before anything is used, and
 * every error names the file and the tensor.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };
/** A header larger than this is not a real checkpoint's; refuse before parsing it. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offset of the tensor in the file, and its length. */
  offset: number;
  length: number;
  file: string;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

function fail(file: string, message: string): never {
  throw new CheckpointError(`${basename(file)}: ${message}`);
}

/** Parses and validates the header of one safetensors file. */
export function readSafetensorsHeader(file: string): Map<string, TensorEntry> {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    return fail(file, `cannot open (${error instanceof Error ? error.message : String(error)})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) fail(file, `truncated: ${size} bytes, not even a header length`);
    const prefix = Buffer.alloc(8);
    readSync(fd, prefix, 0, 8, 0);
    const headerBytes = prefix.readBigUInt64LE(0);
    if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) fail(file, `corrupt header: declares ${headerBytes} header bytes in a ${size}-byte file`);
    const header = Buffer.alloc(Number(headerBytes));
    readSync(fd, header, 0, header.length, 8);
    let parsed: unknown;
    try {
      parsed = JSON.parse(header.toString('utf8'));
    } catch {
      fail(file, 'corrupt header: not JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail(file, 'corrupt header: not a JSON object');
    const dataStart = 8 + header.length;
    const entries = new Map<string, TensorEntry>();
    for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      entries.set(name, validateEntry(file, name, raw, dataStart, size));
    }
    return entries;
  } finally {
    closeSync(fd);
  }
}

function validateEntry(file: string, name: string, raw: unknown, dataStart: number, size: number): TensorEntry {
  const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const dtype = entry?.dtype as SafetensorsDtype;
  if (!(typeof dtype === 'string' && dtype in DTYPE_BYTES)) fail(file, `tensor "${name}" has unsupported dtype ${JSON.stringify(entry?.dtype)}`);
  const shape = entry.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(file, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
  const offsets = entry.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
    fail(file, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const length = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  if (end - begin !== length) fail(file, `tensor "${name}": ${dtype}${JSON.stringify(shape)} needs ${length} bytes, data_offsets span ${end - begin}`);
  if (dataStart + end > size) fail(file, `truncated: tensor "${name}" ends at byte ${dataStart + end} of a ${size}-byte file`);
  return { name, dtype, shape: shape as number[], offset: dataStart + begin, length, file };
}

/** Reads one tensor's bytes. */
export function readTensorBytes(entry: TensorEntry): Buffer {
  const fd = openSync(entry.file, 'r');
  try {
    const bytes = Buffer.alloc(entry.length);
    const read = readSync(fd, bytes, 0, entry.length, entry.offset);
    if (read !== entry.length) fail(entry.file, `truncated while reading tensor "${entry.name}"`);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** IEEE half to float. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** A floating-point tensor's values as float32 (F16 and BF16 are widened exactly). */
export function toFloat32(entry: TensorEntry, bytes: Buffer): Float32Array {
  const count = bytes.length / DTYPE_BYTES[entry.dtype];
  switch (entry.dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(bytes.readUInt16LE(2 * i));
      return out;
    }
    case 'BF16': {
      // bfloat16 is the upper half of a float32.
      const bits = new Uint32Array(count);
      for (let i = 0; i < count; i++) bits[i] = bytes.readUInt16LE(2 * i) << 16;
      return new Float32Array(bits.buffer);
    }
    default:
      return fail(entry.file, `tensor "${entry.name}" is ${entry.dtype}, not a floating-point type`);
  }
}
