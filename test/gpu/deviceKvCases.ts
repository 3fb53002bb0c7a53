/**
 * The device KV graphs against the KV engine's TypeScript (the reference), defined once and run
 * on each execution provider: the CPU provider (`deviceKvCpu.test.ts`, checks the graphs' logic
 * anywhere) and WebGPU (`deviceKvWebgpu.test.ts`, on SwiftShader's Vulkan without a GPU).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { createLayer, mulberry32, planCompression, POLICIES, type CompressionPlan, type KvLayer, type Mode, type PolicyName } from '../../sidecar/src/kv/index.js';
import { mergeEvicted, type MergeRule } from '../../sidecar/src/kv/merge.js';
import { matchEvicted } from '../../sidecar/src/kv/similarity.js';
import { buildModel } from '../../sidecar/src/model/graph/onnxBuilder.js';
import { DeviceKvGraphs, releaseKv, type DeviceKv, type DeviceMerge } from '../../sidecar/src/runtime/deviceKv.js';
import { randomLayer } from '../kv/helpers.js';

/** float32 rounding of the merged rows (sums of a few unit-scale rows). */
const MERGE_TOLERANCE = 1e-5;

const POLICIES_UNDER_TEST: PolicyName[] = ['h2o', 'window', 'text_prior', 'snapkv', 'pivot_merge', 'avg_merge', 'weighted_merge', 'text_prior_pivot_merge', 'text_prior_avg_merge', 'text_prior_weighted_merge'];

function maxDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'same number of floats');
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** The device result equals the engine's compaction: bit for bit where rows are only moved, within float32 rounding where merged. */
function assertSameRows(device: { keys: Float32Array; values: Float32Array }, reference: KvLayer, merged: boolean, what: string): void {
  if (!merged) {
    assert.deepEqual(device.keys, reference.keys.slice(), `${what}: kept keys`);
    assert.deepEqual(device.values, reference.values.slice(), `${what}: kept values`);
    return;
  }
  const diff = Math.max(maxDifference(device.keys, reference.keys), maxDifference(device.values, reference.values));
  assert.ok(diff <= MERGE_TOLERANCE, `${what}: merged rows differ by ${diff}`);
}

/** A plan with arbitrary kept slots and arbitrary matches (many evicted rows on one target), merged by the engine's `mergeEvicted`. */
function randomPlan(layer: KvLayer, seed: number, rule: MergeRule, mode: Mode): CompressionPlan {
  const next = mulberry32(seed);
  const { numHeads: H, length: L } = layer;
  const N = 1 + Math.floor(next() * (L / 3));
  const E = L - N;
  const kept = new Int32Array(H * N);
  const evicted = new Int32Array(H * E);
  for (let h = 0; h < H; h++) {
    const order = Int32Array.from({ length: L }, (_, i) => i).sort(() => next() - 0.5);
    kept.set(order.subarray(0, N), h * N); // output order need not be ascending
    evicted.set(order.subarray(N).sort(), h * E);
  }
  // Skewed targets: half the evicted rows pile onto kept slot 0.
  const target = Int32Array.from({ length: H * E }, () => (next() < 0.5 ? 0 : Math.floor(next() * N)));
  const maxSim = Float64Array.from({ length: H * E }, () => next() * 2 - 1);
  const matches = { target, maxSim };
  const merged = mergeEvicted(layer, kept, N, evicted, E, matches, rule, mode);
  return { keptPerHead: N, kept, evictedPerHead: E, evicted, matches, merged, trace: {} };
}

/**
 * A decode step as the device decoder will run it, reduced to one attention head group: the past
 * K/V stay on the device, the new token's K/V/query come from the host, the grown K/V stay on the
 * device, and only the attention the token paid to every slot (LOOK-M's scores) comes back.
 */
function decodeStepModel(numHeads: number, headDim: number): Uint8Array {
  const kv = (name: string, slots: string) => ({ name, type: 'float32' as const, dims: [numHeads, slots, headDim] });
  return buildModel({
    name: 'toy_decode_step',
    opset: 18,
    inputs: [kv('past_keys', 'past'), kv('past_values', 'past'), kv('new_keys', 'one'), kv('new_values', 'one'), kv('query', 'one')],
    outputs: [kv('present_keys', 'total'), kv('present_values', 'total'), { name: 'attention', type: 'float32', dims: [numHeads, 'one', 'total'] }, kv('context', 'one')],
    nodes: [
      { op: 'Concat', inputs: ['past_keys', 'new_keys'], outputs: ['present_keys'], attributes: { axis: 1 } },
      { op: 'Concat', inputs: ['past_values', 'new_values'], outputs: ['present_values'], attributes: { axis: 1 } },
      { op: 'Transpose', inputs: ['present_keys'], outputs: ['keys_t'], attributes: { perm: [0, 2, 1] } },
      { op: 'MatMul', inputs: ['query', 'keys_t'], outputs: ['logits'] },
      { op: 'Softmax', inputs: ['logits'], outputs: ['attention'], attributes: { axis: -1 } },
      { op: 'MatMul', inputs: ['attention', 'present_values'], outputs: ['context'] },
    ],
  });
}

export function defineDeviceKvTests(provider: 'cpu' | 'webgpu'): void {
  const onDevice = provider === 'webgpu';
  const expectedLocation = onDevice ? 'gpu-buffer' : 'cpu';
  /** Graph sets by `[numHeads, headDim]`: one session per graph, reused by every case of that shape. */
  const graphs = new Map<string, DeviceKvGraphs>();
  const timings: string[] = [];
  const graphsFor = async (numHeads: number, headDim: number): Promise<DeviceKvGraphs> => {
    const key = `${numHeads}x${headDim}`;
    let found = graphs.get(key);
    if (!found) {
      const start = performance.now();
      found = await DeviceKvGraphs.create({ numHeads, headDim }, { provider, threads: 1 });
      timings.push(`sessions ${key}: ${(performance.now() - start).toFixed(0)} ms`);
      graphs.set(key, found);
    }
    return found;
  };
  /** Compacts `layer`'s rows on the device by `plan` and reads the result back (checking it stayed on the device until then). */
  const compactOnDevice = async (layer: KvLayer, plan: CompressionPlan, merge: DeviceMerge) => {
    const g = await graphsFor(layer.numHeads, layer.headDim);
    const kv = await g.upload(layer.keys, layer.values, layer.length);
    const out = await g.compact(kv, plan, merge);
    assert.equal(out.keys.location, expectedLocation);
    assert.deepEqual(out.keys.dims, [layer.numHeads, plan.keptPerHead, layer.headDim], 'exactly the kept size');
    const rows = await g.download(out);
    releaseKv(kv);
    releaseKv(out);
    return rows;
  };

  describe(`device KV graphs on the ${provider} execution provider`, () => {
    before(async () => {
      await graphsFor(2, 8); // the first session pays the provider's start-up; timed apart from the cases
    });
    after(async () => {
      for (const g of graphs.values()) await g.release();
      if (process.env.LOOKM_DEVICE_TIMINGS) console.log(`# ${provider}: ${timings.join('; ')}`);
    });

    for (const mode of ['improved', 'reference'] as const) {
      it(`compacts like the engine under every policy's real plans (${mode} mode)`, async () => {
        for (const policy of POLICIES_UNDER_TEST) {
          for (const seed of [1, 2]) {
            const { layer, queries, numQueryHeads } = randomLayer({ seed, numHeads: 2, headDim: 8, length: 48 + seed * 7, imageShare: 0.6 });
            const plan = await planCompression(layer, { policy, mode, budget: { hhRatio: 0.2, recentRatio: 0.1 }, queries, numQueryHeads });
            if (!plan) continue;
            const reference = layer.clone();
            reference.compact(plan);
            const rule = POLICIES[policy].merge;
            const start = performance.now();
            const rows = await compactOnDevice(layer, plan, rule && { rule, mode });
            if (seed === 1 && mode === 'improved') timings.push(`${policy} upload+compact+download: ${(performance.now() - start).toFixed(1)} ms`);
            assertSameRows(rows, reference, plan.merged !== null, `${policy} seed ${seed}`);
          }
        }
      });
    }

    it('merges like the engine on random plans with skewed targets, every rule and mode', async () => {
      for (const rule of ['pivot', 'average', 'weighted'] as const) {
        for (const mode of ['improved', 'reference'] as const) {
          for (const seed of [11, 12, 13]) {
            const { layer } = randomLayer({ seed, numHeads: 1 + (seed % 3), headDim: 4 + (seed % 5), length: 30 + seed });
            const plan = randomPlan(layer, seed * 7, rule, mode);
            const reference = layer.clone();
            reference.compact(plan);
            assertSameRows(await compactOnDevice(layer, plan, { rule, mode }), reference, true, `${rule} ${mode} seed ${seed}`);
          }
        }
      }
    });

    it('appends like the engine, and grows from an upload through appends', async () => {
      const g = await graphsFor(2, 8);
      const next = mulberry32(5);
      const reference = createLayer(2, 8);
      let kv: DeviceKv | null = null;
      for (const count of [5, 1, 1, 3]) {
        const keys = Float32Array.from({ length: 2 * count * 8 }, () => next() - 0.5);
        const values = Float32Array.from({ length: 2 * count * 8 }, () => next() - 0.5);
        const at = reference.length;
        reference.append({ keys, values, positions: Int32Array.from({ length: count }, (_, i) => at + i), modality: new Int32Array(count) });
        const grown: DeviceKv = kv ? await g.append(kv, new ort.Tensor('float32', keys, [2, count, 8]), new ort.Tensor('float32', values, [2, count, 8])) : await g.upload(keys, values, count);
        if (kv) releaseKv(kv);
        kv = grown;
        assert.equal(kv.keys.location, expectedLocation);
      }
      assert.ok(kv);
      assert.equal(kv.length, reference.length);
      assert.deepEqual(await g.download(kv), { keys: reference.keys.slice(), values: reference.values.slice() });
      releaseKv(kv);
    });

    it('refuses a plan that does not fit the layer, saying why', async () => {
      const { layer } = randomLayer({ seed: 4, numHeads: 2, headDim: 8, length: 20 });
      const g = await graphsFor(2, 8);
      const kv = await g.upload(layer.keys, layer.values, layer.length);
      const plan = { keptPerHead: 2, kept: Int32Array.from([0, 1, 0, 20]), evictedPerHead: 18, evicted: new Int32Array(36), matches: null, merged: null, trace: {} };
      await assert.rejects(g.compact(kv, plan, null), /kept slot 20 of head 1 is outside 0\.\.19/);
      await assert.rejects(g.compact(kv, { ...plan, kept: Int32Array.from([0, 1, 2]) }, null), /keeps 3 slots, not 2 heads x 2/);
      await assert.rejects(g.compact(kv, { ...plan, kept: Int32Array.from([0, 1, 0, 1]) }, { rule: 'pivot', mode: 'improved' }), /must carry its matches/);
      await assert.rejects(g.match(kv, Int32Array.from([0, 1, 0, 1]), 2, Int32Array.from([2, 25]), 1), /slot 25 of head 1 is outside 0\.\.19/);
      releaseKv(kv);
    });

    it('matches evicted keys to kept keys where the keys live, like the engine (chunk by chunk)', async () => {
      for (const seed of [31, 32]) {
        const { layer } = randomLayer({ seed, numHeads: 3, headDim: 8, length: 90 });
        const plan = await planCompression(layer, { policy: 'h2o', budget: { hhRatio: 0.15, recentRatio: 0.1 } });
        assert.ok(plan);
        const g = await graphsFor(3, 8);
        const kv = await g.upload(layer.keys, layer.values, layer.length);
        const exact = matchEvicted(layer, plan.kept, plan.keptPerHead, plan.evicted, plan.evictedPerHead);
        const device = await g.match(kv, plan.kept, plan.keptPerHead, plan.evicted, plan.evictedPerHead);
        releaseKv(kv);
        assert.deepEqual(device.target, exact.target, `seed ${seed}: targets`);
        for (let i = 0; i < exact.maxSim.length; i++) assert.ok(Math.abs(device.maxSim[i] - exact.maxSim[i]) < 1e-5, `seed ${seed}: similarity ${i}`);
      }
      // A block bound of one evicted row per run: the chunks must add up to the same answer.
      const { layer } = randomLayer({ seed: 33, numHeads: 2, headDim: 8, length: 40 });
      const plan = await planCompression(layer, { policy: 'h2o', budget: { hhRatio: 0.2, recentRatio: 0.1 } });
      assert.ok(plan);
      const small = await DeviceKvGraphs.create({ numHeads: 2, headDim: 8 }, { provider, threads: 1, maxBlockBytes: 1 });
      const kv = await small.upload(layer.keys, layer.values, layer.length);
      const chunked = await small.match(kv, plan.kept, plan.keptPerHead, plan.evicted, plan.evictedPerHead);
      assert.deepEqual(chunked.target, matchEvicted(layer, plan.kept, plan.keptPerHead, plan.evicted, plan.evictedPerHead).target);
      releaseKv(kv);
      await small.release();
    });

    it('compresses with matching and merging both on the device (the CPU only selects): same as the engine', async () => {
      for (const policy of ['text_prior_pivot_merge', 'text_prior_avg_merge', 'text_prior_weighted_merge', 'pivot_merge'] as const) {
        const { layer } = randomLayer({ seed: 41, numHeads: 2, headDim: 8, length: 70, imageShare: 0.7 });
        const plan = await planCompression(layer, { policy, budget: { hhRatio: 0.2, recentRatio: 0.1 } });
        assert.ok(plan?.merged);
        const reference = layer.clone();
        reference.compact(plan);
        const g = await graphsFor(2, 8);
        const kv = await g.upload(layer.keys, layer.values, layer.length);
        // Only the selection crosses from the engine's plan: the device matches and merges.
        const matches = await g.match(kv, plan.kept, plan.keptPerHead, plan.evicted, plan.evictedPerHead);
        const selection = { keptPerHead: plan.keptPerHead, kept: plan.kept, evictedPerHead: plan.evictedPerHead, evicted: plan.evicted, matches };
        const out = await g.compact(kv, selection, { rule: POLICIES[policy].merge, mode: 'improved' });
        assertSameRows(await g.download(out), reference, true, policy);
        releaseKv(kv);
        releaseKv(out);
      }
    });

    it('decodes and compresses with the K/V left where the session put them; only scores-sized outputs come back', async () => {
      const H = 2;
      const D = 8;
      const g = await graphsFor(H, D);
      const stepOptions: ort.InferenceSession.SessionOptions = onDevice
        ? { executionProviders: ['webgpu'], extra: { session: { disable_cpu_ep_fallback: '1' } }, preferredOutputLocation: { present_keys: 'gpu-buffer', present_values: 'gpu-buffer', attention: 'cpu', context: 'cpu' } }
        : { executionProviders: ['cpu'], intraOpNumThreads: 1 };
      const step = await ort.InferenceSession.create(decodeStepModel(H, D), stepOptions);
      const next = mulberry32(21);
      const rows = (count: number) => Float32Array.from({ length: H * count * D }, () => next() * 2 - 1);
      // The engine's reference cache sees the same tokens and the same attention (the test's own check, not part of the device path).
      const reference = createLayer(H, D);
      const prompt = { keys: rows(24), values: rows(24) };
      reference.append({ ...prompt, positions: Int32Array.from({ length: 24 }, (_, i) => i), modality: new Int32Array(24).fill(-1) });
      reference.accumulate(new Float32Array(H * 24).fill(1), H);
      let kv = await g.upload(prompt.keys, prompt.values, 24);
      let hostBytes = 0;
      let steps = 0;
      const decode = async (count: number) => {
        for (let i = 0; i < count; i++) {
          const token = { keys: rows(1), values: rows(1), query: rows(1) };
          const out = await step.run({
            past_keys: kv.keys,
            past_values: kv.values,
            new_keys: new ort.Tensor('float32', token.keys, [H, 1, D]),
            new_values: new ort.Tensor('float32', token.values, [H, 1, D]),
            query: new ort.Tensor('float32', token.query, [H, 1, D]),
          });
          assert.equal(out.present_keys.location, expectedLocation, 'new keys stay on the device');
          assert.equal(out.present_values.location, expectedLocation, 'new values stay on the device');
          assert.equal(out.attention.location, 'cpu', 'scores come back');
          for (const name of ['attention', 'context']) hostBytes += (out[name].data as Float32Array).byteLength;
          releaseKv(kv);
          kv = { keys: out.present_keys, values: out.present_values, length: kv.length + 1 };
          reference.append({ keys: token.keys, values: token.values, positions: Int32Array.of(reference.tokensSeen), modality: Int32Array.of(-1) });
          reference.accumulate(out.attention.data as Float32Array, H);
          steps++;
        }
      };
      await decode(12);
      const plan = await planCompression(reference, { policy: 'text_prior_pivot_merge', budget: { hhRatio: 0.25, recentRatio: 0.15 } });
      assert.ok(plan?.merged);
      const compacted = await g.compact(kv, plan, { rule: 'pivot', mode: 'improved' });
      assert.equal(compacted.keys.location, expectedLocation, 'compaction stays on the device');
      releaseKv(kv);
      kv = compacted;
      reference.compact(plan);
      await decode(6);
      // Per step, the host saw the attention row and the context: O(slots + headDim), never the O(slots x headDim) cache.
      const cacheBytes = 2 * H * kv.length * D * 4;
      assert.ok(hostBytes / steps < cacheBytes / 4, `${hostBytes / steps} bytes per step came back, the cache is ${cacheBytes}`);
      assert.equal(kv.length, reference.length);
      assertSameRows(await g.download(kv), reference, true, 'decode, compress, decode');
      releaseKv(kv);
      await step.release();
    });
  });
}
