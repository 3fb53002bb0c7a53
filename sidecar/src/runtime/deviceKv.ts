/**
 * A layer's K/V as onnxruntime tensors that stay where the session put them (GPU memory under
 * WebGPU), grown, matched and compacted there by the graphs of `kvDeviceGraphs.ts`. The CPU
 * decides what to keep (the KV engine's selection, from the scores it holds); the keys are
 * matched where they live (only `[heads, evicted]` answers come back), and this module turns the
 * selection and matches into row indices and weights, a few numbers per slot, for the device.
 *
 * The KV engine's TypeScript (`kv/merge.ts`) is the reference: a compaction here gives the same
 * kept slots and, for merging policies, the same merged rows up to float32 rounding.
 */
import * as ort from 'onnxruntime-node';
import type { CompressionPlan } from '../kv/compress.js';
import type { Mode } from '../kv/budget.js';
import { similarityFilter, type MergeRule } from '../kv/merge.js';
import type { Matches } from '../kv/similarity.js';
import { appendGraph, compactGraph, copyGraph, matchGraph, type KvGraphShape } from '../model/graph/kvDeviceGraphs.js';
import { providerSessionOptions, type ExecutionProvider } from './device.js';

/** One layer's K/V, `[numHeads, length, headDim]` each, on the device (or the host under the CPU provider). */
export interface DeviceKv {
  keys: ort.Tensor;
  values: ort.Tensor;
  length: number;
}

/** A plan as flat rows of `[numHeads * slots, headDim]`, what the compaction graph takes. */
export interface CompactionRows {
  /** `[numHeads * keptPerHead]`: `head * slots + kept slot`, in the plan's output order. */
  kept: BigInt64Array;
  /** Present when something is merged: the kept row's own factor and the added rows. */
  merge: {
    selfScale: Float32Array;
    /** `[merged]` rows added, their destination (`head * keptPerHead + n`) and factor. */
    source: BigInt64Array;
    target: BigInt64Array;
    weight: Float32Array;
  } | null;
}

/** What a device compaction needs of a plan: the selection, and the matches when it merges (no merged rows: the device computes them). */
export type DevicePlan = Pick<CompressionPlan, 'keptPerHead' | 'kept' | 'evictedPerHead' | 'evicted' | 'matches'>;

/** How a merging policy merges (`POLICIES[name].merge` and the compression mode); `null`: it only evicts. */
export type DeviceMerge = { rule: MergeRule; mode: Mode } | null;

/**
 * The rows and factors of `plan` on a layer of `slots` slots per head. Every kept slot n ends as
 * `(selfFactor * own row + sum of its contributions' weighted rows) / (1 + contributions)`,
 * exactly as `mergeEvicted`: pivot adds every evicted row at 1/2 with the pivot's other halves on
 * its own row; average and weighted add only the rows that pass the similarity filter, at 1 or at
 * their similarity, and average in reference mode takes the misaligned source row as the
 * reference does.
 */
export function compactionRows(plan: DevicePlan, merge: DeviceMerge, numHeads: number, slots: number): CompactionRows {
  const { keptPerHead: N, evictedPerHead: E } = plan;
  if (plan.kept.length !== numHeads * N) throw new RangeError(`plan keeps ${plan.kept.length} slots, not ${numHeads} heads x ${N}`);
  if (plan.evicted.length !== numHeads * E) throw new RangeError(`plan evicts ${plan.evicted.length} slots, not ${numHeads} heads x ${E}`);
  const kept = new BigInt64Array(numHeads * N);
  for (let h = 0; h < numHeads; h++) {
    for (let n = 0; n < N; n++) {
      const slot = plan.kept[h * N + n];
      if (!(slot >= 0 && slot < slots)) throw new RangeError(`kept slot ${slot} of head ${h} is outside 0..${slots - 1}`);
      kept[h * N + n] = BigInt(h * slots + slot);
    }
  }
  if (merge === null || E === 0) return { kept, merge: null };
  const { rule, mode } = merge;
  const { matches } = plan;
  if (!matches) throw new RangeError(`a ${rule} merge plan must carry its matches`);
  // The same choices as mergeEvicted: which evicted entries contribute, and which row each adds.
  const filter = rule === 'pivot' ? null : similarityFilter(matches.maxSim, numHeads, E);
  const entries = filter ? Array.from(filter.keys()).filter((e) => filter[e] === 1) : Array.from({ length: E }, (_, e) => e);
  const sources = rule === 'average' && mode === 'reference' ? entries.map((_, k) => k) : entries;
  const M = numHeads * entries.length;
  const count = new Float64Array(numHeads * N).fill(1);
  for (let h = 0; h < numHeads; h++) for (const e of entries) count[h * N + matches.target[h * E + e]] += 1;
  const selfScale = new Float32Array(numHeads * N);
  // Pivotal merge: (Kk + sum_e (Ke + Kk) / 2) / (1 + c): the pivot's own row counts 1 + c/2 times.
  for (let i = 0; i < selfScale.length; i++) selfScale[i] = (rule === 'pivot' ? 1 + (count[i] - 1) / 2 : 1) / count[i];
  const source = new BigInt64Array(M);
  const target = new BigInt64Array(M);
  const weight = new Float32Array(M);
  for (let h = 0, m = 0; h < numHeads; h++) {
    for (let k = 0; k < entries.length; k++, m++) {
      const e = entries[k];
      const n = matches.target[h * E + e];
      if (!(n >= 0 && n < N)) throw new RangeError(`evicted slot ${e} of head ${h} merges into kept slot ${n}, outside 0..${N - 1}`);
      const factor = rule === 'pivot' ? 0.5 : rule === 'weighted' ? matches.maxSim[h * E + e] : 1;
      source[m] = BigInt(h * slots + plan.evicted[h * E + sources[k]]);
      target[m] = BigInt(h * N + n);
      weight[m] = factor / count[h * N + n];
    }
  }
  return { kept, merge: M > 0 ? { selfScale, source, target, weight } : null };
}

export interface DeviceKvOptions {
  provider: ExecutionProvider;
  threads: number;
  /** Bound of the similarity block a match run holds on the device (default 64 MiB): evicted rows go through in chunks under it. */
  maxBlockBytes?: number;
}

/** The KV graphs of one model (one session each, shared by its layers). */
export class DeviceKvGraphs {
  private constructor(
    readonly shape: KvGraphShape,
    readonly provider: ExecutionProvider,
    private readonly sessions: Record<'gather' | 'merge' | 'append' | 'upload' | 'download' | 'match', ort.InferenceSession>,
    /** Upper bound of the `[heads, evicted, kept]` similarity block one match run holds. */
    private readonly maxBlockBytes: number,
  ) {}

  static async create(shape: KvGraphShape, options: DeviceKvOptions): Promise<DeviceKvGraphs> {
    const base = providerSessionOptions({ provider: options.provider }, options.threads);
    const onDevice = options.provider === 'webgpu';
    const session = (model: Uint8Array, outputs: 'device' | 'host') =>
      ort.InferenceSession.create(model, {
        ...base,
        ...(onDevice
          ? {
              // Every node on the device: a node left to the CPU would copy the cache both ways.
              executionProviders: ['webgpu'],
              extra: { session: { disable_cpu_ep_fallback: '1' } },
              preferredOutputLocation: outputs === 'device' ? 'gpu-buffer' : 'cpu',
            }
          : {}),
      });
    const [gather, merge, append, upload, download, match] = await Promise.all([
      session(compactGraph(shape, false), 'device'),
      session(compactGraph(shape, true), 'device'),
      session(appendGraph(shape), 'device'),
      session(copyGraph(shape), 'device'),
      session(copyGraph(shape), 'host'),
      session(matchGraph(shape), 'host'),
    ]);
    return new DeviceKvGraphs(shape, options.provider, { gather, merge, append, upload, download, match }, options.maxBlockBytes ?? 64 * 2 ** 20);
  }

  /** Host rows `[numHeads, length, headDim]` onto the device (a cache's first rows, or a rebuild). */
  async upload(keys: Float32Array, values: Float32Array, length: number): Promise<DeviceKv> {
    const out = await this.sessions.upload.run({ keys: this.hostTensor(keys, length), values: this.hostTensor(values, length) });
    return { keys: out.keys_out, values: out.values_out, length };
  }

  /** The layer's rows back on the host (tests and snapshots only: it is the full-cache copy the device path avoids). */
  async download(kv: DeviceKv): Promise<{ keys: Float32Array; values: Float32Array }> {
    const out = await this.sessions.download.run({ keys: kv.keys, values: kv.values });
    return { keys: out.keys_out.data as Float32Array, values: out.values_out.data as Float32Array };
  }

  /** `past` followed by a run's new rows (`[numHeads, count, headDim]`, host or device tensors). */
  async append(past: DeviceKv, newKeys: ort.Tensor, newValues: ort.Tensor): Promise<DeviceKv> {
    const count = this.slotsOf(newKeys);
    if (this.slotsOf(newValues) !== count) throw new RangeError(`new keys have ${count} slots and new values ${this.slotsOf(newValues)}`);
    const out = await this.sessions.append.run({ past_keys: past.keys, past_values: past.values, new_keys: newKeys, new_values: newValues });
    return { keys: out.keys_out, values: out.values_out, length: past.length + count };
  }

  /** The layer compacted by `plan` (kept slots in its order, merged rows added), in new tensors of exactly the kept size. */
  async compact(kv: DeviceKv, plan: DevicePlan, merge: DeviceMerge): Promise<DeviceKv> {
    const { numHeads: H } = this.shape;
    const rows = compactionRows(plan, merge, H, kv.length);
    const N = plan.keptPerHead;
    const feeds: Record<string, ort.Tensor> = { keys: kv.keys, values: kv.values, kept_rows: new ort.Tensor('int64', rows.kept, [H * N]) };
    if (rows.merge) {
      const M = rows.merge.source.length;
      feeds.self_scale = new ort.Tensor('float32', rows.merge.selfScale, [H * N, 1]);
      feeds.source_rows = new ort.Tensor('int64', rows.merge.source, [M]);
      feeds.target_rows = new ort.Tensor('int64', rows.merge.target, [M, 1]);
      feeds.source_weight = new ort.Tensor('float32', rows.merge.weight, [M, 1]);
    }
    const out = await (rows.merge ? this.sessions.merge : this.sessions.gather).run(feeds);
    return { keys: out.keys_out, values: out.values_out, length: N };
  }

  /**
   * Each evicted slot's most similar kept slot, by the layer's keys where they live (the engine's
   * `Matcher` reads host keys): only the `[heads, evicted]` answers come back. Same result as
   * `matchEvicted` up to float32 rounding of the similarities.
   */
  async match(kv: DeviceKv, kept: Int32Array, keptPerHead: number, evicted: Int32Array, evictedPerHead: number): Promise<Matches> {
    const { numHeads: H } = this.shape;
    const [N, E, S] = [keptPerHead, evictedPerHead, kv.length];
    const flatRows = (slots: Int32Array, perHead: number, from: number, count: number) => {
      const rows = new BigInt64Array(H * count);
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < count; i++) {
          const slot = slots[h * perHead + from + i];
          if (!(slot >= 0 && slot < S)) throw new RangeError(`slot ${slot} of head ${h} is outside 0..${S - 1}`);
          rows[h * count + i] = BigInt(h * S + slot);
        }
      }
      return new ort.Tensor('int64', rows, [H * count]);
    };
    if (kept.length !== H * N || evicted.length !== H * E) throw new RangeError(`kept/evicted must be [${H}, ${N}] and [${H}, ${E}], got ${kept.length} and ${evicted.length} indices`);
    const keptRows = flatRows(kept, N, 0, N);
    const target = new Int32Array(H * E);
    const maxSim = new Float64Array(H * E);
    const chunk = Math.max(1, Math.min(E, Math.floor(this.maxBlockBytes / (4 * H * Math.max(1, N)))));
    for (let start = 0; start < E; start += chunk) {
      const rows = Math.min(chunk, E - start);
      const out = await this.sessions.match.run({ keys: kv.keys, kept_rows: keptRows, evicted_rows: flatRows(evicted, E, start, rows) });
      const targets = out.target.data as BigInt64Array;
      const sims = out.max_sim.data as Float32Array;
      for (let h = 0; h < H; h++) {
        for (let r = 0; r < rows; r++) {
          target[h * E + start + r] = Number(targets[h * rows + r]);
          maxSim[h * E + start + r] = sims[h * rows + r];
        }
      }
    }
    return { target, maxSim };
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }

  private hostTensor(data: Float32Array, length: number): ort.Tensor {
    const { numHeads: H, headDim: D } = this.shape;
    if (data.length !== H * length * D) throw new RangeError(`rows must be [${H}, ${length}, ${D}] = ${H * length * D} floats, got ${data.length}`);
    return new ort.Tensor('float32', data, [H, length, D]);
  }

  private slotsOf(t: ort.Tensor): number {
    const { numHeads: H, headDim: D } = this.shape;
    if (t.dims.length !== 3 || t.dims[0] !== H || t.dims[2] !== D) throw new RangeError(`K/V must be [${H}, slots, ${D}], got [${t.dims.join(', ')}]`);
    return t.dims[1];
  }
}

/** Frees a layer's device buffers (a no-op for host tensors); the tensors are unusable after. */
export function releaseKv(kv: DeviceKv): void {
  kv.keys.dispose();
  kv.values.dispose();
}
