/**
 * The per-layer KV cache layout shared by every policy.
 *
 * Every KV head holds the same number of kept slots (`length`). Per slot we keep the K and V rows,
 * the token's true RoPE position (never re-indexed after eviction, lookm-spec §1.4), its modality
 * (text, or which image it came from) and its accumulated attention score. Everything lives in
 * flat typed arrays indexed `[head, slot(, dim)]`; there is no per-token object.
 *
 * The layout is compact: `keys` is exactly `[numHeads, length, headDim]`, contiguous, so the
 * decoder takes it as its past input without a copy. Spare capacity lies after the last head, in
 * the storage the views are cut from; an append moves the heads apart in place (one memmove, the
 * cost the decoder's compact past used to pay as a copy into a mirror of the whole cache), and a
 * compaction moves the kept slots into storage of exactly their size, so memory that compression
 * drops is really released and a compressed cache holds its budget, not more; the next append
 * (the answer's first token) regrows it with a bounded headroom.
 */

/** Modality tag of a text token. Image tokens carry their image's index (0, 1, 2, ...). */
export const TEXT = -1;

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

/** Slots that differ per head, `perHead` in each: what the cold tier stores and recalls. */
export interface SlotRows {
  perHead: number;
  /** `[numHeads, perHead, headDim]`. */
  keys: Float32Array;
  values: Float32Array;
  /** `[numHeads, perHead]`. */
  positions: Int32Array;
  modality: Int32Array;
  scores: Float64Array;
}

/** What a compaction keeps: the kept slots in output order, and the merged rows if the policy merged. */
export interface Compaction {
  keptPerHead: number;
  /** `[numHeads, keptPerHead]` slot indices before the compaction. */
  kept: Int32Array;
  /** `[numHeads, keptPerHead, headDim]` rows replacing the kept slots' own (merging policies). */
  merged: { keys: Float32Array; values: Float32Array } | null;
}

/**
 * Spare slots per head left after a growth: room to decode a while without reallocating, bounded
 * to an eighth of the slots (at least 16, at most 1,024).
 */
export function headroomSlots(length: number): number {
  return Math.min(1024, Math.max(16, Math.ceil(length / 8)));
}

/** Bytes one slot of one head takes: its K and V rows at 4 bytes, position and modality (int32), score (float64). */
export function slotBytes(headDim: number): number {
  return 2 * headDim * 4 + SLOT_META_BYTES;
}

/** Bytes of one slot's position, modality and score: what a layer whose K/V live elsewhere (a GPU) holds per slot. */
export const SLOT_META_BYTES = 4 + 4 + 8;

interface Storage {
  keys: Float32Array;
  values: Float32Array;
  positions: Int32Array;
  modality: Int32Array;
  scores: Float64Array;
}

function allocate(H: number, D: number, slots: number, hostRows = true): Storage {
  const rows = hostRows ? H * slots * D : 0;
  return {
    keys: new Float32Array(rows),
    values: new Float32Array(rows),
    positions: new Int32Array(H * slots),
    modality: new Int32Array(H * slots),
    scores: new Float64Array(H * slots),
  };
}

export class KvLayer {
  /** Kept slots per head; identical for every head. */
  length = 0;
  /** Tokens ever appended to this layer, kept or not: the base of ratio budgets across turns. */
  tokensSeen = 0;
  /** `[numHeads, length, headDim]` views of the storage: valid until the layer next changes size. */
  keys!: Float32Array;
  values!: Float32Array;
  /** `[numHeads, length]`: absolute RoPE position of the token in each slot. */
  positions!: Int32Array;
  /** `[numHeads, length]`: `TEXT` or the image index of the token in each slot. */
  modality!: Int32Array;
  /** `[numHeads, length]`: accumulated attention mass received by each slot (lookm-spec §3). */
  scores!: Float64Array;
  private storage: Storage;
  private slots: number;

  constructor(
    /** Number of KV heads (fewer than the query heads under GQA). */
    readonly numHeads: number,
    readonly headDim: number,
    reservedSlots = 0,
    /**
     * false: the K/V rows live elsewhere (on a GPU, held by the runtime beside the cache) and this
     * layer keeps only the per-slot data policies read (positions, modality, scores); `keys` and
     * `values` are then empty and an append's rows are not read.
     */
    readonly hostRows = true,
  ) {
    if (!Number.isInteger(numHeads) || numHeads < 1) throw new RangeError(`numHeads must be a positive integer, got ${numHeads}`);
    if (!Number.isInteger(headDim) || headDim < 1) throw new RangeError(`headDim must be a positive integer, got ${headDim}`);
    if (!Number.isInteger(reservedSlots) || reservedSlots < 0) throw new RangeError(`reserved slots must be a non-negative integer, got ${reservedSlots}`);
    this.slots = reservedSlots;
    this.storage = allocate(numHeads, headDim, reservedSlots, hostRows);
    this.cutViews();
  }

  /** A layer of `length` zeroed slots (positions 0..length-1, text), for benchmarks and tests that fill its views in place. */
  static blank(numHeads: number, headDim: number, length: number): KvLayer {
    const layer = new KvLayer(numHeads, headDim, length);
    layer.length = length;
    layer.tokensSeen = length;
    layer.cutViews();
    for (let h = 0; h < numHeads; h++) for (let j = 0; j < length; j++) layer.positions[h * length + j] = j;
    layer.modality.fill(TEXT);
    return layer;
  }

  /** Slots per head the storage holds; `length <= allocatedSlots`. */
  get allocatedSlots(): number {
    return this.slots;
  }

  /** Bytes of every buffer this layer holds (K, V and per-slot arrays, spare capacity included). */
  get allocatedBytes(): number {
    return this.numHeads * this.slots * this.hostSlotBytes;
  }

  /** Bytes a slot takes in this layer's host storage (no K/V rows when they live elsewhere). */
  private get hostSlotBytes(): number {
    return this.hostRows ? slotBytes(this.headDim) : SLOT_META_BYTES;
  }

  /** Bytes the kept slots take (what the layer would hold with no spare capacity). */
  get keptBytes(): number {
    return this.numHeads * this.length * this.hostSlotBytes;
  }

  /** Makes room for `slots` slots per head in one allocation (a prefill about to append that many); never shrinks. */
  reserve(slots: number): void {
    if (slots > this.slots) this.relayout(this.length, slots);
  }

  /** Appends new tokens to every head with zero score; their attention mass arrives via `accumulate`. */
  append(chunk: TokenChunk): void {
    const count = chunk.positions.length;
    const { numHeads: H, headDim: D, length: L } = this;
    if (chunk.modality.length !== count) throw new RangeError(`modality has ${chunk.modality.length} entries for ${count} positions`);
    if (this.hostRows && (chunk.keys.length !== H * count * D || chunk.values.length !== H * count * D)) {
      throw new RangeError(`keys/values must be [${H}, ${count}, ${D}] = ${H * count * D} floats, got ${chunk.keys.length} and ${chunk.values.length}`);
    }
    const grown = L + count;
    if (grown > this.slots) this.relayout(grown, grown + headroomSlots(grown));
    else this.spread(grown);
    const s = this.storage;
    for (let h = 0; h < H; h++) {
      const slot = h * grown + L;
      if (this.hostRows) {
        s.keys.set(chunk.keys.subarray(h * count * D, (h + 1) * count * D), slot * D);
        s.values.set(chunk.values.subarray(h * count * D, (h + 1) * count * D), slot * D);
      }
      s.positions.set(chunk.positions, slot);
      s.modality.set(chunk.modality, slot);
      s.scores.fill(0, slot, slot + count);
    }
    this.length = grown;
    this.tokensSeen += count;
    this.cutViews();
  }

  /**
   * Adds one prefill chunk's attention column sums to the slots' scores.
   *
   * `colsum` is `[numQueryHeads, length]`: for every query head, the attention mass each slot
   * (old and new) received from the chunk's query rows. Under GQA the query heads of one KV group
   * are summed into their KV head, so every KV head ranks on the attention its whole group paid.
   * Sums already grouped (the decoder graph's, `[numHeads, length]`) pass `numHeads` rows.
   */
  accumulate(colsum: ArrayLike<number>, numQueryHeads: number): void {
    const { numHeads: H, length: L } = this;
    if (numQueryHeads % H !== 0) throw new RangeError(`${numQueryHeads} query heads cannot be grouped onto ${H} KV heads`);
    if (colsum.length !== numQueryHeads * L) throw new RangeError(`colsum must be [${numQueryHeads}, ${L}], got ${colsum.length} values`);
    const group = numQueryHeads / H;
    for (let q = 0; q < numQueryHeads; q++) {
      const base = Math.floor(q / group) * L;
      for (let j = 0; j < L; j++) this.scores[base + j] += colsum[q * L + j];
    }
  }

  /**
   * Keeps the compaction's slots, in its output order, in new storage of exactly the kept size
   * (the budget is what a compressed cache holds): the old storage is let go, so what compression
   * dropped is freed. Positions,
   * modality and scores travel with their slot; merged slots keep their own score (the reference
   * keeps `hh_score[mask]`).
   */
  compact(plan: Compaction): void {
    const { numHeads: H, headDim: D, length: L } = this;
    const N = plan.keptPerHead;
    if (plan.kept.length !== H * N) throw new RangeError(`kept must be [${H}, ${N}], got ${plan.kept.length} indices`);
    const slots = N;
    const to = allocate(H, D, slots, this.hostRows);
    for (let h = 0; h < H; h++) {
      for (let n = 0; n < N; n++) {
        const from = h * L + plan.kept[h * N + n];
        if (plan.kept[h * N + n] >= L || plan.kept[h * N + n] < 0) throw new RangeError(`kept slot ${plan.kept[h * N + n]} is outside 0..${L - 1}`);
        const into = h * N + n;
        if (!plan.merged && this.hostRows) {
          to.keys.set(this.keys.subarray(from * D, (from + 1) * D), into * D);
          to.values.set(this.values.subarray(from * D, (from + 1) * D), into * D);
        }
        to.positions[into] = this.positions[from];
        to.modality[into] = this.modality[from];
        to.scores[into] = this.scores[from];
      }
    }
    if (plan.merged && this.hostRows) {
      to.keys.set(plan.merged.keys.subarray(0, H * N * D));
      to.values.set(plan.merged.values.subarray(0, H * N * D));
    }
    this.storage = to;
    this.slots = slots;
    this.length = N;
    this.cutViews();
  }

  /**
   * Inserts slots that differ per head (recalled from the cold tier) among the kept ones, each
   * before the first kept slot of its head with a larger true position, so a cache kept in
   * position order stays in it (the recent window stays the last slots). Their rows, positions,
   * modality and scores come with them; `tokensSeen` is unchanged (they are not new tokens). The
   * storage is reallocated to exactly the new length.
   */
  insert(rows: SlotRows): void {
    if (!this.hostRows) throw new RangeError('slots cannot be inserted into a layer whose K/V rows live elsewhere (the cold tier needs host rows)');
    const { numHeads: H, headDim: D, length: L } = this;
    const n = rows.perHead;
    if (rows.positions.length !== H * n || rows.modality.length !== H * n || rows.scores.length !== H * n || rows.keys.length !== H * n * D || rows.values.length !== H * n * D) {
      throw new RangeError(`inserted slots must be [${H}, ${n}] (rows [${H}, ${n}, ${D}])`);
    }
    if (n === 0) return;
    const N = L + n;
    const to = allocate(H, D, N);
    for (let h = 0; h < H; h++) {
      const order = Array.from({ length: n }, (_, i) => h * n + i).sort((a, b) => rows.positions[a] - rows.positions[b]);
      let next = 0;
      let into = h * N;
      const put = (keys: Float32Array, values: Float32Array, from: number, position: number, modality: number, score: number) => {
        to.keys.set(keys.subarray(from * D, (from + 1) * D), into * D);
        to.values.set(values.subarray(from * D, (from + 1) * D), into * D);
        to.positions[into] = position;
        to.modality[into] = modality;
        to.scores[into] = score;
        into++;
      };
      const putRecalled = (i: number) => put(rows.keys, rows.values, i, rows.positions[i], rows.modality[i], rows.scores[i]);
      for (let j = 0; j < L; j++) {
        const slot = h * L + j;
        while (next < n && rows.positions[order[next]] < this.positions[slot]) putRecalled(order[next++]);
        put(this.keys, this.values, slot, this.positions[slot], this.modality[slot], this.scores[slot]);
      }
      while (next < n) putRecalled(order[next++]);
    }
    this.storage = to;
    this.slots = N;
    this.length = N;
    this.cutViews();
  }

  /**
   * Drops the slots after the first `length` of every head (undoing appends: the kept rows are
   * never written by an append), with storage for `slots` slots per head (default: `length` plus
   * the headroom); storage beyond that is released.
   */
  truncate(length: number, slots = length + headroomSlots(length)): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.length)) throw new RangeError(`cannot truncate ${this.length} slots to ${length}`);
    if (!(Number.isInteger(slots) && slots >= length)) throw new RangeError(`cannot hold ${length} slots in storage for ${slots}`);
    if (this.slots !== slots) this.relayout(length, slots);
    else this.gather(length);
    this.length = length;
    this.cutViews();
  }

  /** An independent deep copy with the same capacity. */
  clone(): KvLayer {
    const copy = new KvLayer(this.numHeads, this.headDim, this.slots, this.hostRows);
    for (const key of ['keys', 'values', 'positions', 'modality', 'scores'] as const) copy.storage[key].set(this.storage[key]);
    copy.length = this.length;
    copy.tokensSeen = this.tokensSeen;
    copy.cutViews();
    return copy;
  }

  /** New storage of `slots` per head, each head's first `keep` slots copied to its place at stride `stride`. */
  private relayout(stride: number, slots: number): void {
    const { numHeads: H, headDim: D, length: L } = this;
    const keep = Math.min(L, stride);
    const to = allocate(H, D, slots, this.hostRows);
    const from = this.storage;
    for (let h = 0; h < H; h++) {
      if (this.hostRows) {
        to.keys.set(from.keys.subarray(h * L * D, (h * L + keep) * D), h * stride * D);
        to.values.set(from.values.subarray(h * L * D, (h * L + keep) * D), h * stride * D);
      }
      to.positions.set(from.positions.subarray(h * L, h * L + keep), h * stride);
      to.modality.set(from.modality.subarray(h * L, h * L + keep), h * stride);
      to.scores.set(from.scores.subarray(h * L, h * L + keep), h * stride);
    }
    this.storage = to;
    this.slots = slots;
  }

  /** In place: every head's rows move from stride `length` to the larger stride `stride` (last head first, so none is overwritten). */
  private spread(stride: number): void {
    const { numHeads: H, headDim: D, length: L } = this;
    const s = this.storage;
    for (let h = H - 1; h > 0; h--) {
      s.keys.copyWithin(h * stride * D, h * L * D, (h + 1) * L * D);
      s.values.copyWithin(h * stride * D, h * L * D, (h + 1) * L * D);
      s.positions.copyWithin(h * stride, h * L, (h + 1) * L);
      s.modality.copyWithin(h * stride, h * L, (h + 1) * L);
      s.scores.copyWithin(h * stride, h * L, (h + 1) * L);
    }
  }

  /** In place: every head's first `keep` rows move from stride `length` to stride `keep` (first head first). */
  private gather(keep: number): void {
    const { numHeads: H, headDim: D, length: L } = this;
    const s = this.storage;
    for (let h = 1; h < H; h++) {
      s.keys.copyWithin(h * keep * D, h * L * D, (h * L + keep) * D);
      s.values.copyWithin(h * keep * D, h * L * D, (h * L + keep) * D);
      s.positions.copyWithin(h * keep, h * L, h * L + keep);
      s.modality.copyWithin(h * keep, h * L, h * L + keep);
      s.scores.copyWithin(h * keep, h * L, h * L + keep);
    }
  }

  private cutViews(): void {
    const { numHeads: H, headDim: D, length: L } = this;
    const s = this.storage;
    this.keys = s.keys.subarray(0, H * L * D);
    this.values = s.values.subarray(0, H * L * D);
    this.positions = s.positions.subarray(0, H * L);
    this.modality = s.modality.subarray(0, H * L);
    this.scores = s.scores.subarray(0, H * L);
  }
}

/** An empty layer with room for `reservedSlots` slots per head. */
export function createLayer(numHeads: number, headDim: number, reservedSlots = 0): KvLayer {
  return new KvLayer(numHeads, headDim, reservedSlots);
}

/** Offset of slot `slot` of head `head` in the per-slot arrays (positions, modality, scores). */
export function slotIndex(layer: KvLayer, head: number, slot: number): number {
  return head * layer.length + slot;
}

/** One head's keys or values, `[length, headDim]` (a view: copy it to keep it across changes). */
export function headRows(layer: KvLayer, which: 'keys' | 'values', head: number): Float32Array {
  const D = layer.headDim;
  return layer[which].subarray(head * layer.length * D, (head + 1) * layer.length * D);
}

/** Dense `[numHeads, length, headDim]` copy of the kept keys or values. */
export function denseRows(layer: KvLayer, which: 'keys' | 'values'): Float32Array {
  return layer[which].slice();
}

/** Dense `[numHeads, length]` copy of a per-slot array. */
export function denseSlots<T extends Int32Array | Float64Array>(layer: KvLayer, array: T): T {
  return array.slice(0, layer.numHeads * layer.length) as T;
}

/** Copies of the slots `slots` (`[numHeads, perHead]` slot indices) of every head. */
export function gatherSlots(layer: KvLayer, slots: Int32Array, perHead: number): SlotRows {
  const { numHeads: H, headDim: D, length: L } = layer;
  if (slots.length !== H * perHead) throw new RangeError(`slots must be [${H}, ${perHead}], got ${slots.length} indices`);
  const out: SlotRows = { perHead, keys: new Float32Array(H * perHead * D), values: new Float32Array(H * perHead * D), positions: new Int32Array(H * perHead), modality: new Int32Array(H * perHead), scores: new Float64Array(H * perHead) };
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < perHead; i++) {
      const j = slots[h * perHead + i];
      if (!(j >= 0 && j < L)) throw new RangeError(`slot ${j} is outside 0..${L - 1}`);
      const from = h * L + j;
      const into = h * perHead + i;
      out.keys.set(layer.keys.subarray(from * D, (from + 1) * D), into * D);
      out.values.set(layer.values.subarray(from * D, (from + 1) * D), into * D);
      out.positions[into] = layer.positions[from];
      out.modality[into] = layer.modality[from];
      out.scores[into] = layer.scores[from];
    }
  }
  return out;
}
