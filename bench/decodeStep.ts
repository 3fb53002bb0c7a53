/**
 * `node --expose-gc --import tsx bench/decodeStep.ts --model DIR [--lengths 100,4096,8192] [--steps 8]
 *   [--profile] [--code sidecar] [--bits 32|8|4]`:
 * the decoder's cost of one decode step on a past of each length, in its own process. The past is
 * random keys and values of the checkpoint's shape (a decode step's cost does not depend on their
 * values), fed as views, and the step fetches what `TextDecoder.forward` fetches on a decode step
 * (the last row's logits, each layer's new keys / values and column sums, no window sums).
 * `--code DIR[,DIR...]` builds the graph with each copy of `sidecar/` listed (e.g. an older commit
 * extracted with `git archive`), all in this process, their steps alternated so a busy machine's
 * drift weighs on each alike; `ratioToFirst` is the first's median step over each one's. `--bits 32,8,4`
 * does the same for weight precisions (every code copy at every precision listed). `--profile` turns on
 * onnxruntime's profiler for the timed steps and attributes each step's node time by kind
 * (see `kindOf`). Prints one JSON line per length. The copies are created in the listed order, and
 * the order of loading weighs (`bench/fullStep.ts` measured the second of two loads of the same
 * code 2-6% faster): run a comparison both ways round.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { chunkMask } from '../sidecar/src/runtime/textDecoder.js';
import { parseWeightBits, type WeightBits } from '../sidecar/src/model/text/decoderGraph.js';
import { median } from './stats.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    lengths: { type: 'string', default: '100,4096,8192' },
    steps: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    profile: { type: 'boolean', default: false },
    code: { type: 'string', default: join(__dirname, '../sidecar') },
    bits: { type: 'string', default: '32' },
    chunk: { type: 'string', default: '1' },
    label: { type: 'string', default: '' },
  },
});
if (!values.model) throw new Error('--model DIR is required (a checkpoint, e.g. from tools/model/bench_model.py make)');

interface Value { name: string; role: string; layer?: number }
interface Manifest { inputs: Value[]; outputs: Value[] }

/** The node's kind, from the names the graph builders give (`/text/layers.3/attn/qk` -> attention). */
function kindOf(node: string): string {
  if (node.includes('lm_head_last')) return 'lm head (last row)';
  if (node.includes('lm_head')) return 'lm head (every row, not fetched)';
  if (/_proj|\/mlp\/(gate|up|down)/.test(node)) return 'weight GEMV (q/k/v/o, MLP)';
  if (/colsum|window|order\//.test(node)) return 'column / window sums';
  if (/attn\/(keys|values)(?!_t|4)|\/attn\/(key|value)_out/.test(node)) return 'past + new K/V concat';
  if (/keys_t|values4/.test(node)) return 'key transpose / K,V broadcast';
  if (/attn\//.test(node)) return 'attention (QK, softmax, PV)';
  if (/layernorm|\/norm/.test(node)) return 'norms';
  if (/rope|rotary|position/.test(node)) return 'rotary';
  return 'other';
}

interface Variant {
  label: string;
  bits: WeightBits;
  session: ort.InferenceSession;
  manifest: Manifest;
  profilePrefix: string;
}

async function loadVariant(code: string, bits: WeightBits, index: number): Promise<Variant> {
  const root = resolve(code);
  const { Checkpoint } = (await import(join(root, 'src/model/checkpoint.ts'))) as typeof import('../sidecar/src/model/checkpoint.js');
  const { WeightPool } = (await import(join(root, 'src/model/graph/weightPool.ts'))) as typeof import('../sidecar/src/model/graph/weightPool.js');
  const { buildDecoderGraph } = (await import(join(root, 'src/model/text/decoderGraph.ts'))) as typeof import('../sidecar/src/model/text/decoderGraph.js');
  const checkpoint = Checkpoint.open(String(values.model));
  const weights = new WeightPool(checkpoint);
  const graph = buildDecoderGraph(checkpoint.config.text, weights, { weightBits: bits });
  const profilePrefix = join('/tmp', `decode-profile-${process.pid}-${index}`);
  const session = await ort.InferenceSession.create(graph.model, {
    externalData: [weights.load()],
    intraOpNumThreads: Number(values.threads),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    enableProfiling: values.profile,
    profileFilePrefix: profilePrefix,
  });
  return { label: code, bits, session, manifest: graph.manifest as unknown as Manifest, profilePrefix };
}

const byRole = (list: Value[], role: string) => list.filter((v) => v.role === role).sort((a, b) => (a.layer ?? 0) - (b.layer ?? 0)).map((v) => v.name);
const one = (list: Value[], role: string) => byRole(list, role)[0];
const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);

/** Each timed step's node time by kind and by op, averaged, from a variant's profile file. */
function attribute(variant: Variant, blocks: { length: number; runs: number }[], warmup: number): Record<string, unknown>[] {
  variant.session.endProfiling();
  const found = readdirSync('/tmp').filter((f) => f.startsWith(basename(variant.profilePrefix) + '_') && f.endsWith('.json'));
  if (found.length !== 1) throw new Error(`expected one profile file of ${variant.profilePrefix}, found ${found.length}`);
  const file = join('/tmp', found[0]);
  const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string } }[];
  rmSync(file);
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  let first = 0;
  return blocks.map(({ length, runs: count }) => {
    const mine = runs.slice(first + warmup, first + count);
    first += count;
    const kinds: Record<string, number> = {};
    const ops: Record<string, number> = {};
    const byNode: Record<string, number> = {};
    let nodeTotal = 0;
    for (const run of mine) {
      for (const n of nodes) {
        if (n.ts < run.ts || n.ts > run.ts + run.dur) continue;
        const name = n.name.replace(/_kernel_time$/, '');
        const ms = n.dur / 1000 / mine.length;
        kinds[kindOf(name)] = (kinds[kindOf(name)] ?? 0) + ms;
        const op = n.args?.op_name ?? '?';
        ops[op] = (ops[op] ?? 0) + ms;
        // Every layer's node under one name: `/text/layers.3/attn/qk` -> `/text/layers.*/attn/qk`.
        const shared = name.replace(/layers\.\d+/, 'layers.*');
        byNode[shared] = (byNode[shared] ?? 0) + ms;
        nodeTotal += ms;
      }
    }
    const round = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).sort((a, b) => b[1] - a[1]).filter(([, v]) => v >= 0.05).map(([k, v]) => [k, +v.toFixed(2)]));
    return { length, profiledRunMs: +(median(mine.map((r) => r.dur / 1000))).toFixed(2), nodeMs: +nodeTotal.toFixed(2), byKind: round(kinds), byOp: round(ops), topNodes: Object.fromEntries(Object.entries(round(byNode)).slice(0, 15)) };
  });
}

async function main(): Promise<void> {
  const variants: Variant[] = [];
  const bitsList = String(values.bits).split(',').map(parseWeightBits);
  for (const code of String(values.code).split(',')) for (const bits of bitsList) variants.push(await loadVariant(code, bits, variants.length));
  const checkpoint = (await import('../sidecar/src/model/checkpoint.js')).Checkpoint.open(String(values.model));
  const { hiddenSize: E, numKvHeads: Hkv, headDim: D, numLayers } = checkpoint.config.text;
  const steps = Number(values.steps);
  const S = Number(values.chunk);
  const warmup = S > 1 ? 1 : 2;
  const blocks: { length: number; runs: number }[] = [];
  const results: Record<string, unknown>[] = [];
  for (const P of String(values.lengths).split(',').map(Number)) {
    const pastKeys = Array.from({ length: numLayers }, () => random(Hkv * P * D));
    const pastValues = Array.from({ length: numLayers }, () => random(Hkv * P * D));
    const feeds = ({ manifest }: Variant): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = {
        [one(manifest.inputs, 'embeds')]: new ort.Tensor('float32', random(S * E), [S, E]),
        [one(manifest.inputs, 'positions')]: new ort.Tensor('int64', BigInt64Array.from({ length: S }, (_, r) => BigInt(P + r)), [S]),
        [one(manifest.inputs, 'attentionMask')]: new ort.Tensor('float32', chunkMask(S, P), [S, P + S]),
        [one(manifest.inputs, 'windowRows')]: new ort.Tensor('int64', BigInt64Array.of(0n), [1]),
      };
      byRole(manifest.inputs, 'pastKey').forEach((name, i) => (f[name] = new ort.Tensor('float32', pastKeys[i], [Hkv, P, D])));
      byRole(manifest.inputs, 'pastValue').forEach((name, i) => (f[name] = new ort.Tensor('float32', pastValues[i], [Hkv, P, D])));
      return f;
    };
    const fetches = ({ manifest: m }: Variant) => [one(m.outputs, 'lastLogits'), ...byRole(m.outputs, 'key'), ...byRole(m.outputs, 'value'), ...byRole(m.outputs, 'columnSums')];
    // Steps alternate between the variants, so a busy machine's drift weighs on each alike.
    const times = variants.map(() => [] as number[]);
    for (let step = 0; step < warmup + steps; step++) {
      for (const [k, variant] of variants.entries()) {
        const t0 = performance.now();
        await variant.session.run(feeds(variant), fetches(variant));
        if (step >= warmup) times[k].push(performance.now() - t0);
      }
    }
    blocks.push({ length: P, runs: warmup + steps });
    variants.forEach((variant, k) => {
      results.push({ label: values.label ? `${values.label} ${variant.label}` : variant.label, layers: numLayers, bits: variant.bits, length: P, chunk: S, steps, medianMs: +median(times[k]).toFixed(2), minMs: +Math.min(...times[k]).toFixed(2), ratioToFirst: +(median(times[0]) / median(times[k])).toFixed(3) });
    });
  }
  if (values.profile) {
    variants.forEach((variant, k) => {
      attribute(variant, blocks, warmup).forEach((profile, b) => Object.assign(results[b * variants.length + k], profile));
    });
  }
  for (const r of results) console.log(JSON.stringify(r));
  for (const variant of variants) await variant.session.release();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
