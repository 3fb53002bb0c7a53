/**
 * The cold tier in conversations with the embedded model (sidecar/model): off, a turn is today's
 * turn (prefill, compress, decode), bit for bit; on, a value asked in turn 3 about turn 1's file
 * is answered at a 10% hot budget where today's cache has lost it; a rebuild from the transcript
 * gives the same answer and cache; the settings and the global cold budget reach the sidecar.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mulberry32, planCompression, type KvCache } from '../../sidecar/src/kv/index.js';
import { Methods, SessionSettings, ErrorCode } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { createSampler } from '../../sidecar/src/runtime/sampling.js';
import { compressOptions, observedWindow } from '../../sidecar/src/session/compression.js';
import { Conversation, FeatureCache, type TurnOutput } from '../../sidecar/src/session/conversation.js';
import { connect, rejectsWith, root, startSidecar } from './harness.js';

const embeddedModel = join(root, 'sidecar/model');
const KEYS = JSON.parse(readFileSync(join(root, 'tools/eval/lookup-keys.json'), 'utf8')) as string[];
/** 10% of the tokens seen, half heavy hitters, half recent (what `lookm.kv.budgetRatio` 0.1 asks for). */
const TEN_PERCENT = { hhRatio: 0.05, recentRatio: 0.05 };

/** A `name = value` file of `lines` lines, the key asked in turn 1, and the key asked in turn 3 with its value. */
function lookupFile(seed: number, lines = 16) {
  const random = mulberry32(seed);
  const keys = [...KEYS].sort(() => random() - 0.5).slice(0, lines).map((key) => ({ key, value: String(Math.floor(random() * 10000)) }));
  const first = keys[Math.floor(random() * lines)];
  const asked = keys[Math.floor(random() * lines)];
  return { file: { name: 'settings.py', text: keys.map(({ key, value }) => `${key} = ${value}`).join('\n') }, first, asked };
}

const cacheOf = (c: Conversation) => (c as unknown as { cache: KvCache }).cache;

describe('the cold tier with the embedded model', () => {
  let runtime: OnnxModelRuntime;
  before(async () => {
    runtime = await OnnxModelRuntime.load(embeddedModel, { threads: 1 });
  });
  after(async () => runtime.release());

  const say = (c: Conversation, features: FeatureCache, text: string, files: { name: string; text: string }[] = []): Promise<TurnOutput> =>
    c.turn(runtime, features, { text, images: [], files }, () => undefined, () => false);

  /** Turn 1: the file and a question about one key; turn 2: something else; turn 3: another key of the file. */
  async function threeTurns(settings: object, seed: number, dropBeforeTurn3 = false) {
    const { file, first, asked } = lookupFile(seed);
    const c = new Conversation('t', SessionSettings.parse({ maxNewTokens: 8, budget: TEN_PERCENT, ...settings }));
    const features = new FeatureCache();
    await say(c, features, `What is the value of \`${first.key}\`?`, [file]);
    await say(c, features, 'Which word is written in the image?');
    if (dropBeforeTurn3) c.evict();
    const third = await say(c, features, `What is the value of \`${asked.key}\`?`);
    return { c, third, expected: asked.value };
  }

  it('off: a turn is prefill, compress, decode as the KV engine runs them by hand (same tokens, bit-identical cache)', async () => {
    for (const settings of [{}, { coldTier: 'off' }]) {
      const parsed = SessionSettings.parse({ maxNewTokens: 8, budget: TEN_PERCENT, ...settings });
      const { file, first } = lookupFile(1);
      const text = `${file.text}\nWhat is the value of \`${first.key}\`?`;
      const c = new Conversation('t', parsed);
      const live = await say(c, new FeatureCache(), text);
      assert.equal(live.stats.coldBytes, undefined, 'no cold-tier figures when it is off');

      // Today's pipeline, by hand: the whole prompt prefilled, every layer compressed, greedy decode.
      const ids = runtime.processor.encode(runtime.processor.renderChatTemplate([{ role: 'user', content: [{ type: 'text', text }] }]));
      const cache = runtime.createCache();
      const { embeds, modality } = runtime.embedPrompt(ids, new Float32Array(0));
      const prefilled = await runtime.prefill(cache, embeds, Int32Array.from(ids, (_, i) => i), modality, { windowRows: observedWindow(parsed, runtime, cache, ids.length) });
      for (const [i, layer] of cache.layers.entries()) {
        const plan = await planCompression(layer, { ...compressOptions(parsed, runtime), windowScores: prefilled.windowScores?.[i] });
        if (plan) cache.compact(i, plan);
      }
      const sample = createSampler(parsed);
      const generated: number[] = [];
      let logits = prefilled.logits;
      while (generated.length < parsed.maxNewTokens) {
        const next = sample(logits);
        if (runtime.processor.eosTokenIds.includes(next)) break;
        generated.push(next);
        logits = await runtime.decodeStep(cache, next, cache.tokensSeen);
      }
      assert.equal(live.text, runtime.processor.decode(generated).replace(/^ /, ''), JSON.stringify(settings));
      const mine = cacheOf(c);
      mine.layers.forEach((layer, i) => {
        for (const key of ['keys', 'values', 'positions', 'modality'] as const) assert.deepEqual(layer[key], cache.layers[i][key], `${JSON.stringify(settings)} layer ${i} ${key}`);
      });
    }
  });

  it('off: unset and "off" run the same three turns to the same answers and cache', async () => {
    const unset = await threeTurns({}, 2);
    const off = await threeTurns({ coldTier: 'off' }, 2);
    assert.equal(off.third.text, unset.third.text);
    cacheOf(off.c).layers.forEach((layer, i) => assert.deepEqual(layer.keys, cacheOf(unset.c).layers[i].keys));
    assert.deepEqual({ ...off.third.stats, prefillMs: 0, compressMs: 0, decodeMs: 0, timeToFirstTokenMs: 0 }, { ...unset.third.stats, prefillMs: 0, compressMs: 0, decodeMs: 0, timeToFirstTokenMs: 0 });
  });

  for (const { policy, minOn } of [
    { policy: 'text_prior', minOn: 9 },
    { policy: 'text_prior_pivot_merge', minOn: 6 },
  ]) {
    it(`on: a value asked in turn 3 about turn 1's file is answered at 10% (LOOK-M ${policy}), lost with the cold tier off`, async (t) => {
      const seeds = Array.from({ length: 10 }, (_, i) => 101 + i);
      const right = { full: 0, off: 0, on: 0, deferredOnly: 0 };
      const figures = { recallMs: [] as number[], coldOverFull: [] as number[], hotOverFull: [] as number[], recalled: [] as number[] };
      for (const seed of seeds) {
        const full = await threeTurns({ policy: 'full' }, seed);
        const off = await threeTurns({ policy }, seed);
        const on = await threeTurns({ policy, coldTier: 'int8' }, seed);
        // The cold tier's turn compresses after the answer; recalling one slot shows that this alone does not answer turn 3.
        const deferredOnly = await threeTurns({ policy, coldTier: 'int8', recallBudget: 1 }, seed);
        right.deferredOnly += Number(deferredOnly.third.text === deferredOnly.expected);
        right.full += Number(full.third.text === full.expected);
        right.off += Number(off.third.text === off.expected);
        right.on += Number(on.third.text === on.expected);
        const s = on.third.stats;
        figures.recallMs.push(s.recallMs!);
        figures.recalled.push(s.recalledSlots!);
        figures.coldOverFull.push(s.coldBytes! / s.fullKvBytes);
        figures.hotOverFull.push(s.kvBytes / s.fullKvBytes);
        // The hot cache ends the turn within the budget: 10% of the tokens seen at the prefill, plus the answer.
        const budget = Math.floor((s.tokensSeen - s.generatedTokens) * 0.1 + 1e-9) + s.generatedTokens;
        assert.ok(Math.max(...s.keptSlots) <= budget, `seed ${seed}: ${s.keptSlots.join(', ')} slots over the budget ${budget}`);
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      t.diagnostic(`${policy} at 10%, ${seeds.length} files of 16 lines: right with the full cache ${right.full}, cold tier off ${right.off}, int8 cold tier on ${right.on}, on with a recall of 1 slot ${right.deferredOnly}`);
      t.diagnostic(`turn 3: recall ${mean(figures.recallMs).toFixed(1)} ms (max ${Math.max(...figures.recallMs).toFixed(1)}), ${mean(figures.recalled).toFixed(1)} slots/head recalled; hot ${mean(figures.hotOverFull).toFixed(3)} and cold ${mean(figures.coldOverFull).toFixed(3)} of the full cache's bytes`);
      assert.equal(right.full, seeds.length, 'the full cache answers every item (else the item says nothing)');
      assert.ok(right.off <= 1, `the cold tier off answered ${right.off}: the item does not need the cold tier`);
      assert.ok(right.on >= minOn, `the cold tier on answered ${right.on} of ${seeds.length}`);
      assert.ok(right.deferredOnly <= 1, `the cold tier recalling 1 slot answered ${right.deferredOnly}: the answers do not come from the recall`);
    });
  }

  it('on: a cache rebuilt from the transcript recalls as the live one did (same answer, same cache)', async () => {
    const live = await threeTurns({ coldTier: 'int8' }, 104);
    const rebuilt = await threeTurns({ coldTier: 'int8' }, 104, true);
    assert.equal(rebuilt.third.stats.rebuilt, true);
    assert.equal(rebuilt.third.text, live.third.text);
    assert.equal(rebuilt.third.stats.coldBytes, live.third.stats.coldBytes);
    cacheOf(rebuilt.c).layers.forEach((layer, i) => {
      for (const key of ['keys', 'values', 'positions'] as const) assert.deepEqual(layer[key], cacheOf(live.c).layers[i][key], `layer ${i} ${key}`);
    });
  });

  it('settings: the cold tier, its span and budget are optional and checked', () => {
    const defaults = SessionSettings.parse({});
    assert.equal(defaults.coldTier, undefined);
    assert.equal(SessionSettings.parse({ coldTier: 'int4', recallSpan: 8, recallBudget: 0.25 }).recallBudget, 0.25);
    assert.equal(SessionSettings.parse({ recallBudget: 32 }).recallBudget, 32);
    assert.equal(SessionSettings.parse({ coldTier: 'int8', recallQueryRows: 24 }).recallQueryRows, 24);
    for (const bad of [{ coldTier: 'int2' }, { recallSpan: 0 }, { recallBudget: 1.5 }, { recallBudget: 0 }, { recallBudget: -1 }, { recallQueryRows: 0 }, { recallQueryRows: 65 }, { recallQueryRows: 2.5 }]) assert.equal(SessionSettings.safeParse(bad).success, false, JSON.stringify(bad));
    const reference = SessionSettings.safeParse({ mode: 'reference', coldTier: 'int8' });
    assert.equal(reference.success, false);
    assert.match(reference.error?.issues[0].message, /cold tier is an improved-mode setting/);
    assert.equal(SessionSettings.safeParse({ mode: 'reference', coldTier: 'off' }).success, true);
  });
});

describe('the cold tier through the sidecar', () => {
  it('session/create takes its settings, the turn and session/stats report it, --cold-budget-mb bounds it', async () => {
    const budgetBytes = Math.floor(0.05 * 2 ** 20);
    const sidecar = await startSidecar(['--model', embeddedModel, '--cold-budget-mb', '0.05']);
    try {
      const { connection } = await connect(sidecar);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      await connection.sendRequest(Methods.modelLoad, { path: embeddedModel });
      await rejectsWith(connection.sendRequest(Methods.sessionCreate, { settings: { coldTier: 'int3' } } as never), ErrorCode.InvalidParams, /coldTier/);
      const { file, first } = lookupFile(7, 60);
      const sessions = [];
      for (let i = 0; i < 2; i++) {
        const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { coldTier: 'int8', budget: TEN_PERCENT, maxNewTokens: 4 } });
        const result = await connection.sendRequest(Methods.sessionChat, { sessionId, text: `What is the value of \`${first.key}\`?`, files: [file] });
        assert.ok(result.stats.coldBytes! > 0, 'the turn reports its cold bytes');
        sessions.push(sessionId);
      }
      const stats = await Promise.all(sessions.map((sessionId) => connection.sendRequest(Methods.sessionStats, { sessionId })));
      const total = stats.reduce((sum, s) => sum + s.coldBytes!, 0);
      assert.ok(total > 0 && total <= budgetBytes, `cold bytes ${total} against the budget ${budgetBytes}`);
      assert.equal((await connection.sendRequest(Methods.serverStats)).coldBytes, total);
      connection.dispose();
    } finally {
      sidecar.process.kill();
    }
  });

  it('refuses a bad --cold-budget-mb, saying what it takes', async () => {
    await assert.rejects(startSidecar(['--cold-budget-mb', 'lots']), /--cold-budget-mb must be a non-negative number of MiB/);
  });
});
