/**
 * `node --import tsx bench/fullStep.ts --model DIR --code DIR_A[,DIR_B...] [--lengths 100,4096,8192]
 *   [--rounds 8] [--steps 8]`:
 * whole decode steps (`runtime.decodeStep`: the decoder run, then the cache's append of the new
 * K/V and column sums) of each copy of `sidecar/` listed (e.g. an older commit extracted with
 * `git archive HEAD~1 sidecar | tar -x -C /tmp/old`), all loaded in this process. Each copy
 * prefills the same ids to each length, then the copies take turns: `--steps` timed steps each,
 * after which the cache is put back as it was (`KvCache.mark`), `--rounds` times, so a busy
 * machine's drift weighs on each alike. `bench/decodeStep.ts` times the graph alone; this adds what
 * JavaScript does between runs. Prints one JSON line per length: each copy's median step, and the
 * first's median over each one's (`speedupOverFirst`).
 */
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
  const { OnnxModelRuntime } = (await import(join(src, 'runtime/onnxModelRuntime.ts'))) as { OnnxModelRuntime: { load(dir: string, options: { threads: number }): Promise<Runtime> } };
  const { TEXT } = (await import(join(src, 'kv/index.ts'))) as { TEXT: number };
  return { runtime: await OnnxModelRuntime.load(String(values.model), { threads: Number(values.threads) }), text: TEXT };
}

async function main(): Promise<void> {
  const codes = String(values.code).split(',');
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
