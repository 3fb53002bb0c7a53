/**
 * A turn's KV figures compare like with like: the kept slots' bytes against a full cache's (both
 * slots only), the allocated bytes (spare capacity included) apart. Seen in the chat footer:
 * "KV 63.8 KiB held of 51.0 KiB (125%)" on a short answer, allocated bytes set against full ones.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Engine } from '../../sidecar/src/engine/engine.js';
import type { SessionSettings } from '../../sidecar/src/protocol/index.js';
import { tinyModel } from './harness.js';

const quiet = { log: () => undefined };
const base: Omit<SessionSettings, 'policy'> = { mode: 'improved', budget: { hhRatio: 0.1, recentRatio: 0.1 }, maxNewTokens: 4, temperature: 0, topK: 0, topP: 1, seed: 0 };

describe('KV figures of a turn', () => {
  it('report kept bytes at most the full bytes, and the allocated bytes (headroom included) apart', async () => {
    const engine = new Engine({ threads: 1 }, quiet);
    try {
      await engine.loadModel({ path: tinyModel });
      for (const policy of ['full', 'text_prior_pivot_merge'] as const) {
        const { sessionId } = engine.createSession({ settings: { ...base, policy } });
        const { stats } = await engine.chat({ sessionId, text: 'What is this? A short question.', images: [], files: [] });
        assert.ok(stats.keptKvBytes !== undefined, 'the turn reports its kept bytes');
        assert.ok(stats.keptKvBytes <= stats.fullKvBytes, `${policy}: kept ${stats.keptKvBytes} of full ${stats.fullKvBytes}`);
        if (policy === 'full') assert.equal(stats.keptKvBytes, stats.fullKvBytes, 'the full policy keeps every slot');
        else assert.ok(stats.keptKvBytes < stats.fullKvBytes, 'compression kept fewer slots');
        assert.ok(stats.kvBytes >= stats.keptKvBytes, 'allocated bytes include the kept ones');
        if (policy === 'full') assert.ok(stats.kvBytes > stats.fullKvBytes, 'a short turn\'s headroom makes allocated exceed full: why they are not compared');
        const map = engine.sessionCache({ sessionId });
        assert.deepEqual([map.keptKvBytes, map.fullKvBytes, map.kvBytes], [stats.keptKvBytes, stats.fullKvBytes, stats.kvBytes]);
      }
    } finally {
      await engine.close();
    }
  });
});
