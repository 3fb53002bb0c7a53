/** The policies' own parameters (sinks, SnapKV's window) as session settings: bounds, and that they reach the plan. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { compressOptions } from '../../sidecar/src/session/compression.js';
import { Conversation, FeatureCache } from '../../sidecar/src/session/conversation.js';

describe('policy parameters in session settings', () => {
  it('are optional, bounded integers', () => {
    const defaults = SessionSettings.parse({});
    assert.equal(defaults.sinks, undefined);
    assert.equal(defaults.snapkvWindow, undefined);
    assert.deepEqual(SessionSettings.parse({ policy: 'pivot_merge', sinks: 0, snapkvWindow: 1 }).sinks, 0);
    for (const bad of [{ sinks: -1 }, { sinks: 1.5 }, { sinks: 5000 }, { snapkvWindow: 0 }, { snapkvWindow: 10_000 }, { snapkvWindow: '64' }]) {
      assert.equal(SessionSettings.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });

  it("are refused in reference mode, which runs the official code's fixed parameters (except the window baseline's sinks)", () => {
    const snapkv = SessionSettings.safeParse({ mode: 'reference', policy: 'snapkv', snapkvWindow: 32 });
    assert.equal(snapkv.success, false);
    assert.match(snapkv.error?.issues[0].message, /snapkvWindow is an improved-mode setting/);
    assert.deepEqual(snapkv.error?.issues[0].path, ['snapkvWindow']);
    const sinks = SessionSettings.safeParse({ mode: 'reference', policy: 'pivot_merge', sinks: 2 });
    assert.equal(sinks.success, false);
    assert.match(sinks.error?.issues[0].message, /reference protects 4 sinks/);
    assert.equal(SessionSettings.parse({ mode: 'reference', policy: 'window', sinks: 2 }).sinks, 2);
  });

  describe('in a conversation', () => {
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(__dirname, '../fixtures/models/tiny-llava-qwen2'), { threads: 1 });
    });
    after(async () => runtime.release());

    /** Per position of the conversation, whether layer 0 head 0 keeps it after one turn. */
    async function keptAfterTurn(settings: object): Promise<number[]> {
      const conversation = new Conversation('t', SessionSettings.parse({ maxNewTokens: 1, ...settings }));
      const text = Array.from({ length: 120 }, (_, i) => ['red', 'blue', 'circle', 'square', 'seven'][(i * 3) % 5]).join(' ');
      await conversation.turn(runtime, new FeatureCache(), { text, images: [], files: [] }, () => undefined, () => false);
      const map = conversation.cacheMap(4096);
      assert.equal(map.bucket, 1);
      return map.layers[0].heads[0];
    }

    it('reach the options the plan is made with', () => {
      const options = compressOptions(SessionSettings.parse({ policy: 'snapkv', sinks: 3, snapkvWindow: 16, seed: 5 }), runtime);
      assert.deepEqual([options.policy, options.sinks, options.snapkvWindow, options.seed, options.numQueryHeads], ['snapkv', 3, 16, 5, runtime.config.text.numHeads]);
    });

    it('sinks changes what the window policy keeps', async () => {
      const none = await keptAfterTurn({ policy: 'window', sinks: 0 });
      const eight = await keptAfterTurn({ policy: 'window', sinks: 8 });
      assert.deepEqual(none.slice(0, 8), new Array(8).fill(0));
      assert.deepEqual(eight.slice(0, 8), new Array(8).fill(1));
      assert.equal(none.reduce((a, b) => a + b), eight.reduce((a, b) => a + b), 'at the same budget');
    });

    it("snapkvWindow changes what SnapKV keeps (the prefill observes the policy's window)", async () => {
      const one = await keptAfterTurn({ policy: 'snapkv', snapkvWindow: 1, budget: { hhRatio: 0.2, recentRatio: 0.3 } });
      const wide = await keptAfterTurn({ policy: 'snapkv', snapkvWindow: 64, budget: { hhRatio: 0.2, recentRatio: 0.3 } });
      assert.equal(one.reduce((a, b) => a + b), wide.reduce((a, b) => a + b), 'at the same budget');
      assert.notDeepEqual(one, wide);
    });
  });
});
