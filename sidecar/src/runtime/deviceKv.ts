/**
 * A layer's K/V as onnxruntime tensors that stay where the session put them (GPU memory under
 * WebGPU), grown and compacted there by the graphs of `kvDeviceGraphs.ts`. The CPU decides what
 * to keep (the KV engine's plan, from scores it holds); this module only turns that plan into
 * row indices and weights, a few numbers per slot, and runs it on the device.
 *
 * The KV engine's TypeScript (`kv/merge.ts`) is the reference: a compaction here gives the same
 * kept slots and, for merging policies, the same merged rows up to float32 rounding.
 */
import * as ort from 'onnxruntime-node';
import type { CompressionPlan } from '../kv/compress.js';
import type { MergeRule } from '../kv/merge.js';
import { appendGraph, compactGraph, copyGraph, type KvGraphShape } from '../model/graph/kvDeviceGraphs.js';
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

/**
 * The rows and factors of `plan` on a layer of `slots` slots per head, `rule` being its policy's
 * merge rule (`POLICIES[name].merge`). Every kept slot n ends as
 * `(selfFactor * own row + sum of its contributions' weighted rows) / (1 + contributions)`,
 * exactly as `mergeEvicted`: pivot adds every evicted row at 1/2 with the pivot's other halves on
 * its own row; average and weighted add only the filtered rows, at 1 or at their similarity, and
 * average takes its source row from the plan (reference mode's misaligned source included).
 */
export function compactionRows(plan: CompressionPlan, rule: MergeRule | null, numHeads: number, slots: number): CompactionRows {
  const { keptPerHead: N, evictedPerHead: E } = plan;
  if (plan.kept.length !== numHeads * N) throw new RangeError(`plan keeps ${plan.kept.length} slots, not ${numHeads} heads x ${N}`);
  const kept = new BigInt64Array(numHeads * N);
  for (let h = 0; h < numHeads; h++) {
    for (let n = 0; n < N; n++) {
      const slot = plan.kept[h * N + n];
      if (!(slot >= 0 && slot < slots)) throw new RangeError(`kept slot ${slot} of head ${h} is outside 0..${slots - 1}`);
      kept[h * N + n] = BigInt(h * slots + slot);
    }
  }
  if (rule === null || E === 0) return { kept, merge: null };
  const { matches, merged } = plan;
  if (!matches || !merged) throw new RangeError(`a ${rule} merge plan must carry its matches and merge outcome`);
  if ((rule === 'pivot') !== (merged.filter === null)) throw new RangeError(`the plan's merge does not follow the ${rule} rule (its similarity filter is ${merged.filter ? 'present' : 'absent'})`);
  const entries = merged.filter ? Array.from(merged.filter.keys()).filter((e) => merged.filter![e] === 1) : Array.from({ length: E }, (_, e) => e);
  const sources = merged.sourceSlot ?? entries;
  if (sources.length !== entries.length) throw new RangeError(`the plan adds ${sources.length} source rows for ${entries.length} filtered slots`);
  const M = numHeads * entries.length;
  const count = new Float64Array(numHeads * N).fill(1);
  for (let h = 0; h < numHeads; h++) for (const e of entries) count[h * N + matches.target[h * E + e]] += 1;
  const selfScale = new Float32Array(numHeads * N);
  // (1 + c) Kk / 2 ... see mergeEvicted: the pivot's own row counts once plus half per added row.
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
}

/** The KV graphs of one model (one session each, shared by its layers). */
export class DeviceKvGraphs {
  private constructor(
    readonly shape: KvGraphShape,
    readonly provider: ExecutionProvider,
    private readonly sessions: { gather: ort.InferenceSession; merge: ort.InferenceSession; append: ort.InferenceSession; upload: ort.InferenceSession; download: ort.InferenceSession },
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
    const [gather, merge, append, upload, download] = await Promise.all([
      session(compactGraph(shape, false), 'device'),
      session(compactGraph(shape, true), 'device'),
      session(appendGraph(shape), 'device'),
      session(copyGraph(shape), 'device'),
      session(copyGraph(shape), 'host'),
    ]);
    return new DeviceKvGraphs(shape, options.provider, { gather, merge, append, upload, download });
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
  async compact(kv: DeviceKv, plan: CompressionPlan, rule: MergeRule | null): Promise<DeviceKv> {
    const { numHeads: H } = this.shape;
    const rows = compactionRows(plan, rule, H, kv.length);
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
