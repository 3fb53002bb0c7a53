/**
 * `Conversation.turn` in process on the tiny checkpoint: a rebuilt cache (after an eviction or a
 * restart) equals the live one under every policy and mode, image indices survive a rebuild, the
 * context length is enforced before any work, and a turn cancelled before its first token leaves
 * nothing behind.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TEXT } from '../../sidecar/src/kv/index.js';
import { SidecarError } from '../../sidecar/src/protocol/errors.js';
import { ErrorCode, POLICY_NAMES, SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache, MemoryImageStore, type PersistedConversation, type TurnInput } from '../../sidecar/src/session/conversation.js';
import { root, tinyModel } from './harness.js';

const image = (name: string) => new Uint8Array(readFileSync(join(root, 'test/fixtures/images', name)));
const red = image('red-square.png');
const blue = image('blue-circle.png');
const say = (text: string, images: Uint8Array[] = []): TurnInput => ({ text, images, files: [] });

/** Three turns with three images (the third a repeat of the second), then the turn under test. */
const SCRIPT = [say('Describe both.', [red, blue]), say('Which one is blue?'), say('Compare it with this one.', [blue])];
const LAST = say('And now, tell me more?');

const never = () => false;
const cancelledError = (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.RequestCancelled;
const tooLongError = (pattern: RegExp) => (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.ContextTooLong && pattern.test(e.message);

describe('conversation turns', () => {
  let runtime: OnnxModelRuntime;
  before(async () => {
    runtime = await OnnxModelRuntime.load(tinyModel, { threads: 1 });
  });
  after(async () => runtime.release());

  const settings = (policy: (typeof POLICY_NAMES)[number], mode: 'improved' | 'reference' = 'improved', maxNewTokens = 12) => SessionSettings.parse({ policy, mode, maxNewTokens });

  /** A turn's answer as token ids, with everything the cache shows after it. */
  async function answer(c: Conversation, features: FeatureCache, input: TurnInput, isCancelled = never) {
    const ids: number[] = [];
    const out = await c.turn(runtime, features, input, (_text, id) => ids.push(id), isCancelled);
    return { ids, text: out.text, stopReason: out.stopReason, keptSlots: out.stats.keptSlots, kvBytes: out.stats.kvBytes, tokensSeen: out.stats.tokensSeen, rebuilt: out.stats.rebuilt, map: c.cacheMap() };
  }

  async function converse(c: Conversation, features: FeatureCache, turns = SCRIPT) {
    for (const input of turns) await answer(c, features, input);
  }

  /** The persisted form as a restarted sidecar reads it back. */
  const reread = (c: Conversation): PersistedConversation => JSON.parse(JSON.stringify(c.toJSON())) as PersistedConversation;

  it('a cache rebuilt after an eviction or a restart answers and keeps exactly like the live one, under every policy and mode', async () => {
    for (const mode of ['improved', 'reference'] as const) {
      for (const policy of POLICY_NAMES) {
        const images = new MemoryImageStore();
        const features = new FeatureCache();
        const live = new Conversation('live', settings(policy, mode), images);
        const evicted = new Conversation('evicted', settings(policy, mode), images);
        await converse(live, features);
        await converse(evicted, features);
        const restarted = Conversation.restore(reread(live), images);
        evicted.evict();
        const expected = await answer(live, features, LAST);
        const afterEviction = await answer(evicted, features, LAST);
        const afterRestart = await answer(restarted, new FeatureCache(), LAST);
        for (const [how, got] of [['eviction', afterEviction], ['restart', afterRestart]] as const) {
          const what = `${policy} (${mode}) after ${how}`;
          assert.equal(got.rebuilt, true, what);
          assert.deepEqual(got.ids, expected.ids, `${what}: the answer`);
          assert.deepEqual([got.tokensSeen, got.keptSlots, got.kvBytes], [expected.tokensSeen, expected.keptSlots, expected.kvBytes], `${what}: kept slots and KV bytes`);
          assert.deepEqual(got.map, expected.map, `${what}: the same positions kept per head, the same merged patches`);
        }
      }
    }
  });

  it('a turn that started over (the template rewrote earlier turns) is rebuilt as the one turn it was', async () => {
    const images = new MemoryImageStore();
    const features = new FeatureCache();
    const start = new Conversation('start', settings('text_prior_pivot_merge'), images);
    await converse(start, features, SCRIPT.slice(0, 2));
    // A cached text the prompt does not extend: the next turn prefills the whole prompt afresh.
    const rewritten = { ...reread(start), fedText: '\u0000' };
    const live = Conversation.restore(rewritten, images);
    const evicted = Conversation.restore(rewritten, images);
    await answer(live, features, SCRIPT[2]);
    assert.equal(live.toJSON().segments.length, 2, 'the whole prompt was fed as one segment, then the answer');
    await answer(evicted, features, SCRIPT[2]);
    evicted.evict();
    const expected = await answer(live, features, LAST);
    const got = await answer(evicted, features, LAST);
    assert.deepEqual([got.ids, got.keptSlots, got.map], [expected.ids, expected.keptSlots, expected.map]);
  });

  it('images keep their indices (image k of the conversation) across an eviction and a restart', async () => {
    const images = new MemoryImageStore();
    const features = new FeatureCache();
    const c = new Conversation('images', settings('text_prior_pivot_merge'), images);
    await converse(c, features);
    const indices = () => c.cacheMap().images.map((i) => i.index);
    assert.deepEqual(indices(), [0, 1, 2]);
    c.evict();
    await answer(c, features, say('Still the same images?'));
    assert.deepEqual(indices(), [0, 1, 2], 'the rebuilt cache numbers its images from the start again');
    const restarted = Conversation.restore(reread(c), images);
    await answer(restarted, features, say('And the blue one?', [blue]));
    assert.deepEqual(restarted.cacheMap().images.map((i) => i.index), [0, 1, 2, 3]);
  });

  describe('context length', () => {
    const context = () => runtime.config.text.maxPositionEmbeddings;

    it('is read from config.json', () => {
      assert.equal(context(), 512);
    });

    it('refuses a message over the context before any work, says how much fits, and changes nothing', async () => {
      const c = new Conversation('long', settings('text_prior_pivot_merge', 'improved', 4), new MemoryImageStore());
      const features = new FeatureCache();
      await answer(c, features, say('Hello.', [red]));
      const held = c.tokensSeen;
      const before = JSON.stringify(c.toJSON());
      const kv = c.kvBytes;
      let encoded = 0;
      const vision = runtime.vision!;
      const encode = vision.encode.bind(vision);
      vision.encode = (...args) => (encoded++, encode(...args));
      try {
        const words = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
        await assert.rejects(answer(c, features, say(words, [blue])), tooLongError(new RegExp(`has \\d+ tokens with its chat markup and images, but the conversation already holds ${held} of the model's 512-token context, so ${511 - held} fit: start a new conversation`)));
      } finally {
        vision.encode = encode;
      }
      assert.equal(encoded, 0, 'no image was encoded for a turn that cannot fit');
      assert.equal(JSON.stringify(c.toJSON()), before, 'transcript, segments and turns are as they were');
      assert.deepEqual([c.cached, c.kvBytes], [true, kv], 'the cache is as it was');
      const next = await answer(c, features, say('Short, then.'));
      assert.equal(next.rebuilt, false, 'the next turn goes on from the resident cache');
    });

    it('refuses a huge text from its length alone, without tokenizing it', async () => {
      const c = new Conversation('huge', settings('text_prior_pivot_merge'), new MemoryImageStore());
      let tokenized = 0;
      const encode = runtime.processor.encode.bind(runtime.processor);
      runtime.processor.encode = (...args) => (tokenized++, encode(...args));
      try {
        for (const chars of [1_000_000, 12_000]) {
          await assert.rejects(answer(c, new FeatureCache(), say('a'.repeat(chars))), tooLongError(/characters with its chat markup, at least \d+ tokens, but the model's context is 512 tokens, so 511 fit/));
        }
      } finally {
        runtime.processor.encode = encode;
      }
      assert.equal(tokenized, 0);
      assert.equal(c.turns.length, 0);
    });

    it('ends the answer at the context end (stop reason "length")', async () => {
      const c = new Conversation('end', settings('full', 'improved', 4096), new MemoryImageStore());
      const word = runtime.processor.encode(' word', false)[0];
      const out = await c.turn(runtime, new FeatureCache(), { ...say('Count.'), forcedTokens: new Array<number>(600).fill(word) }, () => undefined, never);
      assert.equal(out.stopReason, 'length');
      assert.equal(out.stats.tokensSeen, 512, 'every position of the context is used, none past it');
      assert.equal(out.stats.generatedTokens, 512 - out.stats.newTokens);
      await assert.rejects(answer(c, new FeatureCache(), say('More?')), tooLongError(/start a new conversation/));
    });
  });

  describe('cancellation', () => {
    it('runtime.prefill asks before every chunk and stops', async () => {
      const cache = runtime.createCache();
      const ids = runtime.processor.encode('one two three four five six seven eight nine ten', false);
      let asked = 0;
      await assert.rejects(
        runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), new Int32Array(ids.length).fill(TEXT), { chunk: 4, isCancelled: () => ++asked > 2 }),
        cancelledError,
      );
      assert.equal(asked, 3);
      assert.equal(cache.length, 8, 'two chunks ran');
    });

    /**
     * Cancels at the n-th question the turn asks, for every n that falls before its first token:
     * the turn throws RequestCancelled, and the conversation (transcript, segments, cache view,
     * and the cache as the next turn finds it) is as if the turn had never started.
     */
    async function cancelEverywhereBeforeTheFirstToken(evictFirst: boolean) {
      const images = new MemoryImageStore();
      const features = new FeatureCache();
      const [control, probe, c] = ['control', 'probe', 'cancelled'].map((id) => new Conversation(id, settings('text_prior_pivot_merge'), images));
      for (const conversation of [control, probe, c]) await converse(conversation, features);
      if (evictFirst) [probe, c].forEach((conversation) => conversation.evict());
      const input = say('Look again.', [red]);
      // How many times the turn asks before its first token streams.
      let asked = 0;
      let beforeFirstToken = 0;
      await probe.turn(runtime, features, input, () => (beforeFirstToken ||= asked), () => (asked++, false));
      assert.ok(beforeFirstToken >= 3, `asked before, during and after the prefill: ${beforeFirstToken} times`);
      const persisted = JSON.stringify(c.toJSON());
      const view = c.cacheMap();
      const kv = c.kvBytes;
      for (let n = 1; n <= beforeFirstToken; n++) {
        let count = 0;
        await assert.rejects(answer(c, features, input, () => ++count >= n), cancelledError, `cancelled at question ${n}`);
        assert.equal(JSON.stringify(c.toJSON()), persisted, `cancelled at question ${n}: transcript, segments and turns unchanged`);
        if (c.cached) assert.deepEqual([c.kvBytes, c.cacheMap()], [kv, view], `cancelled at question ${n}: the cache was put back as it was`);
      }
      const expected = await answer(control, features, LAST);
      const got = await answer(c, features, LAST);
      assert.deepEqual([got.ids, got.keptSlots, got.map], [expected.ids, expected.keptSlots, expected.map], 'the next turn answers as if no turn had been cancelled');
    }

    it('a turn cancelled before its first token on a resident cache records nothing', () => cancelEverywhereBeforeTheFirstToken(false));
    it('a turn cancelled while rebuilding an evicted cache records nothing', () => cancelEverywhereBeforeTheFirstToken(true));

    it('a turn cancelled during the prefill puts the resident cache back without a rebuild', async () => {
      const c = new Conversation('undo', settings('text_prior_pivot_merge'), new MemoryImageStore());
      const features = new FeatureCache();
      await converse(c, features, SCRIPT.slice(0, 1));
      let asked = 0;
      await assert.rejects(answer(c, features, say('Which one is blue?'), () => ++asked >= 2), cancelledError);
      assert.equal(c.cached, true);
      const next = await answer(c, features, say('Which one is blue?'));
      assert.equal(next.rebuilt, false);
    });

    it('a turn cancelled while decoding keeps its partial answer', async () => {
      const c = new Conversation('partial', settings('text_prior_pivot_merge', 'improved', 50), new MemoryImageStore());
      let streamed = 0;
      const out = await c.turn(runtime, new FeatureCache(), say('Tell a story.', [red]), () => streamed++, () => streamed >= 3);
      assert.equal(out.stopReason, 'cancelled');
      assert.equal(out.stats.generatedTokens, 3);
      assert.deepEqual([c.turns.length, c.messages.length], [1, 2]);
    });
  });
});
