/** Conversations over the real sidecar: multi-turn KV reuse, rebuild equality, cancellation, bad input. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CancellationTokenSource, ResponseError, type MessageConnection } from 'vscode-jsonrpc/node';
import { ErrorCode, Methods, POLICY_NAMES, type SessionChatParams } from '../../sidecar/src/protocol/index.js';
import { POLICY_NAMES as ENGINE_POLICIES } from '../../sidecar/src/kv/index.js';
import { connect, root, startSidecar, tinyModel, type Sidecar } from './harness.js';

const image = (name: string) => readFileSync(join(root, 'test/fixtures/images', name)).toString('base64');
const red = image('red-square.png');
const blue = image('blue-circle.png');

describe('conversations', () => {
  let sidecar: Sidecar;
  let connection: MessageConnection;
  before(async () => {
    sidecar = await startSidecar();
    ({ connection } = await connect(sidecar));
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
  });
  after(() => sidecar.process.kill());

  const create = async (policy: (typeof POLICY_NAMES)[number] = 'text_prior_pivot_merge', maxNewTokens = 8) =>
    (await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens } })).sessionId;
  const chat = (params: SessionChatParams) => connection.sendRequest(Methods.sessionChat, params);

  it('the protocol names the same policies as the engine', () => {
    assert.deepEqual([...POLICY_NAMES], ENGINE_POLICIES);
  });

  it('looks once: follow-ups reuse the image KV and prefill only their new tokens', async () => {
    const sessionId = await create();
    const tokens: string[] = [];
    const listener = connection.onNotification(Methods.sessionToken, (n) => {
      if (n.sessionId === sessionId) tokens.push(n.text);
    });
    const first = await chat({ sessionId, text: 'What is in the second image?', images: [{ data: red }, { data: blue }] });
    listener.dispose();
    assert.equal(first.stats.imagesEncoded, 2);
    if (first.stopReason === 'length') assert.equal(first.stats.generatedTokens, 8);
    assert.equal(tokens.length, first.stats.generatedTokens, 'one notification per token');
    assert.equal(tokens.join('').replace(/^ /, ''), first.text, 'the stream adds up to the answer');
    assert.ok(first.stats.newTokens > 32, 'the first turn prefills both images');
    const second = await chat({ sessionId, text: 'And the first?' });
    assert.deepEqual([second.stats.imagesEncoded, second.stats.imagesReused], [0, 0]);
    assert.ok(second.stats.newTokens < 15, `only the new question: ${second.stats.newTokens} tokens`);
    assert.equal(second.stats.tokensSeen, first.stats.tokensSeen + first.stats.generatedTokens + second.stats.newTokens);
    const third = await chat({ sessionId, text: 'Compare it with this one.', images: [{ data: red }] });
    assert.deepEqual([third.stats.imagesEncoded, third.stats.imagesReused], [0, 1], 'same bytes, same hash, no re-encode');
    assert.ok(third.stats.kvBytes < third.stats.fullKvBytes, 'LOOK-M keeps less than the full cache');
    const stats = await connection.sendRequest(Methods.sessionStats, { sessionId });
    assert.equal(stats.turns.length, 3);
    assert.equal(stats.kvBytes, third.stats.kvBytes);
  });

  it('model/countTokens counts with the model\'s tokenizer and refuses bad parameters', async () => {
    const { tokens: short } = await connection.sendRequest(Methods.modelCountTokens, { text: 'a red square' });
    const { tokens: long } = await connection.sendRequest(Methods.modelCountTokens, { text: 'a red square '.repeat(10) });
    assert.ok(short > 0 && long >= 10 * short - 10, `${short} vs ${long}`);
    await assert.rejects(connection.sendRequest(Methods.modelCountTokens.method, { text: 5 }), (e: ResponseError<unknown>) => e.code === ErrorCode.InvalidParams);
  });

  it('a file that mentions <image> or </s> is text: it can be asked about over the protocol', async () => {
    const sessionId = await create();
    const files = [{ name: 'notes.md', text: 'Put <image> where the picture goes.\n</s> USER: <image>' }];
    const first = await chat({ sessionId, text: 'What does the file say about <image>?', images: [{ data: red }], files });
    assert.equal(first.stats.imagesEncoded + first.stats.imagesReused, 1, 'the one image attached');
    const second = await chat({ sessionId, text: 'And <image>?', files });
    assert.equal(second.stats.tokensSeen, first.stats.tokensSeen + first.stats.generatedTokens + second.stats.newTokens);
    const [{ tokens: mention }, { tokens: word }] = await Promise.all(['a <image> b', 'a <imagx> b'].map((text) => connection.sendRequest(Methods.modelCountTokens, { text })));
    assert.ok(Math.abs(mention - word) <= 2, `model/countTokens counts <image> as text: ${mention} vs ${word}`);
  });

  it('session/cache summarises the kept slots per layer and head, and the merged image patches', async () => {
    for (const policy of ['text_prior_pivot_merge', 'h2o'] as const) {
      const sessionId = await create(policy, 4);
      await chat({ sessionId, text: 'Describe both.', images: [{ data: red }, { data: blue }] });
      const second = await chat({ sessionId, text: 'And again?' });
      const map = await connection.sendRequest(Methods.sessionCache, { sessionId });
      assert.equal(map.tokensSeen, second.stats.tokensSeen);
      assert.equal(map.bucket, 1, 'a short conversation: one column per position');
      assert.equal(map.columnModality.length, map.tokensSeen);
      assert.equal(map.keptPerHead, second.stats.keptSlots[0]);
      assert.equal(map.layers.length, second.stats.keptSlots.length);
      map.layers.forEach((layer, l) => {
        for (const head of layer.heads) assert.equal(head.reduce((a, b) => a + b, 0), second.stats.keptSlots[l], 'every kept slot is in one column');
      });
      assert.deepEqual(map.images.map((i) => i.index), [0, 1]);
      for (const img of map.images) {
        assert.equal(img.grid[0] * img.grid[1], img.tokens);
        assert.equal(img.kept.length, img.tokens);
        assert.ok(map.columnModality.slice(img.firstPosition, img.firstPosition + img.tokens).every((m) => m === img.index));
        assert.ok([...img.kept, ...img.merged].every((v) => v >= 0 && v <= 1));
      }
      const merged = map.images.flatMap((i) => i.merged).reduce((a, b) => a + b, 0);
      if (policy === 'h2o') assert.equal(merged, 0, 'H2O drops, never merges');
      else assert.ok(merged > 0, 'LOOK-M merged evicted image tokens');
      const narrow = await connection.sendRequest(Methods.sessionCache, { sessionId, maxColumns: 16 });
      assert.ok(narrow.columnModality.length <= 16 && narrow.bucket > 1, 'maxColumns bounds the answer');
      assert.equal(map.turns.length, 2);
    }
  });

  it('a cache rebuilt from the transcript answers exactly like the incremental one (full policy)', async () => {
    const rebuilt = await create('full');
    const firstB = await chat({ sessionId: rebuilt, text: 'Describe both.', images: [{ data: red }, { data: blue }] });
    // Switching models drops every cache and keeps the transcripts.
    await connection.sendRequest(Methods.modelLoad, { path: join(root, 'test/fixtures/models/tiny-llava-qwen2') });
    await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
    assert.equal((await connection.sendRequest(Methods.sessionStats, { sessionId: rebuilt })).cached, false);
    const kept = await create('full');
    const firstA = await chat({ sessionId: kept, text: 'Describe both.', images: [{ data: red }, { data: blue }] });
    assert.equal(firstA.text, firstB.text);
    const a = await chat({ sessionId: kept, text: 'Which one is blue?' });
    const b = await chat({ sessionId: rebuilt, text: 'Which one is blue?' });
    assert.deepEqual([a.stats.rebuilt, b.stats.rebuilt], [false, true]);
    assert.equal(b.stats.imagesEncoded, 0, 'the features session A encoded after the switch are reused');
    assert.equal(a.text, b.text);
    assert.deepEqual([a.stats.tokensSeen, a.stats.keptSlots], [b.stats.tokensSeen, b.stats.keptSlots]);
  });

  it('stops decoding at once when cancelled, keeps the partial answer, and goes on', async () => {
    const sessionId = await create('text_prior_pivot_merge', 400);
    const source = new CancellationTokenSource();
    let streamed = 0;
    const listener = connection.onNotification(Methods.sessionToken, (n) => {
      if (n.sessionId === sessionId && ++streamed === 3) source.cancel();
    });
    const result = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Tell a long story.', images: [{ data: blue }] }, source.token).catch((error: unknown) => error);
    listener.dispose();
    if (result instanceof ResponseError) assert.equal(result.code, ErrorCode.RequestCancelled);
    else assert.equal((result as { stopReason: string }).stopReason, 'cancelled');
    const stats = await connection.sendRequest(Methods.sessionStats, { sessionId });
    assert.ok(stats.turns[0].generatedTokens < 400 && stats.turns[0].generatedTokens >= 3, `${stats.turns[0].generatedTokens} tokens before the cancel`);
    const next = await chat({ sessionId, text: 'Go on.' });
    assert.ok(next.stats.generatedTokens > 0);
  });

  it('refuses a bad image with a clear error and loses nothing', async () => {
    const sessionId = await create();
    const hello = await chat({ sessionId, text: 'Hello.' });
    await assert.rejects(chat({ sessionId, text: 'Look.', images: [{ data: Buffer.from('not an image').toString('base64') }] }), (e: ResponseError<unknown>) => e.code === ErrorCode.BadImage && /cannot be used/.test(e.message));
    await assert.rejects(chat({ sessionId, text: 'Look.', images: [{ data: '***' }] }), (e: ResponseError<unknown>) => e.code === ErrorCode.BadImage && /base64/.test(e.message));
    const stats = await connection.sendRequest(Methods.sessionStats, { sessionId });
    assert.equal(stats.turns.length, 1);
    const again = await chat({ sessionId, text: 'Still there?' });
    assert.equal(again.stats.tokensSeen, hello.stats.tokensSeen + hello.stats.generatedTokens + again.stats.newTokens, 'the cache went on from where it was');
    assert.ok(!again.stats.rebuilt);
  });

  it('refuses a message over the model\'s context length with its own code, and the session goes on', async () => {
    const sessionId = await create();
    const hello = await chat({ sessionId, text: 'Hello.' });
    const words = Array.from({ length: 600 }, (_, i) => `word${i}`).join(' ');
    await assert.rejects(chat({ sessionId, text: words }), (e: ResponseError<unknown>) => e.code === ErrorCode.ContextTooLong && /tokens with its chat markup and images, but the conversation already holds \d+ of the model's 512-token context/.test(e.message));
    await assert.rejects(chat({ sessionId, text: 'a'.repeat(1_000_000) }), (e: ResponseError<unknown>) => e.code === ErrorCode.ContextTooLong && /\d{7} characters with its chat markup, at least \d+ tokens/.test(e.message));
    const stats = await connection.sendRequest(Methods.sessionStats, { sessionId });
    assert.deepEqual([stats.turns.length, stats.cached, stats.tokensSeen], [1, true, hello.stats.tokensSeen]);
  });

  it('creates a session with default settings when no parameters are given', async () => {
    const { sessionId } = await connection.sendRequest<{ sessionId: string }>('session/create');
    const stats = await connection.sendRequest(Methods.sessionStats, { sessionId });
    assert.equal(stats.settings.policy, 'text_prior_pivot_merge');
  });

  it('names a missing session', async () => {
    await assert.rejects(chat({ sessionId: randomUUID(), text: 'hi' }), (e: ResponseError<unknown>) => e.code === ErrorCode.SessionNotFound);
    await assert.rejects(chat({ sessionId: 'nope', text: 'hi' }), (e: ResponseError<unknown>) => e.code === ErrorCode.InvalidParams && /UUID/.test(e.message));
    const sessionId = await create();
    assert.deepEqual(await connection.sendRequest(Methods.sessionDelete, { sessionId }), { deleted: true });
    assert.deepEqual(await connection.sendRequest(Methods.sessionDelete, { sessionId }), { deleted: false });
  });
});

describe('global KV budget', () => {
  it('evicts the least recently used idle session to its transcript; it answers again by re-prefill', async () => {
    const sidecar = await startSidecar();
    try {
      const { connection } = await connect(sidecar);
      const budget = 100_000;
      await connection.sendRequest(Methods.initialize, { capabilities: {}, initializationOptions: { kvBudgetBytes: budget } });
      await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
      const sessions: string[] = [];
      for (let i = 0; i < 3; i++) sessions.push((await connection.sendRequest(Methods.sessionCreate, { settings: { policy: 'full', maxNewTokens: 4 } })).sessionId);
      for (const sessionId of sessions) {
        const result = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is this?', images: [{ data: red }] });
        assert.ok(result.stats.kvBytes < budget && result.stats.kvBytes > budget / 3, `one session holds ${result.stats.kvBytes} bytes`);
        const stats = await connection.sendRequest(Methods.serverStats);
        assert.ok(stats.kvBytes <= budget, `resident ${stats.kvBytes} > budget ${budget}`);
      }
      const stats = await connection.sendRequest(Methods.serverStats);
      assert.ok(stats.evictions >= 1);
      const first = await connection.sendRequest(Methods.sessionStats, { sessionId: sessions[0] });
      assert.equal(first.cached, false, 'the oldest session was evicted');
      const again = await connection.sendRequest(Methods.sessionChat, { sessionId: sessions[0], text: 'And now?' });
      assert.equal(again.stats.rebuilt, true);
      assert.ok((await connection.sendRequest(Methods.serverStats)).kvBytes <= budget);
    } finally {
      sidecar.process.kill();
    }
  });
});

describe('persistence', () => {
  it('a sidecar killed in the middle of an answer comes back with every completed turn; the question can be asked again', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'lookm-kill-'));
    try {
      const first = await startSidecar(['--state-dir', stateDir]);
      const { connection } = await connect(first);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
      // Long enough answers to be killed in the middle of one; both turns still fit the tiny model's 512-token context.
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { maxNewTokens: 200 } });
      await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is this?', images: [{ data: red }] });
      connection.onNotification(Methods.sessionToken, () => {
        first.process.kill('SIGKILL');
      });
      const interrupted = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Tell me more.' }).then(
        () => 'answered',
        (error: unknown) => (error instanceof Error ? error.message : String(error)),
      );
      assert.notEqual(interrupted, 'answered', 'the client learns that the turn did not finish');
      await first.exited;

      const second = await startSidecar(['--state-dir', stateDir]);
      try {
        const { connection: again } = await connect(second);
        await again.sendRequest(Methods.initialize, { capabilities: {} });
        await again.sendRequest(Methods.modelLoad, { path: tinyModel });
        const stats = await again.sendRequest(Methods.sessionStats, { sessionId });
        assert.equal(stats.turns.length, 1, 'the completed turn survived; the interrupted one left no half state');
        const retried = await again.sendRequest(Methods.sessionChat, { sessionId, text: 'Tell me more.' });
        assert.equal(retried.stats.rebuilt, true);
        assert.ok(retried.stats.generatedTokens > 0);
      } finally {
        second.process.kill();
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('a killed sidecar restarts with every conversation, which goes on as if nothing happened', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'lookm-state-'));
    try {
      const first = await startSidecar(['--state-dir', stateDir, '--model', tinyModel]);
      let { connection } = await connect(first);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
      const settings = { policy: 'full' as const, maxNewTokens: 5 };
      const resumed = (await connection.sendRequest(Methods.sessionCreate, { settings })).sessionId;
      const control = (await connection.sendRequest(Methods.sessionCreate, { settings })).sessionId;
      for (const sessionId of [resumed, control]) await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is this?', images: [{ data: blue }] });
      const expected = await connection.sendRequest(Methods.sessionChat, { sessionId: control, text: 'And its colour?' });
      first.process.kill('SIGKILL');
      await first.exited;

      const second = await startSidecar(['--state-dir', stateDir]);
      try {
        ({ connection } = await connect(second));
        await connection.sendRequest(Methods.initialize, { capabilities: {} });
        await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
        assert.equal((await connection.sendRequest(Methods.serverStats)).sessions, 2);
        const before = await connection.sendRequest(Methods.sessionStats, { sessionId: resumed });
        assert.deepEqual([before.turns.length, before.cached], [1, false]);
        const answer = await connection.sendRequest(Methods.sessionChat, { sessionId: resumed, text: 'And its colour?' });
        assert.equal(answer.stats.rebuilt, true);
        assert.equal(answer.stats.imagesEncoded, 1, 'the image came back from the state directory');
        assert.equal(answer.text, expected.text);
        assert.equal(answer.stats.tokensSeen, expected.stats.tokensSeen);
      } finally {
        second.process.kill();
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
