/**
 * `node --expose-gc --import tsx bench/memory.ts [--tokens 1900] [--model sidecar/model]`: one long
 * turn's KV memory and decode speed. A prompt of `--tokens` tokens is prefilled, compressed to 20%
 * (LOOK-M, improved mode) and decoded on; the figures are the bytes the cache's buffers really
 * hold, what the cache reports, the full cache's bytes, the process RSS, and the decode step time
 * on the full cache of that length (the decoder reads the cache in place). Then the cache's share
 * of a decode step at a Qwen2-0.5B-shaped 8K cache (24 layers, 2 KV heads, head_dim 64): one
 * token's append, which moves every head's rows apart in place.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KvCache, planCompression, TEXT } from '../sidecar/src/kv/index.js';
import { OnnxModelRuntime } from '../sidecar/src/runtime/onnxModelRuntime.js';
import { median } from './stats.js';

const { values } = parseArgs({ options: { tokens: { type: 'string', default: '1900' }, model: { type: 'string', default: join(__dirname, '../sidecar/model') }, steps: { type: 'string', default: '32' } } });
const tokens = Number(values.tokens);
const steps = Number(values.steps);

const held = (cache: KvCache) => [...new Set(cache.layers.flatMap((l) => [l.keys, l.values, l.positions, l.modality, l.scores].map((a) => a.buffer)))].reduce((n, b) => n + b.byteLength, 0);
const rss = () => (globalThis.gc?.(), process.memoryUsage().rss);

async function longTurn(runtime: OnnxModelRuntime) {
  const ids = Array.from({ length: tokens }, (_, i) => 4 + ((i * 7) % 300));
  const cache = runtime.createCache();
  const rssBefore = rss();
  await runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), new Int32Array(ids.length).fill(TEXT));
  const full = { held: held(cache), rss: rss() - rssBefore };
  const decodeMs: number[] = [];
  for (let step = 0; step < steps; step++) {
    const started = performance.now();
    await runtime.decodeStep(cache, 5, cache.tokensSeen);
    decodeMs.push(performance.now() - started);
  }
  for (const [i, layer] of cache.layers.entries()) {
    const plan = await planCompression(layer, { policy: 'text_prior_pivot_merge', budget: { hhRatio: 0.1, recentRatio: 0.1 }, numQueryHeads: runtime.config.text.numHeads, matcher: runtime.matcher });
    if (plan) cache.compact(i, plan);
  }
  for (let step = 0; step < 8; step++) await runtime.decodeStep(cache, 5, cache.tokensSeen);
  return {
    tokensSeen: cache.tokensSeen,
    keptPerHead: cache.length,
    fullCacheHeldBytes: full.held,
    compressedHeldBytes: held(cache),
    reportedBytes: cache.allocatedBytes,
    fullBytes: cache.fullBytes,
    heldOverFull: held(cache) / cache.fullBytes,
    rssGrowthFullBytes: full.rss,
    rssGrowthCompressedBytes: rss() - rssBefore,
    decodeMsPerTokenFull: median(decodeMs),
  };
}

function appendAtScale() {
  // Column sums come one row per KV head (the decoder graph sums each group's query heads).
  const [layers, H, D, L] = [24, 2, 64, 8192];
  const cache = new KvCache(layers, H, D);
  cache.reserve(L);
  const chunk = 512;
  const rows = (n: number) => cache.layers.map(() => new Float32Array(H * n * D));
  for (let start = 0; start < L; start += chunk) cache.append({ keys: rows(chunk), values: rows(chunk), colsums: cache.layers.map(() => new Float32Array(H * (start + chunk))) }, Int32Array.from({ length: chunk }, (_, i) => start + i), new Int32Array(chunk).fill(TEXT), H);
  const ms: number[] = [];
  for (let step = 0; step < 16; step++) {
    const started = performance.now();
    cache.append({ keys: rows(1), values: rows(1), colsums: cache.layers.map(() => new Float32Array(H * (cache.length + 1))) }, Int32Array.of(cache.tokensSeen), Int32Array.of(TEXT), H);
    ms.push(performance.now() - started);
  }
  return { shape: `${layers} layers x ${H} KV heads x ${D}, ${L} tokens`, appendMsPerStep: median(ms), allocatedBytes: cache.allocatedBytes, keptBytes: cache.keptBytes };
}

async function main(): Promise<void> {
  const runtime = await OnnxModelRuntime.load(values.model, { threads: 2 });
  const turn = await longTurn(runtime);
  await runtime.release();
  process.stdout.write(`${JSON.stringify({ turn, atScale: appendAtScale() }, null, 2)}\n`);
}

void main();
