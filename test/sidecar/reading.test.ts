/** Reading progress (`session/progress`) and a stop during the reading, over the real WebSocket, with small prefill chunks. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CancellationTokenSource, ResponseError, type MessageConnection } from 'vscode-jsonrpc/node';
import { ErrorCode, Methods, type ReadingProgressNotification } from '../../sidecar/src/protocol/index.js';
import { SidecarError } from '../../sidecar/src/protocol/errors.js';
import { SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache, MemoryImageStore } from '../../sidecar/src/session/conversation.js';
import { ReadingProgress } from '../../sidecar/src/session/reading.js';
import { connect, startSidecar, tinyModel, type Sidecar } from './harness.js';

// Small steps: the whole reading must outlast a cancellation's round trip even on a fast, idle machine
// (at 32 tokens a step the 352-token reading once ended in 15 ms, before the stop arrived).
const CHUNK = 4;
/** About 300 tokens: several chunks, inside the test model's 512 positions. */
const longQuestion = `Summarise: ${'the quick brown fox jumps over the lazy dog. '.repeat(12)}`;

describe('reading progress', () => {
  let sidecar: Sidecar;
  let connection: MessageConnection;
  before(async () => {
    sidecar = await startSidecar(['--prefill-chunk', String(CHUNK)]);
    ({ connection } = await connect(sidecar));
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
  });
  after(() => sidecar.process.kill());

  const create = async () => (await connection.sendRequest(Methods.sessionCreate, { settings: { maxNewTokens: 4 } })).sessionId;
  const watch = (sessionId: string, onEach?: (n: ReadingProgressNotification) => void) => {
    const seen: ReadingProgressNotification[] = [];
    const listener = connection.onNotification(Methods.sessionProgress, (n) => {
      if (n.sessionId !== sessionId) return;
      seen.push(n);
      onEach?.(n);
    });
    return { seen, dispose: () => listener.dispose() };
  };

  it('reports tokens read of the total after every prefill chunk, from 0 to the whole prompt, before the first token', async () => {
    const sessionId = await create();
    const order: string[] = [];
    const progress = watch(sessionId, () => order.push('progress'));
    const tokens = connection.onNotification(Methods.sessionToken, () => {
      order.push('token');
    });
    const result = await connection.sendRequest(Methods.sessionChat, { sessionId, text: longQuestion });
    progress.dispose();
    tokens.dispose();
    const total = result.stats.newTokens;
    assert.ok(total > 8 * CHUNK, `a long prompt (${total} tokens)`);
    const read = progress.seen.map((n) => n.tokensRead);
    assert.deepEqual(new Set(progress.seen.map((n) => n.tokensTotal)), new Set([total]));
    assert.equal(read[0], 0);
    assert.equal(read.at(-1), total);
    assert.equal(read.length, Math.ceil(total / CHUNK) + 1, `one report per chunk: ${read.join(', ')}`);
    for (let i = 1; i < read.length; i++) assert.ok(read[i] > read[i - 1], 'strictly increasing');
    assert.equal(order.indexOf('token'), progress.seen.length, 'all reading is reported before the first token');
  });

  it('a stop during the reading cancels the turn, which leaves nothing recorded; the next question is answered', async () => {
    const sessionId = await create();
    const source = new CancellationTokenSource();
    const progress = watch(sessionId, (n) => {
      if (n.tokensRead >= 2 * CHUNK) source.cancel();
    });
    let streamed = 0;
    const tokens = connection.onNotification(Methods.sessionToken, () => void streamed++);
    const outcome = await connection.sendRequest(Methods.sessionChat, { sessionId, text: longQuestion }, source.token).catch((error: unknown) => error);
    progress.dispose();
    tokens.dispose();
    // (Where in the reading the stop lands depends on the machine's load: the in-process test below pins it.)
    assert.ok(outcome instanceof ResponseError, `the turn was stopped, not answered: ${JSON.stringify(outcome)}`);
    assert.equal(outcome.code, ErrorCode.RequestCancelled);
    assert.equal(streamed, 0, 'no token was streamed');
    assert.equal((await connection.sendRequest(Methods.sessionStats, { sessionId })).turns.length, 0);
    const next = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Hello.' });
    assert.ok(next.stats.generatedTokens > 0);
    assert.equal((await connection.sendRequest(Methods.sessionStats, { sessionId })).turns.length, 1);
  });

  it('refuses a --prefill-chunk that is not a positive integer, saying what it wants', async () => {
    await assert.rejects(startSidecar(['--prefill-chunk', '0']), /--prefill-chunk must be a positive integer/);
  });
});

describe('reading progress of a rebuilt cache', () => {
  let runtime: OnnxModelRuntime;
  before(async () => {
    runtime = await OnnxModelRuntime.load(tinyModel, { threads: 1, prefillChunk: CHUNK });
  });
  after(async () => runtime.release());

  it('counts the replay of the earlier turns (prompts and answers) in what the turn reads', async () => {
    const c = new Conversation('rebuild', SessionSettings.parse({ policy: 'text_prior_pivot_merge', maxNewTokens: 8 }), new MemoryImageStore());
    const features = new FeatureCache();
    const say = (text: string) => ({ text, images: [], files: [] });
    await c.turn(runtime, features, say(longQuestion), () => undefined, () => false);
    const before = c.tokensSeen;
    c.evict();
    const reports: [number, number][] = [];
    const out = await c.turn(runtime, features, say('And then?'), () => undefined, () => false, undefined, (read, total) => reports.push([read, total]));
    assert.equal(out.stats.rebuilt, true);
    const total = before + (out.stats.tokensSeen - before - out.stats.generatedTokens);
    assert.deepEqual(new Set(reports.map(([, t]) => t)), new Set([total]), 'the total is the replayed tokens and the new prompt');
    assert.deepEqual(reports[0], [0, total]);
    assert.deepEqual(reports.at(-1), [total, total]);
    assert.ok(reports.length >= before / CHUNK, `a report per chunk's worth of replay: ${reports.map(([r]) => r).join(', ')}`);
  });

  it('a stop between two chunks of the reading ends the turn there, recording nothing', async () => {
    const c = new Conversation('stop', SessionSettings.parse({ policy: 'text_prior_pivot_merge', maxNewTokens: 8 }), new MemoryImageStore());
    let read = 0;
    const turn = c.turn(runtime, new FeatureCache(), { text: longQuestion, images: [], files: [] }, () => assert.fail('no token'), () => read >= 2 * CHUNK, undefined, (r) => (read = r));
    await assert.rejects(turn, (e: unknown) => e instanceof SidecarError && e.code === ErrorCode.RequestCancelled && new RegExp(`during the prefill, after ${2 * CHUNK} of \\d+ tokens`).test(e.message));
    assert.equal(read, 2 * CHUNK);
    assert.equal(c.turns.length, 0);
    assert.equal(c.tokensSeen, 0);
  });
});

describe('ReadingProgress', () => {
  const track = (total: number, step: number, clock = { ms: 0 }) => {
    const reports: number[] = [];
    return { reports, progress: new ReadingProgress(total, step, (read, all) => (assert.equal(all, total), reports.push(read)), 500, () => clock.ms), clock };
  };

  it('reports the start, every step of tokens and the end, once each', () => {
    const { reports, progress } = track(100, 32);
    progress.start();
    for (const chunk of [32, 32, 32, 4]) progress.advance(chunk);
    assert.deepEqual(reports, [0, 32, 64, 96, 100]);
  });

  it('gathers single tokens (a replay\'s decode steps) into steps, or reports after half a second of them', () => {
    const { reports, progress, clock } = track(100, 32);
    progress.start();
    for (let i = 0; i < 40; i++) progress.advance(1);
    assert.deepEqual(reports, [0, 32]);
    clock.ms = 600;
    progress.advance(1);
    assert.deepEqual(reports, [0, 32, 41]);
  });
});
