/**
 * Memory that is really freed and really counted: a compressed cache's storage shrinks with it,
 * the decoder reads the cache in place (no mirror of the past), every figure is the allocated
 * bytes, and the global budget holds during turns, the running session's cache included.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KvCache, planCompression, TEXT } from '../../sidecar/src/kv/index.js';
import { Engine } from '../../sidecar/src/engine/engine.js';
import { SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { TextDecoder, type PastLayer } from '../../sidecar/src/runtime/textDecoder.js';
import { Conversation, FeatureCache, MemoryImageStore } from '../../sidecar/src/session/conversation.js';
import { tinyModel } from './harness.js';

const quiet = { log: () => undefined };
const never = () => false;

/** Bytes of the distinct buffers behind typed arrays (views of one buffer count once). */
function bufferBytes(arrays: ArrayBufferView[]): number {
  return [...new Set(arrays.map((a) => a.buffer))].reduce((sum, b) => sum + b.byteLength, 0);
}

/** Every buffer the cache's layers hold, measured on the typed arrays themselves. */
function heldBytes(cache: KvCache): number {
  return bufferBytes(cache.layers.flatMap((l) => [l.keys, l.values, l.positions, l.modality, l.scores]));
}

/** Calls `probe` with the past of every decoder run (a prefill chunk, a decode step), just before the run. */
function watchForward(probe: (past: PastLayer[]) => void): () => void {
  const prototype = TextDecoder.prototype;
  const original = Object.getOwnPropertyDescriptor(prototype, 'forward')!;
  const forward = original.value as TextDecoder['forward'];
  Object.defineProperty(prototype, 'forward', {
    ...original,
    value: function (this: TextDecoder, ...args: Parameters<TextDecoder['forward']>) {
      probe(args[2]);
      return forward.apply(this, args);
    },
  });
  return () => Object.defineProperty(prototype, 'forward', original);
}

describe('KV memory', () => {
  // The tiny checkpoint's context is 512 positions: a copy of it with a 4096-position context
  // holds a long turn (its RoPE is computed for any position).
  let longModel: string;
  let runtime: OnnxModelRuntime;
  before(async () => {
    longModel = mkdtempSync(join(tmpdir(), 'lookm-long-'));
    cpSync(tinyModel, longModel, { recursive: true });
    const config = JSON.parse(readFileSync(join(longModel, 'config.json'), 'utf8')) as { text_config: { max_position_embeddings: number } };
    config.text_config.max_position_embeddings = 4096;
    writeFileSync(join(longModel, 'config.json'), JSON.stringify(config));
    runtime = await OnnxModelRuntime.load(longModel, { threads: 1 });
  });
  after(async () => {
    await runtime.release();
    rmSync(longModel, { recursive: true, force: true });
  });

  const longText = (words: number) => Array.from({ length: words }, (_, i) => `w${i % 97}`).join(' ');

  it('a long turn compressed to 20% holds at most a quarter of the full cache, and reports what it holds', async () => {
    const c = new Conversation('long', SessionSettings.parse({ policy: 'text_prior_pivot_merge', budget: { hhRatio: 0.1, recentRatio: 0.1 }, maxNewTokens: 8 }), new MemoryImageStore());
    const out = await c.turn(runtime, new FeatureCache(), { text: longText(1400), images: [], files: [] }, () => undefined, never);
    assert.ok(out.stats.tokensSeen > 2500, `a long turn (${out.stats.tokensSeen} tokens)`);
    assert.ok(out.stats.kvBytes <= 0.25 * out.stats.fullKvBytes, `holds ${out.stats.kvBytes} of ${out.stats.fullKvBytes} full-cache bytes`);
    assert.equal(c.kvBytes, out.stats.kvBytes, 'session stats report the same allocated bytes');

    // The same on the cache itself, its buffers measured rather than its own accounting believed.
    const cache = runtime.createCache();
    const ids = runtime.processor.encodeText(longText(1400));
    await runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), new Int32Array(ids.length).fill(TEXT));
    const full = heldBytes(cache);
    for (const [i, layer] of cache.layers.entries()) {
      const plan = await planCompression(layer, { policy: 'text_prior_pivot_merge', budget: { hhRatio: 0.1, recentRatio: 0.1 }, numQueryHeads: runtime.config.text.numHeads });
      cache.compact(i, plan!);
    }
    for (let step = 0; step < 8; step++) await runtime.decodeStep(cache, 5, cache.tokensSeen);
    assert.equal(heldBytes(cache), cache.allocatedBytes, 'allocatedBytes is what the buffers hold');
    assert.ok(heldBytes(cache) <= 0.25 * full, `after compression the buffers hold ${heldBytes(cache)} bytes of the full cache's ${full}`);
    assert.ok(cache.allocatedBytes <= 0.25 * cache.fullBytes);
  });

  it('feeds the decoder the cache itself: no mirror of the past beside it, during or between steps', async () => {
    const cache = runtime.createCache();
    const ids = runtime.processor.encodeText(longText(300));
    let runs = 0;
    const stop = watchForward((past) => {
      if (past[0].length === 0) return;
      runs++;
      past.forEach((p, i) => {
        assert.equal(p.keys.buffer, cache.layers[i].keys.buffer, `layer ${i}: the past keys are the cache's storage`);
        assert.equal(p.values.buffer, cache.layers[i].values.buffer, `layer ${i}: the past values are the cache's storage`);
      });
      assert.ok(bufferBytes(past.flatMap((p) => [p.keys, p.values])) <= cache.allocatedBytes, 'the past is within the cache counted');
    });
    try {
      await runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), new Int32Array(ids.length).fill(TEXT), { chunk: 128 });
      for (let step = 0; step < 4; step++) await runtime.decodeStep(cache, 5, cache.tokensSeen);
    } finally {
      stop();
    }
    assert.ok(runs >= 4, `${runs} runs on a past`);
    assert.equal(heldBytes(cache), cache.allocatedBytes, 'between steps the cache holds its storage and nothing else');
  });

  it('20 sessions under a global budget never hold more allocated KV than the budget, sampled during turns', async () => {
    const engine = new Engine({ threads: 1 }, quiet);
    try {
      await engine.loadModel({ path: longModel });
      const settings = SessionSettings.parse({ policy: 'text_prior_pivot_merge', budget: { hhRatio: 0.1, recentRatio: 0.1 }, maxNewTokens: 4 });
      const prompt = (i: number) => `${i}: ${longText(160)}`;
      // One session alone: what it holds after its turn, and at its peak (its prompt's full cache).
      const probe = engine.createSession({ settings }).sessionId;
      let peak = 0;
      const stopProbe = watchForward(() => (peak = Math.max(peak, engine.sessionStats({ sessionId: probe }).kvBytes)));
      try {
        await engine.chat({ sessionId: probe, text: prompt(0), images: [], files: [] });
      } finally {
        stopProbe();
      }
      const after = engine.sessionStats({ sessionId: probe }).kvBytes;
      assert.ok(peak > 2 * after, `a turn's peak (${peak}) is well above what it keeps (${after})`);
      engine.deleteSession({ sessionId: probe });
      // Room for about four compressed sessions: a turn's peak does not fit beside them.
      const budget = Math.round(4.5 * after);
      engine.setKvBudget({ kvBudgetBytes: budget });

      const ids = Array.from({ length: 20 }, () => engine.createSession({ settings }).sessionId);
      let running = '';
      let samples = 0;
      const violations: string[] = [];
      const stop = watchForward((past) => {
        samples++;
        const total = engine.stats().kvBytes;
        const own = engine.sessionStats({ sessionId: running }).kvBytes;
        const pastBytes = bufferBytes(past.flatMap((p) => [p.keys, p.values]));
        if (own < pastBytes) violations.push(`the running session reports ${own} bytes but its past alone holds ${pastBytes}`);
        if (total > Math.max(budget, own)) violations.push(`resident ${total} > budget ${budget} (running session: ${own})`);
      });
      try {
        for (const round of [0, 1]) {
          for (const [i, sessionId] of ids.entries()) {
            running = sessionId;
            await engine.chat({ sessionId, text: round === 0 ? prompt(i + 1) : 'And then?', images: [], files: [] });
            const total = engine.stats().kvBytes;
            if (total > budget) violations.push(`between turns: resident ${total} > budget ${budget}`);
          }
        }
      } finally {
        stop();
      }
      assert.ok(samples > 40, `${samples} samples during turns`);
      assert.deepEqual(violations.slice(0, 5), []);
      assert.ok(engine.stats().evictions >= 16, `${engine.stats().evictions} evictions`);
    } finally {
      await engine.close();
    }
  });
});
