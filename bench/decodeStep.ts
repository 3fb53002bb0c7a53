/**
 * `node --expose-gc --import tsx bench/decodeStep.ts --model DIR [--lengths 100,4096,8192] [--steps 8]
 *   [--profile] [--code sidecar] [--bits 32]`:
 * the decoder's cost of one decode step on a past of each length, in its own process. The past is
 * random keys and values of the checkpoint's shape (a decode step's cost does not depend on their
 * values), fed as views, and the step fetches what `TextDecoder.forward` fetches on a decode step
 * (the last row's logits, each layer's new keys / values and column sums, no window sums).
 * `--code DIR` builds the graph with another copy of `sidecar/` (e.g. an older commit extracted
 * with `git archive`), so before and after run the same script. `--profile` turns on
 * onnxruntime's profiler for the timed steps and attributes each step's node time by kind
 * (see `kindOf`). Prints one JSON line per length.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    lengths: { type: 'string', default: '100,4096,8192' },
    steps: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    profile: { type: 'boolean', default: false },
    code: { type: 'string', default: join(__dirname, '../sidecar') },
    bits: { type: 'string', default: '32' },
    label: { type: 'string', default: '' },
  },
});
if (!values.model) throw new Error('--model DIR is required (a checkpoint, e.g. from tools/model/bench_model.py make)');

interface Value { name: string; role: string; layer?: number }
interface Manifest { inputs: Value[]; outputs: Value[] }

/** The node's kind, from the names the graph builders give (`/text/layers.3/attn/qk` -> attention). */
function kindOf(node: string): string {
  if (node.includes('lm_head')) return 'lm head';
  if (/_proj|\/mlp\/(gate|up|down)/.test(node)) return 'weight GEMV (q/k/v/o, MLP)';
  if (/colsum|window|order\//.test(node)) return 'column / window sums';
  if (/attn\/(keys|values)(?!_t|4)|\/attn\/(key|value)_out/.test(node)) return 'past + new K/V concat';
  if (/keys_t|values4/.test(node)) return 'key transpose / K,V broadcast';
  if (/attn\//.test(node)) return 'attention (QK, softmax, PV)';
  if (/layernorm|\/norm/.test(node)) return 'norms';
  if (/rope|rotary|position/.test(node)) return 'rotary';
  return 'other';
}

async function main(): Promise<void> {
  const code = resolve(String(values.code));
  const { Checkpoint } = (await import(join(code, 'src/model/checkpoint.ts'))) as typeof import('../sidecar/src/model/checkpoint.js');
  const { WeightPool } = (await import(join(code, 'src/model/graph/weightPool.ts'))) as typeof import('../sidecar/src/model/graph/weightPool.js');
  const { buildDecoderGraph } = (await import(join(code, 'src/model/text/decoderGraph.ts'))) as typeof import('../sidecar/src/model/text/decoderGraph.js');
  const checkpoint = Checkpoint.open(String(values.model));
  const text = checkpoint.config.text;
  const weights = new WeightPool(checkpoint);
  const graph = buildDecoderGraph(text, weights, Number(values.bits) === 4 ? 4 : 32);
  const manifest = graph.manifest as unknown as Manifest;
  const profilePrefix = join('/tmp', `decode-profile-${process.pid}`);
  const session = await ort.InferenceSession.create(graph.model, {
    externalData: [weights.load()],
    intraOpNumThreads: Number(values.threads),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    enableProfiling: values.profile,
    profileFilePrefix: profilePrefix,
  });
  const { hiddenSize: E, numKvHeads: Hkv, headDim: D, numLayers } = text;
  const byRole = (list: Value[], role: string) => list.filter((v) => v.role === role).sort((a, b) => (a.layer ?? 0) - (b.layer ?? 0)).map((v) => v.name);
  const one = (list: Value[], role: string) => byRole(list, role)[0];
  const fetches = [one(manifest.outputs, 'lastLogits'), ...byRole(manifest.outputs, 'key'), ...byRole(manifest.outputs, 'value'), ...byRole(manifest.outputs, 'columnSums')];
  const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
  const steps = Number(values.steps);
  const profiled: { length: number; start: number; end: number }[] = [];
  const results: Record<string, unknown>[] = [];
  for (const P of String(values.lengths).split(',').map(Number)) {
    const pastKeys = Array.from({ length: numLayers }, () => random(Hkv * P * D));
    const pastValues = Array.from({ length: numLayers }, () => random(Hkv * P * D));
    const feeds = (): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = {
        [one(manifest.inputs, 'embeds')]: new ort.Tensor('float32', random(E), [1, E]),
        [one(manifest.inputs, 'positions')]: new ort.Tensor('int64', BigInt64Array.of(BigInt(P)), [1]),
        [one(manifest.inputs, 'attentionMask')]: new ort.Tensor('float32', new Float32Array(P + 1), [1, P + 1]),
        [one(manifest.inputs, 'windowRows')]: new ort.Tensor('int64', BigInt64Array.of(0n), [1]),
      };
      byRole(manifest.inputs, 'pastKey').forEach((name, i) => (f[name] = new ort.Tensor('float32', pastKeys[i], [Hkv, P, D])));
      byRole(manifest.inputs, 'pastValue').forEach((name, i) => (f[name] = new ort.Tensor('float32', pastValues[i], [Hkv, P, D])));
      return f;
    };
    for (let i = 0; i < 2; i++) await session.run(feeds(), fetches);
    const times: number[] = [];
    const start = Date.now();
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      await session.run(feeds(), fetches);
      times.push(performance.now() - t0);
    }
    profiled.push({ length: P, start, end: Date.now() });
    times.sort((a, b) => a - b);
    results.push({ label: values.label, layers: numLayers, bits: Number(values.bits), length: P, steps, medianMs: +times[times.length >> 1].toFixed(2), minMs: +times[0].toFixed(2) });
  }
  if (values.profile) {
    session.endProfiling();
    const found = readdirSync('/tmp').filter((f) => f.startsWith(`decode-profile-${process.pid}`) && f.endsWith('.json'));
    if (found.length !== 1) throw new Error(`expected one profile file in /tmp, found ${found.length}`);
    const file = join('/tmp', found[0]);
    const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string } }[];
    rmSync(file);
    // Each length's timed steps are the last `steps` runs of its block (two warm-up runs come first).
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
    const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
    results.forEach((result, k) => {
      const mine = runs.slice(k * (steps + 2) + 2, (k + 1) * (steps + 2));
      const kinds: Record<string, number> = {};
      const ops: Record<string, number> = {};
      let nodeTotal = 0;
      for (const run of mine) {
        for (const n of nodes) {
          if (n.ts < run.ts || n.ts > run.ts + run.dur) continue;
          const name = n.name.replace(/_kernel_time$/, '');
          kinds[kindOf(name)] = (kinds[kindOf(name)] ?? 0) + n.dur / 1000 / mine.length;
          const op = n.args?.op_name ?? '?';
          ops[op] = (ops[op] ?? 0) + n.dur / 1000 / mine.length;
          nodeTotal += n.dur / 1000 / mine.length;
        }
      }
      const round = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k2, v]) => [k2, +v.toFixed(2)]));
      const runMs = mine.reduce((s, r) => s + r.dur / 1000, 0) / mine.length;
      Object.assign(result, { profiledRunMs: +runMs.toFixed(2), nodeMs: +nodeTotal.toFixed(2), byKind: round(kinds), byOp: round(ops) });
    });
  }
  for (const r of results) console.log(JSON.stringify(r));
  await session.release();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
