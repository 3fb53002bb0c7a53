/**
 * One conversation's KV cache: a `KvLayer` per decoder layer, grown by prefill chunks and decode
 * steps, compacted by compression, handed to the decoder as its past without a copy. It is the
 * only holder of the conversation's K/V: there is no mirror of the past beside it, so its
 * `allocatedBytes` is what the cache costs the process.
 */
import type { Mode } from './budget.js';
import type { CompressionPlan } from './compress.js';
import { KvLayer, slotBytes, type Compaction, type SlotRows, type TokenChunk } from './layout.js';
import type { MergeRule } from './merge.js';
import type { Matcher } from './similarity.js';

/** One layer's past as the decoder takes it: zero-copy `[numHeads, length, headDim]` views. */
export interface PastView {
  keys: Float32Array;
  values: Float32Array;
  length: number;
}

/**
 * K/V rows held outside the host (on a GPU, by the runtime that made them): the cache carries them
 * opaque beside its layers (which then keep only per-slot data), counts their bytes, undoes and
 * releases them. The runtime reads, grows and compacts them itself.
 */
export interface ExternalRows {
  /** Bytes of every layer's K/V where they live. */
  readonly allocatedBytes: number;
  /** Keeps each layer's first `length` slots (undoing appends); the owner may apply it before its next use. */
  truncate(length: number): void;
  /** Frees the rows; the cache is unusable after. */
  release(): void;
  /** Evicted-to-kept matching by layer `index`'s keys where they live (for `planCompression`'s `rowsElsewhere`). */
  matcher(index: number): Matcher;
  /** Compacts layer `index`'s rows by `plan` where they live, merging as `merge` says (null: gather only); the host layer is compacted by `KvCache.compact`. */
  compact(index: number, plan: CompressionPlan, merge: { rule: MergeRule; mode: Mode } | null): Promise<void>;
}

const NO_ROWS = new Float32Array(0);

export class KvCache {
  readonly layers: readonly KvLayer[];
  /**
   * Called synchronously whenever the cache's storage grew (a reserve, or an append past its
   * capacity), before control returns to any caller: the engine's global budget runs here, so
   * a turn's growth is answered before anything can observe it.
   */
  onGrowth: (() => void) | null = null;
  /**
   * The next token's rotary position less `tokensSeen`: 0 for one position per token; negative
   * after an image under Qwen2-VL's M-RoPE (transformers' `rope_deltas`), whose image tokens take
   * fewer positions than tokens. Slots keep their token index as `positions`; keys are cached
   * rotated, so only the next token's position needs it.
   */
  ropeDelta = 0;

  constructor(
    numLayers: number,
    numHeads: number,
    headDim: number,
    /** Where the K/V rows live when not in the layers' host storage (null: on the host, in the layers). */
    readonly external: ExternalRows | null = null,
  ) {
    if (!Number.isInteger(numLayers) || numLayers < 1) throw new RangeError(`numLayers must be a positive integer, got ${numLayers}`);
    this.layers = Array.from({ length: numLayers }, () => new KvLayer(numHeads, headDim, 0, external === null));
  }

  /** Frees rows held outside the host (a GPU's memory is not reclaimed by garbage collection); a no-op otherwise. */
  release(): void {
    this.external?.release();
  }

  /** Kept slots per head (identical in every layer after the same appends; layer 0's figure). */
  get length(): number {
    return this.layers[0].length;
  }

  get tokensSeen(): number {
    return this.layers[0].tokensSeen;
  }

  /** Bytes of every buffer the cache holds, spare capacity included: what it costs the process. */
  get allocatedBytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.allocatedBytes, 0) + (this.external?.allocatedBytes ?? 0);
  }

  /** Bytes of the kept slots alone. */
  get keptBytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.keptBytes, 0) + (this.external?.allocatedBytes ?? 0);
  }

  /** Bytes a full cache of every token seen would take (kept slots only, no spare capacity). */
  get fullBytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.numHeads * layer.tokensSeen * slotBytes(layer.headDim), 0);
  }

  /** Room for `count` more slots per head in every layer, in one allocation per layer (a prefill's tokens). */
  reserve(count: number): void {
    const before = this.allocatedBytes;
    for (const layer of this.layers) layer.reserve(layer.length + count);
    if (this.allocatedBytes > before) this.onGrowth?.();
  }

  /** Appends one run's new tokens to every layer (`keys[i]`, `values[i]`: layer i's rows) and adds its attention column sums. */
  append(
    chunks: {
      keys: readonly Float32Array[];
      values: readonly Float32Array[];
      colsums: ArrayLike<number>[];
      /** Puts the run's rows into the external rows (a device cache's present tensors), so their growth counts as this append's. */
      applyExternal?: () => void;
    },
    positions: Int32Array,
    modality: Int32Array,
    numQueryHeads: number,
  ): void {
    const before = this.allocatedBytes;
    chunks.applyExternal?.();
    this.layers.forEach((layer, i) => {
      // Rows held elsewhere arrive there (the runtime's device tensors): the layer takes no host rows.
      const chunk: TokenChunk = { keys: chunks.keys[i] ?? NO_ROWS, values: chunks.values[i] ?? NO_ROWS, positions, modality };
      layer.append(chunk);
      layer.accumulate(chunks.colsums[i], numQueryHeads);
    });
    if (this.allocatedBytes > before) this.onGrowth?.();
  }

  /** Inserts per-head slots into every layer (`rows[i]`: layer i's, see `KvLayer.insert`): a recall from the cold tier. */
  insert(rows: readonly SlotRows[]): void {
    if (rows.length !== this.layers.length) throw new RangeError(`inserted rows for ${rows.length} layers, the cache has ${this.layers.length}`);
    const before = this.allocatedBytes;
    this.layers.forEach((layer, i) => layer.insert(rows[i]));
    if (this.allocatedBytes > before) this.onGrowth?.();
  }

  /** Compacts layer `index` to a plan's kept slots (see `KvLayer.compact`: the dropped storage is released). */
  compact(index: number, plan: Compaction): void {
    this.layers[index].compact(plan);
  }

  /** The decoder's past inputs: views of the layers' own storage (valid until the cache next changes). */
  past(): PastView[] {
    return this.layers.map((layer) => ({ keys: layer.keys, values: layer.values, length: layer.length }));
  }

  /**
   * Remembers the cache as it is, to undo appends exactly (a prefill that is not kept): the kept
   * rows are never written by an append, only the scores they gain and the slots after them.
   * Its storage gets back the capacity it had. Valid until the cache is compacted.
   */
  mark(): () => void {
    const marks = this.layers.map((layer) => ({ length: layer.length, slots: layer.allocatedSlots, tokensSeen: layer.tokensSeen, scores: layer.scores.slice() }));
    const { ropeDelta } = this;
    return () => {
      this.ropeDelta = ropeDelta;
      this.layers.forEach((layer, i) => {
        const { length, slots, tokensSeen, scores } = marks[i];
        layer.truncate(length, slots);
        layer.scores.set(scores);
        layer.tokensSeen = tokensSeen;
        if (i === 0) this.external?.truncate(marks[0].length);
      });
    };
  }
}
