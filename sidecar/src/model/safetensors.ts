/**
 * Reading `.safetensors` files (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}}`, then the
 * tensor bytes. The whole header is checked against the file before any tensor byte is read, as
 * the format requires: offsets in range and matching dtype x shape, tensors laid out end to end
 * covering the data section exactly (no overlaps: a file whose tensors all point at the same
 * bytes would otherwise load as many times its size), no duplicate names. Every error names the
 * file and the tensor.
 */
import { closeSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { CheckpointError } from './checkpointError.js';
import { openRegularFile, readExactly } from './files.js';

export { CheckpointError } from './checkpointError.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };
/** The format's own limit on the header (the reference implementation's MAX_HEADER_SIZE). */
const MAX_HEADER_BYTES = 100_000_000;
/** Tensor names longer than this are cut in error messages. */
const MAX_NAME_IN_MESSAGE = 200;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offset of the tensor in the file, and its length. */
  offset: number;
  length: number;
  file: string;
}

function fail(file: string, message: string): never {
  throw new CheckpointError(`${basename(file)}: ${message}`);
}

function quoteName(name: string): string {
  return JSON.stringify(name.length > MAX_NAME_IN_MESSAGE ? `${name.slice(0, MAX_NAME_IN_MESSAGE)}...` : name);
}

/** Parses and validates the header of one safetensors file. */
export function readSafetensorsHeader(file: string): Map<string, TensorEntry> {
  const { fd, size } = openRegularFile(file);
  try {
    if (size < 8) fail(file, `truncated: ${size} bytes, not even a header length`);
    const headerBytes = readExactly(fd, file, 8, 0).readBigUInt64LE(0);
    if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) fail(file, `corrupt header: declares ${headerBytes} header bytes in a ${size}-byte file (at most ${MAX_HEADER_BYTES})`);
    const header = readExactly(fd, file, Number(headerBytes), 8);
    if (header[0] !== 0x7b) fail(file, 'corrupt header: does not start with "{"');
    const text = header.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      fail(file, 'corrupt header: not JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail(file, 'corrupt header: not a JSON object');
    const duplicate = firstDuplicateKey(text);
    if (duplicate !== null) fail(file, `corrupt header: tensor ${quoteName(duplicate)} is named twice`);
    const dataStart = 8 + header.length;
    const entries = new Map<string, TensorEntry>();
    for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      entries.set(name, validateEntry(file, name, raw, dataStart, size));
    }
    checkLayout(file, [...entries.values()], dataStart, size);
    return entries;
  } finally {
    closeSync(fd);
  }
}

function validateEntry(file: string, name: string, raw: unknown, dataStart: number, size: number): TensorEntry {
  const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const quoted = quoteName(name);
  const dtype = entry?.dtype as SafetensorsDtype;
  if (!(typeof dtype === 'string' && Object.hasOwn(DTYPE_BYTES, dtype))) {
    const shown = typeof entry?.dtype === 'string' && /^\w{1,16}$/.test(entry.dtype) ? ` ${entry.dtype}` : '';
    fail(file, `tensor ${quoted} has an unsupported dtype${shown} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  }
  const shape = entry.shape;
  if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(file, `tensor ${quoted} has an invalid shape`);
  const offsets = entry.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
    fail(file, `tensor ${quoted} has invalid data_offsets`);
  }
  const [begin, end] = offsets as [number, number];
  // In BigInt: a shape such as [2^30, 2^30, 2^30] overflows a double's exact integers.
  const needed = (shape as number[]).reduce((a, d) => a * BigInt(d), BigInt(DTYPE_BYTES[dtype]));
  if (needed !== BigInt(end - begin)) fail(file, `tensor ${quoted}: ${dtype}[${(shape as number[]).join(', ')}] needs ${needed} bytes, data_offsets span ${end - begin}`);
  if (dataStart + end > size) fail(file, `truncated: tensor ${quoted} ends at byte ${dataStart + end} of a ${size}-byte file`);
  return { name, dtype, shape: shape as number[], offset: dataStart + begin, length: end - begin, file };
}

/** The tensors must lie end to end from the start of the data section to the end of the file. */
function checkLayout(file: string, entries: TensorEntry[], dataStart: number, size: number): void {
  const sorted = [...entries].sort((a, b) => a.offset - b.offset || a.length - b.length);
  let expected = dataStart;
  let previous = '';
  for (const entry of sorted) {
    if (entry.offset < expected) fail(file, `corrupt header: tensor ${quoteName(entry.name)} overlaps tensor ${quoteName(previous)}`);
    if (entry.offset > expected) fail(file, `corrupt header: ${entry.offset - expected} bytes before tensor ${quoteName(entry.name)} belong to no tensor`);
    expected = entry.offset + entry.length;
    previous = entry.name;
  }
  if (expected !== size) fail(file, `corrupt header: the last ${size - expected} bytes of the file belong to no tensor`);
}

/**
 * The first top-level key of a JSON object text that appears twice, or null. JSON.parse keeps
 * the last silently; the format forbids duplicates, and a tensor read from the wrong entry would
 * load garbage. Walks the (already valid) text: only strings at depth 1 followed by ':' are keys.
 */
function firstDuplicateKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (depth !== 1) continue;
      let j = i + 1;
      while (text[j] === ' ' || text[j] === '\n' || text[j] === '\r' || text[j] === '\t') j++;
      if (text[j] !== ':') continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    }
  }
  return null;
}

/** Reads one tensor's bytes. */
export function readTensorBytes(entry: TensorEntry): Buffer {
  const { fd } = openRegularFile(entry.file);
  try {
    return readExactly(fd, entry.file, entry.length, entry.offset);
  } catch (error) {
    if (error instanceof CheckpointError) fail(entry.file, `truncated while reading tensor ${quoteName(entry.name)}`);
    throw error;
  } finally {
    closeSync(fd);
  }
}

/**
 * Half-precision elements widened per read: bounds the scratch buffer of a F16/BF16 tensor to
 * 2 MiB, whatever the tensor's size.
 */
export const HALF_SLICE_ELEMENTS = 1 << 20;

/** Fills `into` with the file's bytes at `position`, or fails naming the file and the tensor. */
function readFully(fd: number, entry: TensorEntry, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    const read = readSync(fd, into, done, into.length - done, position + done);
    if (read === 0) fail(entry.file, `truncated while reading tensor ${quoteName(entry.name)}`);
    done += read;
  }
}

/** IEEE half to float32, for all 65,536 bit patterns: built on first use (256 KiB). */
let halfTable: Float32Array | null = null;
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  return halfTable;
}

/**
 * Reads elements `[first, first + into.length)` of a floating-point tensor from its file into
 * `into` as float32, with no copy of the tensor: F32 bytes are read straight into `into`; F16 and
 * BF16 are read in slices of at most HALF_SLICE_ELEMENTS and widened (exactly) into place.
 * `fd`: the tensor's file, already open (row reads); otherwise the file is opened for this read.
 */
export function readFloat32Into(entry: TensorEntry, into: Float32Array, first = 0, fd?: number): void {
  const count = entry.length / DTYPE_BYTES[entry.dtype];
  if (!(Number.isInteger(first) && first >= 0 && first + into.length <= count)) {
    throw new RangeError(`elements ${first}..${first + into.length} are outside tensor ${quoteName(entry.name)} (${count} elements)`);
  }
  if (entry.dtype !== 'F32' && entry.dtype !== 'F16' && entry.dtype !== 'BF16') fail(entry.file, `tensor ${quoteName(entry.name)} is ${entry.dtype}, not a floating-point type`);
  const own = fd === undefined ? openRegularFile(entry.file).fd : fd;
  try {
    const start = entry.offset + first * DTYPE_BYTES[entry.dtype];
    if (entry.dtype === 'F32') {
      // safetensors is little-endian, as every platform onnxruntime-node ships for.
      readFully(own, entry, new Uint8Array(into.buffer, into.byteOffset, into.byteLength), start);
      return;
    }
    const slice = Math.min(into.length, HALF_SLICE_ELEMENTS);
    const halves = new Uint16Array(slice);
    const bytes = new Uint8Array(halves.buffer);
    const table = entry.dtype === 'F16' ? halfToFloatTable() : null;
    // bfloat16 is the upper half of a float32: its bits shifted into place.
    const bits = new Uint32Array(into.buffer, into.byteOffset, into.length);
    for (let done = 0; done < into.length; done += slice) {
      const n = Math.min(slice, into.length - done);
      readFully(own, entry, bytes.subarray(0, 2 * n), start + 2 * done);
      if (table) for (let i = 0; i < n; i++) into[done + i] = table[halves[i]];
      else for (let i = 0; i < n; i++) bits[done + i] = halves[i] << 16;
    }
  } finally {
    if (fd === undefined) closeSync(own);
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

/** A floating-point tensor's values as float32 from bytes already read (F16 and BF16 are widened exactly). */
export function toFloat32(entry: TensorEntry, bytes: Buffer): Float32Array {
  const count = bytes.length / DTYPE_BYTES[entry.dtype];
  switch (entry.dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    case 'F16': {
      const table = halfToFloatTable();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[bytes.readUInt16LE(2 * i)];
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
