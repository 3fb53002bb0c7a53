/**
 * `node --expose-gc --import tsx bench/load.ts [--model sidecar/model] [--threads 2] [--prompt 64 --new 8]`:
 * load time and memory of one checkpoint, in its own process (the peak is the kernel's high-water
 * mark, so one model per process). Prints one JSON line: seconds to ready and per load step, RSS
 * at each step, the peak RSS of the load (`maxRSS`), RSS after load (after a GC), the peak during a
 * short turn (prefill `--prompt` tokens, decode `--new`), and the bytes the peak is made of:
 * the safetensors files, the decoder's weights as float32, the embedding table as float32.
 * `--phases` attributes the decoder's load instead (see `phases`). `--buffer`: the weights handed to
 * onnxruntime in one buffer even where it could read them from the checkpoint's files itself.
 * Generate bigger checkpoints with tools/model/bench_model.py (see bench/results/load.txt).
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { TEXT } from '../sidecar/src/kv/index.js';
import { Checkpoint } from '../sidecar/src/model/checkpoint.js';
import { WeightPool } from '../sidecar/src/model/graph/weightPool.js';
import { buildDecoderGraph } from '../sidecar/src/model/text/decoderGraph.js';
import { OnnxModelRuntime } from '../sidecar/src/runtime/onnxModelRuntime.js';
import { argmax } from '../sidecar/src/runtime/sampling.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: join(__dirname, '../sidecar/model') },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '64' },
    new: { type: 'string', default: '8' },
    phases: { type: 'boolean', default: false },
    // Weights handed over in a buffer even where onnxruntime could read them from the files (the load before issue 20's change).
    buffer: { type: 'boolean', default: false },
  },
});
const MB = 2 ** 20;
const mb = (bytes: number) => Math.round(bytes / MB);
/** The kernel's high-water mark of this process's RSS, in bytes (resourceUsage reports KiB). */
const maxRss = () => process.resourceUsage().maxRSS * 1024;
/** RSS after a full GC, once V8 has swept the freed ArrayBuffers (that sweep runs after gc() returns). */
async function rssAfterGc(): Promise<number> {
  for (let i = 0; i < 2; i++) {
    globalThis.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return process.memoryUsage().rss;
}

/**
 * `--phases`: the decoder's load alone, step by step, to attribute the peak: reading the weights
 * into the WeightPool buffer, then onnxruntime's session creation on that buffer, then the buffer
 * dropped (onnxruntime keeps its own copy).
 */
async function phases(dir: string): Promise<void> {
  const checkpoint = Checkpoint.open(dir);
  const weights = new WeightPool(checkpoint);
  const graph = buildDecoderGraph(checkpoint.config.text, weights);
  const baseline = await rssAfterGc();
  let started = performance.now();
  let external: { path: string; data: Uint8Array } | null = weights.load();
  const read = { s: (performance.now() - started) / 1000, rssMB: mb(process.memoryUsage().rss), peakMB: mb(maxRss()) };
  started = performance.now();
  const session = await ort.InferenceSession.create(graph.model, { externalData: [external], intraOpNumThreads: Number(values.threads), interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const create = { s: (performance.now() - started) / 1000, rssMB: mb(process.memoryUsage().rss), peakMB: mb(maxRss()) };
  external = null;
  const dropped = { rssMB: mb(await rssAfterGc()) };
  await session.release();
  process.stdout.write(`${JSON.stringify({ model: dir, weightsF32MB: mb(weights.bytes), baselineRssMB: mb(baseline), read, create, bufferDropped: dropped })}\n`);
}

async function main(): Promise<void> {
  const dir = values.model;
  if (values.phases) return phases(dir);
  const fileBytes = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  const baseline = await rssAfterGc();
  const steps: { step: string; s: number; rssMB: number; maxRssMB: number }[] = [];
  const started = performance.now();
  const runtime = await OnnxModelRuntime.load(dir, {
    threads: Number(values.threads),
    weightsFromFiles: !values.buffer,
    onProgress: (step) => steps.push({ step, s: (performance.now() - started) / 1000, rssMB: mb(process.memoryUsage().rss), maxRssMB: mb(maxRss()) }),
  });
  const loadS = (performance.now() - started) / 1000;
  const loadPeak = maxRss();
  const afterLoad = await rssAfterGc();

  const { vocabSize, hiddenSize, numLayers } = runtime.config.text;
  const ids = Array.from({ length: Number(values.prompt) }, (_, i) => 4 + ((i * 7) % 300));
  const cache = runtime.createCache();
  // The turn's own peak: sampled, as the kernel's high-water mark already holds the load's.
  let turnSampled = process.memoryUsage().rss;
  const sampler = setInterval(() => (turnSampled = Math.max(turnSampled, process.memoryUsage().rss)), 5);
  const { logits } = await runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), new Int32Array(ids.length).fill(TEXT));
  let token = argmax(logits);
  for (let step = 0; step < Number(values.new); step++) token = argmax(await runtime.decodeStep(cache, token, ids.length + step));
  clearInterval(sampler);
  turnSampled = Math.max(turnSampled, process.memoryUsage().rss);
  const turnPeak = maxRss();
  const afterTurn = await rssAfterGc();
  await runtime.release();
  const result = {
    model: dir,
    layers: numLayers,
    node: process.version,
    loadS: Number(loadS.toFixed(2)),
    baselineRssMB: mb(baseline),
    loadPeakRssMB: mb(loadPeak),
    rssAfterLoadMB: mb(afterLoad),
    turnPeakSampledRssMB: mb(turnSampled),
    // maxRSS never falls: a turn peak equal to the load peak means the turn stayed below it.
    peakThroughTurnMB: mb(turnPeak),
    rssAfterTurnMB: mb(afterTurn),
    fileMB: mb(fileBytes),
    embeddingTableF32MB: mb(vocabSize * hiddenSize * 4),
    steps,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

void main();
