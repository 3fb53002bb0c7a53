/**
 * `node --import tsx bench/fullStep.ts --model DIR --code DIR_A[,DIR_B...] [--lengths 100,4096,8192]
 *   [--rounds 8] [--steps 8] [--orders both|listed] [--packed-weights DIR]`:
 * whole decode steps (`runtime.decodeStep`: the decoder run, then the cache's append of the new
 * K/V and column sums) of each copy of `sidecar/` listed (e.g. an older commit extracted with
 * `git archive HEAD~1 sidecar | tar -x -C /tmp/old`, with a `node_modules` link beside it), all
 * loaded in this process. Each copy prefills the same ids to each length, then the copies take
 * turns: `--steps` timed steps each,
 * after which the cache is put back as it was (`KvCache.mark`), `--rounds` times, so a busy
 * machine's drift weighs on each alike. `bench/decodeStep.ts` times the graph alone; this adds what
 * JavaScript does between runs. Prints one JSON line per length: each copy's median step, and the
 * first's median over each one's (`speedupOverFirst`).
 *
 * The order of loading weighs too: two loads of the same code in one process, the second decoded
 * 5.4% faster (24 layers, 100 tokens; 2-6% over several pairs). So by default (`--orders both`) the
 * measurement runs twice, each in its own process, the copies loaded as listed and reversed, and
 * `speedupOverFirst` is the geometric mean of the two (balanced for two copies; with more, reversing
 * evens out the first and the last places only). `--orders listed`: one process, the listed order.
 * `--packed-weights DIR`: each copy that has a `PackedWeightsCache` loads with one there, as the
 * sidecar does with a state folder (its first load writes the entry, untimed).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';
import { median } from './stats.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    code: { type: 'string', default: join(__dirname, '..') },
    lengths: { type: 'string', default: '100,4096,8192' },
    rounds: { type: 'string', default: '8' },
    steps: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    orders: { type: 'string', default: 'both' },
    'packed-weights': { type: 'string' },
  },
});
if (!values.model) throw new Error('--model DIR is required (a checkpoint, e.g. from tools/model/bench_model.py make)');

/** The slice of a sidecar copy's API this bench drives (older copies have it too). */
interface Cache {
  mark(): () => void;
}
interface Runtime {
  createCache(): Cache;
  decoder: { embed(ids: number[]): Float32Array };
  prefill(cache: Cache, embeds: Float32Array, positions: Int32Array, modality: Int32Array): Promise<unknown>;
  decodeStep(cache: Cache, token: number, position: number): Promise<Float32Array>;
  release(): Promise<void>;
}


async function load(root: string): Promise<{ runtime: Runtime; text: number }> {
  const src = join(resolve(root), 'sidecar/src');
  const { OnnxModelRuntime } = (await import(join(src, 'runtime/onnxModelRuntime.ts'))) as { OnnxModelRuntime: { load(dir: string, options: { threads: number; packedWeights?: unknown }): Promise<Runtime> } };
  const { TEXT } = (await import(join(src, 'kv/index.ts'))) as { TEXT: number };
  const dir = values['packed-weights'];
  const cacheModule = join(src, 'runtime/packedWeights.ts');
  const packedWeights = dir && existsSync(cacheModule) ? new ((await import(cacheModule)) as { PackedWeightsCache: new (dir: string, budgetBytes: number) => unknown }).PackedWeightsCache(resolve(dir), Number.MAX_SAFE_INTEGER) : undefined;
  return { runtime: await OnnxModelRuntime.load(String(values.model), { threads: Number(values.threads), packedWeights }), text: TEXT };
}

interface LengthResult {
  length: number;
  rounds: number;
  steps: number;
  medianMs: Record<string, number>;
  speedupOverFirst: number[];
}

/** This bench in a child process with the copies loaded in `codes`' order; its result lines. */
function runOrder(codes: string[]): LengthResult[] {
  const args = ['model', 'lengths', 'rounds', 'steps', 'threads', 'packed-weights'].flatMap((name) => (values[name as keyof typeof values] === undefined ? [] : [`--${name}`, String(values[name as keyof typeof values])]));
  const out = execFileSync(process.execPath, [...process.execArgv, __filename, ...args, '--code', codes.join(','), '--orders', 'listed'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').map((line) => JSON.parse(line) as LengthResult);
}

/** Both orders, each in its own process; each copy's speedup the geometric mean of its two. */
function bothOrders(codes: string[]): void {
  const listed = runOrder(codes);
  const reversed = runOrder([...codes].reverse());
  for (const [i, forward] of listed.entries()) {
    const backward = reversed[i];
    const speedup = (r: LengthResult, code: string) => r.medianMs[codes[0]] / r.medianMs[code];
    const result = {
      length: forward.length,
      rounds: forward.rounds,
      steps: forward.steps,
      medianMs: { listed: forward.medianMs, reversed: backward.medianMs },
      speedupOverFirst: codes.map((c) => +Math.sqrt(speedup(forward, c) * speedup(backward, c)).toFixed(3)),
      speedupByOrder: { listed: codes.map((c) => +speedup(forward, c).toFixed(3)), reversed: codes.map((c) => +speedup(backward, c).toFixed(3)) },
    };
    console.log(JSON.stringify(result));
  }
}

async function main(): Promise<void> {
  const codes = String(values.code).split(',');
  if (values.orders === 'both' && codes.length > 1) return bothOrders(codes);
  if (values.orders !== 'both' && values.orders !== 'listed') throw new Error(`--orders: both or listed, not "${values.orders}"`);
  const copies = [];
  for (const code of codes) copies.push(await load(code));
  const [rounds, steps] = [Number(values.rounds), Number(values.steps)];
  for (const P of String(values.lengths).split(',').map(Number)) {
    // Any in-vocabulary ids: a step's cost does not depend on which.
    const ids = Array.from({ length: P }, (_, i) => 100 + ((i * 7919) % 20000));
    const caches: Cache[] = [];
    for (const { runtime, text } of copies) {
      const cache = runtime.createCache();
      await runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from({ length: P }, (_, i) => i), new Int32Array(P).fill(text));
      await runtime.decodeStep(cache, 1000, P); // untimed: the first step's allocations
      caches.push(cache);
    }
    const times = copies.map(() => [] as number[]);
    for (let round = 0; round < rounds; round++) {
      for (const [k, { runtime }] of copies.entries()) {
        const undo = caches[k].mark();
        for (let s = 1; s <= steps; s++) {
          const t0 = performance.now();
          await runtime.decodeStep(caches[k], 1000 + s, P + s);
          times[k].push(performance.now() - t0);
        }
        undo();
      }
    }
    const medians = times.map(median);
    console.log(JSON.stringify({ length: P, rounds, steps, medianMs: Object.fromEntries(codes.map((c, k) => [c, +medians[k].toFixed(2)])), speedupOverFirst: medians.map((m) => +(medians[0] / m).toFixed(3)) }));
  }
  for (const { runtime } of copies) await runtime.release();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
