/**
 * `node --import tsx bench/attentionPast.ts [--lengths 100,4096,8192] [--layers 8] [--rounds 20]`:
 * how a decode step's attention is best fed its past, on the Qwen2-0.5B shapes (14 query heads on
 * 2 KV heads x 64), `--layers` sessions' worth of distinct pasts per round (so the past is not
 * cache-hot), variants alternated in one process:
 *   views:     past K/V `[Hkv, P, D]` fed as views, read by the products directly;
 *   concat:    the same views concatenated with the step's new K/V first (the decoder graph's way);
 *   f16-cast:  past K/V stored float16 (half the bytes), Cast to float32 in the graph;
 *   f16-math:  past K/V float16, the products computed in float16 (the query cast down).
 * Also the cache's own per-step work in JS (`KvCache.append` of one token: the heads moved apart
 * in place, the column sums added to the scores), for `--layers` layers. One JSON line per length.
 */
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { KvCache, TEXT } from '../sidecar/src/kv/index.js';
import { buildModel, type NodeSpec } from '../sidecar/src/model/graph/onnxBuilder.js';
import { median } from './stats.js';

const { values } = parseArgs({ options: { lengths: { type: 'string', default: '100,4096,8192' }, layers: { type: 'string', default: '8' }, rounds: { type: 'string', default: '20' }, threads: { type: 'string', default: '2' } } });
const [Hkv, D, G] = [2, 64, 7];
const layers = Number(values.layers);
const VARIANTS = ['views', 'concat', 'f16-cast', 'f16-math'] as const;
type Variant = (typeof VARIANTS)[number];

function model(variant: Variant): Uint8Array {
  const nodes: NodeSpec[] = [];
  let [q, K, V] = ['q', 'K', 'V'];
  if (variant === 'concat') {
    nodes.push({ op: 'Concat', inputs: ['K', 'k_new'], outputs: ['K_all'], attributes: { axis: 1 } }, { op: 'Concat', inputs: ['V', 'v_new'], outputs: ['V_all'], attributes: { axis: 1 } });
    [K, V] = ['K_all', 'V_all'];
  }
  if (variant === 'f16-cast') {
    nodes.push({ op: 'Cast', inputs: ['K'], outputs: ['K32'], attributes: { to: onnx.TensorProto.DataType.FLOAT } }, { op: 'Cast', inputs: ['V'], outputs: ['V32'], attributes: { to: onnx.TensorProto.DataType.FLOAT } });
    [K, V] = ['K32', 'V32'];
  }
  if (variant === 'f16-math') {
    nodes.push({ op: 'Cast', inputs: ['q'], outputs: ['q16'], attributes: { to: onnx.TensorProto.DataType.FLOAT16 } });
    q = 'q16';
  }
  nodes.push({ op: 'Transpose', inputs: [K], outputs: ['K_t'], attributes: { perm: [0, 2, 1] } });
  nodes.push({ op: 'MatMul', inputs: [q, 'K_t'], outputs: ['scores'] });
  nodes.push({ op: 'Softmax', inputs: ['scores'], outputs: ['probs'], attributes: { axis: -1 } });
  const half = variant === 'f16-math';
  nodes.push({ op: 'MatMul', inputs: ['probs', V], outputs: [half ? 'o16' : 'o'] });
  if (half) nodes.push({ op: 'Cast', inputs: ['o16'], outputs: ['o'], attributes: { to: onnx.TensorProto.DataType.FLOAT } });
  const extra = variant === 'concat' ? (['k_new', 'v_new'] as const).map((name) => ({ name, type: 'float32' as const, dims: [Hkv, 1, D] })) : [];
  const bytes = buildModel({ name: variant, inputs: [{ name: 'q', type: 'float32', dims: [Hkv, G, D] }, { name: 'K', type: 'float32', dims: [Hkv, 'past', D] }, { name: 'V', type: 'float32', dims: [Hkv, 'past', D] }, ...extra], outputs: [{ name: 'o', type: 'float32', dims: [Hkv, G, D] }], nodes });
  if (!variant.startsWith('f16')) return bytes;
  // The builder knows float32 inputs only: the past inputs become float16 here.
  const proto = onnx.ModelProto.decode(bytes);
  for (const input of proto.graph!.input!) if (input.name === 'K' || input.name === 'V') input.type!.tensorType!.elemType = onnx.TensorProto.DataType.FLOAT16;
  return onnx.ModelProto.encode(proto).finish();
}

/** IEEE half bits of each float (round to nearest; the values here are normal numbers in [-1, 1]). */
function toHalf(values: Float32Array): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return Uint16Array.from(values, (x) => {
    f[0] = x;
    const sign = (u[0] >>> 16) & 0x8000;
    const exponent = ((u[0] >>> 23) & 0xff) - 112;
    return exponent <= 0 ? sign : sign | ((exponent << 10) + Math.round((u[0] & 0x7fffff) / 8192));
  });
}

const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);

/** Median ms of one token's `KvCache.append` on a past of P slots, `layers` layers. */
function appendMs(P: number): number {
  const cache = new KvCache(layers, Hkv, D);
  const rows = new Float32Array(Hkv * P * D);
  const every = <T>(x: T): T[] => Array.from({ length: layers }, () => x);
  cache.append({ keys: every(rows), values: every(rows), colsums: every(new Float32Array(Hkv * P)) }, Int32Array.from({ length: P }, (_, i) => i), new Int32Array(P).fill(TEXT), Hkv);
  const one = new Float32Array(Hkv * D);
  const times: number[] = [];
  for (let step = 0; step < 40; step++) {
    // One row per KV head, as the decoder graph emits them.
    const sums = every(new Float32Array(Hkv * (cache.length + 1)));
    const t0 = performance.now();
    cache.append({ keys: every(one), values: every(one), colsums: sums }, Int32Array.of(cache.length), Int32Array.of(TEXT), Hkv);
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function main(): Promise<void> {
  const options = { intraOpNumThreads: Number(values.threads), interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
  const sessions = await Promise.all(VARIANTS.map((v) => ort.InferenceSession.create(model(v), options)));
  for (const P of String(values.lengths).split(',').map(Number)) {
    const keys = Array.from({ length: layers }, () => random(Hkv * P * D));
    const vals = Array.from({ length: layers }, () => random(Hkv * P * D));
    const [keys16, vals16] = [keys.map(toHalf), vals.map(toHalf)];
    const q = new ort.Tensor('float32', random(Hkv * G * D), [Hkv, G, D]);
    const fresh = new ort.Tensor('float32', random(Hkv * D), [Hkv, 1, D]);
    const past = (variant: Variant, l: number): Record<string, ort.Tensor> =>
      variant.startsWith('f16')
        ? { K: new ort.Tensor('float16', keys16[l], [Hkv, P, D]), V: new ort.Tensor('float16', vals16[l], [Hkv, P, D]) }
        : { K: new ort.Tensor('float32', keys[l], [Hkv, P, D]), V: new ort.Tensor('float32', vals[l], [Hkv, P, D]), ...(variant === 'concat' ? { k_new: fresh, v_new: fresh } : {}) };
    const times = VARIANTS.map(() => [] as number[]);
    for (let round = 0; round < Number(values.rounds) + 3; round++) {
      for (const [k, variant] of VARIANTS.entries()) {
        const t0 = performance.now();
        for (let l = 0; l < layers; l++) await sessions[k].run({ q, ...past(variant, l) });
        if (round >= 3) times[k].push(performance.now() - t0);
      }
    }
    const ms = Object.fromEntries(VARIANTS.map((v, k) => [v, { medianMs: +median(times[k]).toFixed(2), minMs: +Math.min(...times[k]).toFixed(2) }]));
    console.log(JSON.stringify({ past: P, layers, attentionOfAllLayers: ms, jsAppendMs: +appendMs(P).toFixed(2) }));
  }
  await Promise.all(sessions.map((s) => s.release()));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
