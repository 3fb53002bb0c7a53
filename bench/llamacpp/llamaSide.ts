/**
 * `node --import tsx bench/llamacpp/llamaSide.ts --model FILE.gguf --lengths 100,4096 --steps 8
 *   --threads 2 --kv f16|f32 [--check FILE]`: llama.cpp's side of the comparison, through
 * node-llama-cpp's prebuilt CPU build (installed in bench/llamacpp/peer/ by `bench/llamacpp.ts`;
 * imported at run time, so nothing else in the project needs it). `--kv f16` is llama.cpp's
 * default (F16 KV cache, flash attention on); `--kv f32` is an F32 KV cache with flash attention
 * off (llama.cpp's CPU flash attention rounds Q/K/V to F16 even on an F32 cache), the exact F32
 * configuration the log-probability check needs. Prints the same JSON lines as `oursSide.ts`
 * (one full-cache turn per length, no LOOK-M), or with `--serve` answers the paired decode's
 * commands (`measure.ts`'s `serve`; `compress` keeps the full cache).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { CHECK_IDS, emit, promptIds, serve, sideOptions } from './measure.js';
import { currentRss, peakRss, resetPeak } from '../processMemory.js';

/** The few node-llama-cpp calls used here (its types are not installed with the project). */
type Item = number | [number, { generateNext: { token?: boolean; probabilities?: boolean; options?: { temperature: number } } }];
interface Sequence {
  controlledEvaluate(input: Item[]): Promise<({ next: { token?: number | null; probabilities?: Map<number, number> } } | undefined)[]>;
  clearHistory(): Promise<void>;
  eraseContextTokenRanges(ranges: { start: number; end: number }[]): Promise<void>;
  readonly nextTokenIndex: number;
}
interface Context {
  getSequence(): Sequence;
  dispose(): Promise<void>;
  readonly flashAttention: boolean;
  readonly contextSize: number;
}
interface Model {
  createContext(options: Record<string, unknown>): Promise<Context>;
  dispose(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama: (options: Record<string, unknown>) => Promise<{ loadModel(options: { modelPath: string }): Promise<Model>; dispose(): Promise<void> }>;
}

export const PEER_DIR = join(__dirname, 'peer');

const { values } = parseArgs({ options: { model: { type: 'string' }, lengths: { type: 'string' }, steps: { type: 'string' }, threads: { type: 'string' }, check: { type: 'string' }, kv: { type: 'string', default: 'f16' }, serve: { type: 'boolean' } } });
const GREEDY_STEPS = 8;
const greedyNext = (token: number): Item => [token, { generateNext: { token: true, options: { temperature: 0 } } }];

async function main(): Promise<void> {
  const options = sideOptions(values);
  if (values.kv !== 'f16' && values.kv !== 'f32') throw new Error(`--kv must be f16 or f32, got ${values.kv}`);
  const f32 = values.kv === 'f32';
  const entry = join(PEER_DIR, 'node_modules/node-llama-cpp/dist/index.js');
  const { getLlama } = (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: options.threads, progressLogs: false });
  const model = await llama.loadModel({ modelPath: options.model });
  const context = await model.createContext({
    contextSize: Math.max(...options.lengths, CHECK_IDS.length) + options.steps + GREEDY_STEPS + 16,
    batchSize: 512,
    threads: { ideal: options.threads, min: options.threads },
    ...(f32 ? { flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } : {}),
  });
  const sequence = context.getSequence();
  emit({ event: 'ready', at: Date.now(), loadPeakRssBytes: peakRss(), rssBytes: currentRss(), flashAttention: context.flashAttention, contextSize: context.contextSize });

  /** Evaluates `ids` after what the sequence holds; returns the greedy next token (and its distribution when asked). */
  const evaluate = async (ids: number[], probabilities = false) => {
    const items: Item[] = ids.map((t, i) => (i === ids.length - 1 ? [t, { generateNext: { token: true, probabilities, options: { temperature: 0 } } }] : t));
    const out = (await sequence.controlledEvaluate(items))[ids.length - 1];
    if (out?.next.token === undefined || out.next.token === null) throw new Error('llama.cpp returned no next token');
    return { token: out.next.token, probabilities: out.next.probabilities };
  };

  if (options.check) {
    const { token, probabilities } = await evaluate(CHECK_IDS, true);
    if (!probabilities) throw new Error('llama.cpp returned no probabilities');
    const logProbs = new Float64Array(probabilities.size).fill(-Infinity);
    for (const [id, p] of probabilities) logProbs[id] = Math.log(p);
    writeFileSync(options.check, new Uint8Array(logProbs.buffer));
    const greedy = [token];
    while (greedy.length < GREEDY_STEPS) greedy.push((await evaluate([greedy[greedy.length - 1]])).token);
    emit({ event: 'check', greedy });
    await sequence.clearHistory();
  }
  await evaluate(promptIds(8)); // warm-up, untimed
  await sequence.clearHistory();
  const decodeSteps = async (token: number, steps: number) => {
    for (let s = 0; s < steps; s++) token = (await sequence.controlledEvaluate([greedyNext(token)]))[0]?.next.token ?? token;
    return token;
  };

  if (options.serve) {
    let prefilled: { token: number; length: number } | undefined;
    await serve({
      prefill: async (length) => {
        await sequence.clearHistory();
        prefilled = { token: (await evaluate(promptIds(length))).token, length };
      },
      decode: async (steps) => {
        if (!prefilled) throw new Error('no prefilled conversation: send prefill first');
        const token = (await evaluate([prefilled.token])).token; // untimed, as ours
        const started = performance.now();
        await decodeSteps(token, steps);
        const msPerStep = (performance.now() - started) / steps;
        await sequence.eraseContextTokenRanges([{ start: prefilled.length, end: sequence.nextTokenIndex }]);
        return msPerStep;
      },
      compress: async () => {},
      release: async () => {
        await sequence.clearHistory();
        prefilled = undefined;
      },
    });
  }

  for (const L of options.serve ? [] : options.lengths) {
    const rssBefore = currentRss();
    const reset = resetPeak();
    let started = performance.now();
    let { token } = await evaluate(promptIds(L));
    const prefillS = (performance.now() - started) / 1000;
    token = (await evaluate([token])).token; // untimed first step
    started = performance.now();
    await decodeSteps(token, options.steps);
    const decodeTokensPerS = options.steps / ((performance.now() - started) / 1000);
    emit({ event: 'turn', length: L, prefillTokensPerS: L / prefillS, prefillS, decodeTokensPerS, rssBeforeBytes: rssBefore, turnPeakRssBytes: reset ? peakRss() : null });
    await sequence.clearHistory();
  }
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
