/**
 * A KV cache's K/V rows on the device (WebGPU): one pair of device tensors per layer, replaced by
 * each run's present outputs and compacted by the KV graphs where they live. The `KvCache` holds
 * this object opaque beside its layers (which keep positions, modality and scores on the host,
 * what the policies read); the runtime reads and changes it. No step copies the rows to the host.
 */
import * as ort from 'onnxruntime-node';
import type { ExternalRows } from '../kv/cache.js';
import type { CompressionPlan } from '../kv/compress.js';
import type { Matcher } from '../kv/similarity.js';
import { releaseKv, type DeviceKv, type DeviceKvGraphs, type DeviceMerge } from './deviceKv.js';

export class DeviceRows implements ExternalRows {
  /** Per layer, the rows (an empty host tensor before the first run). */
  private layers: DeviceKv[];
  /** Slots per head to keep at the next use (an undo recorded synchronously, applied by `settle`). */
  private pendingLength: number | null = null;
  private released = false;

  constructor(
    readonly graphs: DeviceKvGraphs,
    readonly numLayers: number,
  ) {
    this.layers = Array.from({ length: numLayers }, () => this.empty());
  }

  get length(): number {
    return this.layers[0].length;
  }

  /** Bytes of the device tensors (float32 K and V, exactly the kept slots: a run's present is sized to its past plus the chunk). */
  get allocatedBytes(): number {
    const { numHeads: H, headDim: D } = this.graphs.shape;
    return this.layers.reduce((sum, kv) => sum + 2 * H * kv.length * D * 4, 0);
  }

  truncate(length: number): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.length)) throw new RangeError(`cannot truncate ${this.length} device slots to ${length}`);
    this.pendingLength = length === this.length ? null : length;
  }

  /** The rows as the decoder's past, an undo applied first. */
  async past(): Promise<DeviceKv[]> {
    await this.settle();
    return this.layers;
  }

  /** A run's present K/V become the rows (the old tensors are freed: the present holds them and the chunk's). */
  replace(keys: readonly ort.Tensor[], values: readonly ort.Tensor[], length: number): void {
    this.assertLive();
    if (keys.length !== this.numLayers || values.length !== this.numLayers) throw new RangeError(`expected present K/V for ${this.numLayers} layers, got ${keys.length} and ${values.length}`);
    this.layers.forEach((kv, i) => {
      releaseKv(kv);
      this.layers[i] = { keys: keys[i], values: values[i], length };
    });
  }

  /** Evicted-to-kept matching by layer `index`'s keys where they live (only the answers come back). */
  matcher(index: number): Matcher {
    return async (_layer, kept, keptPerHead, evicted, evictedPerHead) => {
      await this.settle();
      return this.graphs.match(this.layers[index], kept, keptPerHead, evicted, evictedPerHead);
    };
  }

  /** Layer `index` compacted by `plan` on the device (kept slots gathered, merged rows scatter-added). */
  async compact(index: number, plan: CompressionPlan, merge: DeviceMerge): Promise<void> {
    await this.settle();
    const before = this.layers[index];
    this.layers[index] = await this.graphs.compact(before, plan, merge);
    releaseKv(before);
  }

  /** A copy of every layer's rows on the host (tests and diagnostics only: the full-cache copy the device path avoids). */
  async download(): Promise<{ keys: Float32Array; values: Float32Array }[]> {
    await this.settle();
    const empty = () => Promise.resolve({ keys: new Float32Array(0), values: new Float32Array(0) });
    return Promise.all(this.layers.map((kv) => (kv.length === 0 ? empty() : this.graphs.download(kv))));
  }

  /** Where each layer's rows are (`gpu-buffer` on the device, `cpu` for the empty rows before a first run). */
  locations(): string[] {
    return this.layers.flatMap((kv) => [kv.keys.location, kv.values.location]);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.layers.forEach(releaseKv);
  }

  private async settle(): Promise<void> {
    this.assertLive();
    const length = this.pendingLength;
    if (length === null) return;
    this.pendingLength = null;
    const { numHeads: H } = this.graphs.shape;
    const keep = Int32Array.from({ length: H * length }, (_, i) => i % length);
    const plan = { keptPerHead: length, kept: keep, evictedPerHead: 0, evicted: new Int32Array(0), matches: null };
    for (let i = 0; i < this.numLayers; i++) {
      const before = this.layers[i];
      this.layers[i] = length === 0 ? this.empty() : await this.graphs.compact(before, plan, null);
      releaseKv(before);
    }
  }

  private empty(): DeviceKv {
    const { numHeads: H, headDim: D } = this.graphs.shape;
    return { keys: new ort.Tensor('float32', new Float32Array(0), [H, 0, D]), values: new ort.Tensor('float32', new Float32Array(0), [H, 0, D]), length: 0 };
  }

  private assertLive(): void {
    if (this.released) throw new Error('the KV cache was released: its device rows are gone');
  }
}
