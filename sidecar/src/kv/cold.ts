/**
 * The cold tier: what compression evicted, kept in host memory, quantized (see `quantize.ts`),
 * instead of being dropped. Each entry is one evicted slot of one head with its true position,
 * modality, recall span and accumulated score, so a recall puts it back exactly where it was
 * (keys are stored post-RoPE at their true positions).
 *
 * Every head of a layer, and every layer of a store, holds the same number of entries: evictions
 * take as many slots from every head and layer, and recalls and drops give back as many. That is
 * what lets the hot cache keep one length per layer, and the cold entries be scored as a past of
 * the decoder. Within a head, entries are in the order they were evicted (oldest first).
 */
import type { SlotRows } from './layout.js';
import { codeBytes, dequantizeRows, groupsPerRow, quantFormat, quantizeRows, type ColdQuantization, type QuantFormat } from './quantize.js';

/** Evicted slots with their recall span ids (`[numHeads, perHead]`). */
export interface ColdRows extends SlotRows {
  spans: Int32Array;
}

type Field = Uint8Array | Float32Array | Int32Array | Float64Array;

/** The entries `keep` (`[H, m]` indices per head) of a `[H, count, width]` array, as a new `[H, m, width]` one. */
function gather<T extends Field>(array: T, H: number, count: number, width: number, keep: Int32Array, m: number): T {
  const out = new (array.constructor as new (n: number) => T)(H * m * width);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < m; i++) {
      const from = (h * count + keep[h * m + i]) * width;
      out.set(array.subarray(from, from + width), (h * m + i) * width);
    }
  }
  return out;
}

/** `[H, a, w]` then `[H, b, w]` per head: `[H, a + b, w]`. */
export function concatHeads<T extends Field>(first: T, a: number, second: T, b: number, H: number, width: number): T {
  const out = new (first.constructor as new (n: number) => T)(H * (a + b) * width);
  for (let h = 0; h < H; h++) {
    out.set(first.subarray(h * a * width, (h + 1) * a * width), h * (a + b) * width);
    out.set(second.subarray(h * b * width, (h + 1) * b * width), (h * (a + b) + a) * width);
  }
  return out;
}

interface Fields {
  keyCodes: Uint8Array;
  keyScales: Float32Array;
  valueCodes: Uint8Array;
  valueScales: Float32Array;
  positions: Int32Array;
  modality: Int32Array;
  spans: Int32Array;
  scores: Float64Array;
}

export class ColdLayer {
  /** Entries per head. */
  count = 0;
  private fields: Fields;
  private readonly format: QuantFormat;

  constructor(
    readonly numHeads: number,
    readonly headDim: number,
    readonly quantization: ColdQuantization,
  ) {
    this.format = quantFormat(quantization, headDim);
    this.fields = this.empty(0);
  }

  /** `[numHeads, count]` per entry. */
  get positions(): Int32Array {
    return this.fields.positions;
  }
  get modality(): Int32Array {
    return this.fields.modality;
  }
  get spans(): Int32Array {
    return this.fields.spans;
  }
  get scores(): Float64Array {
    return this.fields.scores;
  }

  /** Bytes one entry of one head takes: K and V codes and scales, position, modality, span (int32), score (float64). */
  get entryBytes(): number {
    return 2 * (codeBytes(this.format) + 4 * groupsPerRow(this.format)) + 4 + 4 + 4 + 8;
  }

  get bytes(): number {
    return this.numHeads * this.count * this.entryBytes;
  }

  /** Appends evicted slots (the newest entries of every head). */
  add(rows: ColdRows): void {
    const { numHeads: H, headDim: D } = this;
    const n = rows.perHead;
    if (rows.spans.length !== H * n || rows.positions.length !== H * n || rows.keys.length !== H * n * D) throw new RangeError(`cold rows must be [${H}, ${n}] (keys [${H}, ${n}, ${D}])`);
    if (n === 0) return;
    const added = this.empty(n);
    quantizeRows(this.format, rows.keys, added.keyCodes, added.keyScales);
    quantizeRows(this.format, rows.values, added.valueCodes, added.valueScales);
    added.positions.set(rows.positions);
    added.modality.set(rows.modality);
    added.spans.set(rows.spans);
    added.scores.set(rows.scores);
    const C = this.count;
    this.fields = this.map((key, width) => concatHeads(this.fields[key], C, added[key], n, H, width));
    this.count = C + n;
  }

  /** Removes the entries `indices` (`[numHeads, perHead]`, per head) and returns them dequantized. */
  take(indices: Int32Array, perHead: number): ColdRows {
    const { numHeads: H, headDim: D, count: C } = this;
    if (indices.length !== H * perHead || perHead > C) throw new RangeError(`indices must be [${H}, ${perHead}] with at most ${C} per head, got ${indices.length}`);
    const left = new Int32Array(H * (C - perHead));
    const isTaken = new Uint8Array(C);
    for (let h = 0; h < H; h++) {
      isTaken.fill(0);
      for (let i = 0; i < perHead; i++) {
        const j = indices[h * perHead + i];
        if (!(j >= 0 && j < C) || isTaken[j]) throw new RangeError(`cold entry ${j} of head ${h} is not there or taken twice`);
        isTaken[j] = 1;
      }
      for (let j = 0, k = 0; j < C; j++) if (!isTaken[j]) left[h * (C - perHead) + k++] = j;
    }
    const taken = this.map((key, width) => gather(this.fields[key], H, C, width, indices, perHead));
    const keys = new Float32Array(H * perHead * D);
    const values = new Float32Array(H * perHead * D);
    dequantizeRows(this.format, taken.keyCodes, taken.keyScales, 0, H * perHead, keys);
    dequantizeRows(this.format, taken.valueCodes, taken.valueScales, 0, H * perHead, values);
    this.fields = this.map((key, width) => gather(this.fields[key], H, C, width, left, C - perHead));
    this.count = C - perHead;
    return { perHead, keys, values, positions: taken.positions, modality: taken.modality, spans: taken.spans, scores: taken.scores };
  }

  /** Drops the `k` oldest entries of every head. */
  dropOldest(k: number): void {
    const { numHeads: H, count: C } = this;
    const drop = Math.min(C, k);
    if (drop <= 0) return;
    const left = new Int32Array(H * (C - drop));
    for (let h = 0; h < H; h++) for (let i = 0; i < C - drop; i++) left[h * (C - drop) + i] = drop + i;
    this.fields = this.map((key, width) => gather(this.fields[key], H, C, width, left, C - drop));
    this.count = C - drop;
  }

  /** Dequantized keys or values of entries `[from, to)` of every head: `[numHeads, to - from, headDim]`. */
  rows(which: 'keys' | 'values', from: number, to: number): Float32Array {
    const { numHeads: H, headDim: D, count: C } = this;
    const n = to - from;
    const out = new Float32Array(H * n * D);
    const codes = which === 'keys' ? this.fields.keyCodes : this.fields.valueCodes;
    const scales = which === 'keys' ? this.fields.keyScales : this.fields.valueScales;
    for (let h = 0; h < H; h++) dequantizeRows(this.format, codes, scales, h * C + from, n, out, h * n);
    return out;
  }

  private widths(): Record<keyof Fields, number> {
    const cb = codeBytes(this.format);
    const g = groupsPerRow(this.format);
    return { keyCodes: cb, keyScales: g, valueCodes: cb, valueScales: g, positions: 1, modality: 1, spans: 1, scores: 1 };
  }

  private map(f: <K extends keyof Fields>(key: K, width: number) => Fields[K]): Fields {
    const w = this.widths();
    return {
      keyCodes: f('keyCodes', w.keyCodes),
      keyScales: f('keyScales', w.keyScales),
      valueCodes: f('valueCodes', w.valueCodes),
      valueScales: f('valueScales', w.valueScales),
      positions: f('positions', w.positions),
      modality: f('modality', w.modality),
      spans: f('spans', w.spans),
      scores: f('scores', w.scores),
    };
  }

  private empty(perHead: number): Fields {
    const w = this.widths();
    const n = this.numHeads * perHead;
    return {
      keyCodes: new Uint8Array(n * w.keyCodes),
      keyScales: new Float32Array(n * w.keyScales),
      valueCodes: new Uint8Array(n * w.valueCodes),
      valueScales: new Float32Array(n * w.valueScales),
      positions: new Int32Array(n),
      modality: new Int32Array(n),
      spans: new Int32Array(n),
      scores: new Float64Array(n),
    };
  }
}

/** One conversation's cold tier: a `ColdLayer` per decoder layer. */
export class ColdStore {
  readonly layers: readonly ColdLayer[];

  constructor(numLayers: number, numHeads: number, headDim: number, readonly quantization: ColdQuantization) {
    if (!Number.isInteger(numLayers) || numLayers < 1) throw new RangeError(`numLayers must be a positive integer, got ${numLayers}`);
    this.layers = Array.from({ length: numLayers }, () => new ColdLayer(numHeads, headDim, quantization));
  }

  /** Entries per head (identical in every layer). */
  get count(): number {
    return this.layers[0].count;
  }

  get bytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.bytes, 0);
  }

  /** Drops the oldest entries, as many from every head of every layer, until the store holds at most `maxBytes`. */
  trim(maxBytes: number): number {
    const before = this.bytes;
    if (before <= maxBytes) return 0;
    const perEntry = this.layers.reduce((sum, layer) => sum + layer.numHeads * layer.entryBytes, 0);
    const drop = Math.ceil((before - maxBytes) / perEntry);
    for (const layer of this.layers) layer.dropOldest(drop);
    return before - this.bytes;
  }
}
