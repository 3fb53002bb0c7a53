/**
 * The per-layer KV cache layout shared by every policy.
 *
 * Every KV head holds the same number of kept slots (`length`). Per slot we keep the K and V rows,
 * the token's true RoPE position (never re-indexed after eviction, lookm-spec §1.4), its modality
 * (text, or which image it came from) and its accumulated attention score. Everything lives in
 * flat typed arrays indexed `[head, slot(, dim)]`; there is no per-token object.
 */

/** Modality tag of a text token. Image tokens carry their image's index (0, 1, 2, ...). */
export const TEXT = -1;

export interface KvLayer {
  /** Number of KV heads (fewer than the query heads under GQA). */
  readonly numHeads: number;
  readonly headDim: number;
  /** Kept slots per head; identical for every head. */
  length: number;
  /** Allocated slots per head; `length <= capacity`. */
  capacity: number;
  /** `[numHeads, capacity, headDim]`, rows `0..length-1` of each head are valid. */
  keys: Float32Array;
  values: Float32Array;
  /** `[numHeads, capacity]`: absolute RoPE position of the token in each slot. */
  positions: Int32Array;
  /** `[numHeads, capacity]`: `TEXT` or the image index of the token in each slot. */
  modality: Int32Array;
  /** `[numHeads, capacity]`: accumulated attention mass received by each slot (lookm-spec §3). */
  scores: Float64Array;
  /** Tokens ever appended to this layer, kept or not: the base of ratio budgets across turns. */
  tokensSeen: number;
}

/** New tokens, identical for every head except for their K/V rows. */
export interface TokenChunk {
  /** `[numHeads, count, headDim]`. */
  keys: Float32Array;
  values: Float32Array;
  /** `[count]` absolute positions. */
  positions: Int32Array;
  /** `[count]` modality tags. */
  modality: Int32Array;
}

export function createLayer(numHeads: number, headDim: number, capacity = 0): KvLayer {
  if (!Number.isInteger(numHeads) || numHeads < 1) throw new RangeError(`numHeads must be a positive integer, got ${numHeads}`);
  if (!Number.isInteger(headDim) || headDim < 1) throw new RangeError(`headDim must be a positive integer, got ${headDim}`);
  return {
    numHeads,
    headDim,
    length: 0,
    capacity,
    keys: new Float32Array(numHeads * capacity * headDim),
    values: new Float32Array(numHeads * capacity * headDim),
    positions: new Int32Array(numHeads * capacity),
    modality: new Int32Array(numHeads * capacity),
    scores: new Float64Array(numHeads * capacity),
    tokensSeen: 0,
  };
}

/** Grows every buffer to hold at least `needed` slots per head, at least doubling to amortise appends. */
function reserve(layer: KvLayer, needed: number): void {
  if (needed <= layer.capacity) return;
  const capacity = Math.max(needed, layer.capacity * 2, 16);
  const { numHeads: H, headDim: D, length, capacity: old } = layer;
  const keys = new Float32Array(H * capacity * D);
  const values = new Float32Array(H * capacity * D);
  const positions = new Int32Array(H * capacity);
  const modality = new Int32Array(H * capacity);
  const scores = new Float64Array(H * capacity);
  for (let h = 0; h < H; h++) {
    keys.set(layer.keys.subarray(h * old * D, (h * old + length) * D), h * capacity * D);
    values.set(layer.values.subarray(h * old * D, (h * old + length) * D), h * capacity * D);
    positions.set(layer.positions.subarray(h * old, h * old + length), h * capacity);
    modality.set(layer.modality.subarray(h * old, h * old + length), h * capacity);
    scores.set(layer.scores.subarray(h * old, h * old + length), h * capacity);
  }
  Object.assign(layer, { keys, values, positions, modality, scores, capacity });
}

/** Appends new tokens to every head with zero score; their attention mass arrives via `accumulateScores`. */
export function appendTokens(layer: KvLayer, chunk: TokenChunk): void {
  const count = chunk.positions.length;
  const { numHeads: H, headDim: D } = layer;
  if (chunk.modality.length !== count) throw new RangeError(`modality has ${chunk.modality.length} entries for ${count} positions`);
  if (chunk.keys.length !== H * count * D || chunk.values.length !== H * count * D) {
    throw new RangeError(`keys/values must be [${H}, ${count}, ${D}] = ${H * count * D} floats, got ${chunk.keys.length} and ${chunk.values.length}`);
  }
  reserve(layer, layer.length + count);
  const cap = layer.capacity;
  for (let h = 0; h < H; h++) {
    const slot = h * cap + layer.length;
    layer.keys.set(chunk.keys.subarray(h * count * D, (h + 1) * count * D), slot * D);
    layer.values.set(chunk.values.subarray(h * count * D, (h + 1) * count * D), slot * D);
    layer.positions.set(chunk.positions, slot);
    layer.modality.set(chunk.modality, slot);
    layer.scores.fill(0, slot, slot + count);
  }
  layer.length += count;
  layer.tokensSeen += count;
}

/**
 * Adds one prefill chunk's attention column sums to the slots' scores.
 *
 * `colsum` is `[numQueryHeads, layer.length]`: for every query head, the attention mass each slot
 * (old and new) received from the chunk's query rows. Under GQA the query heads of one KV group
 * are summed into their KV head, so every KV head ranks on the attention its whole group paid.
 */
export function accumulateScores(layer: KvLayer, colsum: ArrayLike<number>, numQueryHeads: number): void {
  const { numHeads: H, length: L, capacity: cap } = layer;
  if (numQueryHeads % H !== 0) throw new RangeError(`${numQueryHeads} query heads cannot be grouped onto ${H} KV heads`);
  if (colsum.length !== numQueryHeads * L) throw new RangeError(`colsum must be [${numQueryHeads}, ${L}], got ${colsum.length} values`);
  const group = numQueryHeads / H;
  for (let q = 0; q < numQueryHeads; q++) {
    const base = Math.floor(q / group) * cap;
    for (let j = 0; j < L; j++) layer.scores[base + j] += colsum[q * L + j];
  }
}

/** Bytes the kept K and V rows take at the given element size (4 for fp32, 2 for fp16). */
export function kvBytes(layer: KvLayer, bytesPerElement = 4): number {
  return 2 * layer.numHeads * layer.length * layer.headDim * bytesPerElement;
}

/** Offset of slot `slot` of head `head` in the per-slot arrays (positions, modality, scores). */
export function slotIndex(layer: KvLayer, head: number, slot: number): number {
  return head * layer.capacity + slot;
}

/** Copies the valid rows of one head's keys or values into a dense `[length, headDim]` array. */
export function headRows(layer: KvLayer, which: 'keys' | 'values', head: number): Float32Array {
  const D = layer.headDim;
  const start = head * layer.capacity * D;
  return layer[which].slice(start, start + layer.length * D);
}

/** Dense `[numHeads, length, headDim]` copy of the kept keys or values. */
export function denseRows(layer: KvLayer, which: 'keys' | 'values'): Float32Array {
  const { numHeads: H, length: L, headDim: D } = layer;
  const out = new Float32Array(H * L * D);
  for (let h = 0; h < H; h++) out.set(headRows(layer, which, h), h * L * D);
  return out;
}

/** Dense `[numHeads, length]` copy of a per-slot array. */
export function denseSlots<T extends Int32Array | Float64Array>(layer: KvLayer, array: T): T {
  const { numHeads: H, length: L, capacity: cap } = layer;
  const out = new (array.constructor as new (n: number) => T)(H * L);
  for (let h = 0; h < H; h++) out.set(array.subarray(h * cap, h * cap + L), h * L);
  return out;
}
