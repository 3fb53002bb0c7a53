/**
 * `node --expose-gc --import tsx bench/llamacpp/oursSide.ts --model DIR --lengths 100,4096 --steps 8
 *   --threads 2 [--check FILE]`: this project's side of the llama.cpp comparison, in its own process.
 * Prints JSON lines: `ready` when the runtime is loaded (the parent times process start to ready),
 * then per length a real prefill of `promptIds(L)`, `steps` timed greedy decode steps on the full
 * cache, LOOK-M 20% (`text_prior_pivot_merge`, every layer compressed, timed) and `steps` steps on
 * the compressed cache, with the RSS high-water mark of that turn (reset before it); `--check` first
 * writes the next-token log-probabilities after `CHECK_IDS` to FILE (float64) and greedy tokens.
 * `--serve`: after the warm-up, answers the paired decode's commands instead (`measure.ts`'s `serve`).
 * `--packed-weights DIR`: the runtime keeps its packed weights there between loads
 * (`PackedWeightsCache`, what the sidecar does beside its state folder); `--prepare`: load, print
 * `ready` (with the cache's events) and exit, so that the timed loads map an entry.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { observedRows, planCompression, TEXT, type CompressOptions, type KvCache } from '../../sidecar/src/kv/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { PackedWeightsCache, type PackedWeightsEvent } from '../../sidecar/src/runtime/packedWeights.js';
import { argmax } from '../../sidecar/src/runtime/sampling.js';
import { CHECK_IDS, emit, logSoftmax, promptIds, serve, sideOptions } from './measure.js';
import { currentRss, peakRss, resetPeak } from '../processMemory.js';

const { values } = parseArgs({ options: { model: { type: 'string' }, lengths: { type: 'string' }, steps: { type: 'string' }, threads: { type: 'string' }, check: { type: 'string' }, serve: { type: 'boolean' }, 'packed-weights': { type: 'string' }, prepare: { type: 'boolean' } } });
const options = sideOptions(values);
const POLICY = 'text_prior_pivot_merge' as const;
const BUDGET = { hhRatio: 0.1, recentRatio: 0.1 }; // LOOK-M 20%: half heavy hitters, half recent
const GREEDY_STEPS = 8;

/** A full GC, twice, with time for V8 to sweep the freed ArrayBuffers (that runs after gc() returns). */
async function settle(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    globalThis.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

type Runtime = Awaited<ReturnType<typeof OnnxModelRuntime.load>>;
type Prefilled = Awaited<ReturnType<Runtime['prefill']>>;
const positions = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);
const text = (n: number) => new Int32Array(n).fill(TEXT);
const compressOptions = (runtime: Runtime): CompressOptions => ({ policy: POLICY, budget: BUDGET, numQueryHeads: runtime.info.heads, matcher: runtime.matcher });

/** A real prefill of `promptIds(length)`, observing what LOOK-M's policy needs; returns the seconds it took. */
async function prefillPrompt(runtime: Runtime, cache: KvCache, length: number): Promise<{ prefilled: Prefilled; seconds: number }> {
  const ids = promptIds(length);
  const started = performance.now();
  const prefilled = await runtime.prefill(cache, runtime.decoder.embed(ids), positions(length), text(length), { windowRows: observedRows(compressOptions(runtime), length, length) });
  return { prefilled, seconds: (performance.now() - started) / 1000 };
}

/** LOOK-M 20% on every layer of a prefilled cache. */
async function compressAll(runtime: Runtime, cache: KvCache, prefilled: Prefilled): Promise<void> {
  for (const [i, layer] of cache.layers.entries()) {
    const plan = await planCompression(layer, { ...compressOptions(runtime), windowScores: prefilled.windowScores?.[i] });
    if (plan) cache.compact(i, plan);
  }
}

/** One untimed greedy step (its allocations), then `steps` timed ones, from `token` at `position`: ms per timed step, and where they ended. */
async function timedSteps(runtime: Runtime, cache: KvCache, token: number, position: number, steps: number): Promise<{ msPerStep: number; token: number; position: number }> {
  token = argmax(await runtime.decodeStep(cache, token, position++));
  const started = performance.now();
  for (let s = 0; s < steps; s++) token = argmax(await runtime.decodeStep(cache, token, position++));
  return { msPerStep: (performance.now() - started) / steps, token, position };
}

/** The paired decode's commands on one conversation at a time. */
function serveRuntime(runtime: Runtime): Promise<void> {
  let held: { cache: KvCache; prefilled: Prefilled; length: number } | undefined;
  const conversation = () => {
    if (!held) throw new Error('no prefilled conversation: send prefill first');
    return held;
  };
  return serve({
    prefill: async (length) => {
      held?.cache.release();
      const cache = runtime.createCache();
      held = { cache, prefilled: (await prefillPrompt(runtime, cache, length)).prefilled, length };
    },
    decode: async (steps) => {
      const { cache, prefilled, length } = conversation();
      const undo = cache.mark();
      const { msPerStep } = await timedSteps(runtime, cache, argmax(prefilled.logits), length, steps);
      undo();
      return msPerStep;
    },
    compress: async () => {
      const { cache, prefilled } = conversation();
      await compressAll(runtime, cache, prefilled);
    },
    release: async () => {
      held?.cache.release();
      held = undefined;
      await settle();
    },
  });
}

async function main(): Promise<void> {
  const packedEvents: PackedWeightsEvent[] = [];
  const dir = values['packed-weights'];
  const packedWeights = dir ? new PackedWeightsCache(dir, Number.MAX_SAFE_INTEGER, (event) => packedEvents.push(event)) : undefined;
  const runtime = await OnnxModelRuntime.load(options.model, { threads: options.threads, packedWeights });
  emit({ event: 'ready', at: Date.now(), loadPeakRssBytes: peakRss(), rssBytes: currentRss(), packedWeights: packedEvents });
  if (values.prepare) return runtime.release();

  if (options.check) {
    const cache = runtime.createCache();
    const { logits } = await runtime.prefill(cache, runtime.decoder.embed(CHECK_IDS), positions(CHECK_IDS.length), text(CHECK_IDS.length));
    writeFileSync(options.check, new Uint8Array(logSoftmax(logits).buffer));
    const greedy = [argmax(logits)];
    while (greedy.length < GREEDY_STEPS) greedy.push(argmax(await runtime.decodeStep(cache, greedy[greedy.length - 1], CHECK_IDS.length + greedy.length - 1)));
    emit({ event: 'check', greedy });
    cache.release();
  }
  // Warm-up (untimed): onnxruntime's first run of each graph shape allocates.
  const warm = runtime.createCache();
  const warmIds = promptIds(8);
  const warmed = await runtime.prefill(warm, runtime.decoder.embed(warmIds), positions(8), text(8));
  await runtime.decodeStep(warm, argmax(warmed.logits), 8);
  warm.release();
  if (options.serve) {
    await serveRuntime(runtime);
    return runtime.release();
  }

  for (const L of options.lengths) {
    await settle();
    const rssBefore = currentRss();
    const reset = resetPeak();
    const cache = runtime.createCache();
    const { prefilled, seconds: prefillS } = await prefillPrompt(runtime, cache, L);
    let token = argmax(prefilled.logits);
    let position = L;
    const decode = async (): Promise<number> => {
      const ran = await timedSteps(runtime, cache, token, position, options.steps);
      ({ token, position } = ran);
      return 1000 / ran.msPerStep;
    };
    const fullDecode = await decode();
    const fullKvBytes = cache.allocatedBytes;
    const started = performance.now();
    await compressAll(runtime, cache, prefilled);
    const compressS = (performance.now() - started) / 1000;
    const lookmKvBytes = cache.allocatedBytes;
    const lookmDecode = await decode();
    emit({
      event: 'turn',
      length: L,
      prefillTokensPerS: L / prefillS,
      prefillS,
      decodeTokensPerS: fullDecode,
      lookmDecodeTokensPerS: lookmDecode,
      compressS,
      fullKvBytes,
      lookmKvBytes,
      rssBeforeBytes: rssBefore,
      turnPeakRssBytes: reset ? peakRss() : null,
    });
    cache.release();
  }
  await runtime.release();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
