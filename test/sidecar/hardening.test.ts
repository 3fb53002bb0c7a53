/** Protocol-level hardening of the server: hostile frames, the lifecycle, queues, connection floods. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KvSettingsError } from '../../sidecar/src/kv/index.js';
import { ErrorCode, LIMITS, Methods, TOKEN_HEADER } from '../../sidecar/src/protocol/index.js';
import { SidecarError } from '../../sidecar/src/protocol/errors.js';
import { classifyError } from '../../sidecar/src/engine/errors.js';
import { SidecarServer } from '../../sidecar/src/server/server.js';
import { nestsDeeperThan } from '../../sidecar/src/transport/wsTransport.js';
import { connectSidecar } from '../../sidecar/src/client/launch.js';
import { connect, openSocket, rawExchange, rejectsWith, startSidecar, tinyModel, type Sidecar } from './harness.js';

describe('hostile frames', () => {
  let sidecar: Sidecar;
  before(async () => {
    sidecar = await startSidecar();
  });
  after(() => {
    sidecar.process.kill();
  });

  it('answers a malformed $/cancelRequest with an error and keeps the connection', async () => {
    const raw = await openSocket(sidecar.port, { [TOKEN_HEADER]: sidecar.token });
    for (const params of [{ id: null }, {}, undefined, { id: { nested: 1 } }]) {
      const message = { jsonrpc: '2.0', method: '$/cancelRequest', ...(params === undefined ? {} : { params }) };
      const reply = await rawExchange(raw, JSON.stringify(message));
      assert.equal(reply.error?.code, ErrorCode.InvalidParams, JSON.stringify(message));
      assert.match(reply.error?.message ?? '', /cancelRequest needs params/);
    }
    const stats = await rawExchange(raw, JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'initialize', params: { capabilities: {} } }));
    assert.equal(stats.id, 5);
    assert.ok(stats.result, 'the connection still answers requests');
    raw.close();
  });

  it('refuses a 20 MB frame of nested arrays without parsing it, and keeps serving', async () => {
    const raw = await openSocket(sidecar.port, { [TOKEN_HEADER]: sidecar.token });
    const depth = 10 * 1024 * 1024;
    const frame = `{"jsonrpc":"2.0","id":1,"method":"model/countTokens","params":{"text":${'['.repeat(depth)}${']'.repeat(depth)}}}`;
    const reply = await rawExchange(raw, frame);
    assert.equal(reply.error?.code, ErrorCode.InvalidRequest);
    assert.match(reply.error?.message ?? '', /nested deeper than 64/);
    const { connection, socket } = await connect(sidecar);
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    assert.equal((await connection.sendRequest(Methods.serverStats)).model.state, 'none');
    socket.close();
    raw.close();
  });

  it('counts nesting outside strings only', () => {
    const enc = (s: string) => Buffer.from(s);
    assert.equal(nestsDeeperThan(enc('{"a":"[[[[[[[[[["}'), 3), false);
    assert.equal(nestsDeeperThan(enc('{"a":"\\"[[[[[[[[["}'), 3), false, 'an escaped quote does not end the string');
    assert.equal(nestsDeeperThan(enc('[[[[1]]]]'), 3), true);
    assert.equal(nestsDeeperThan(enc('[[[1]],[[2]]]'), 3), false);
  });

  it('refuses a global KV budget below the minimum', async () => {
    const { connection, socket } = await connect(sidecar);
    await rejectsWith(connection.sendRequest(Methods.initialize, { capabilities: {}, initializationOptions: { kvBudgetBytes: 1 } }), ErrorCode.InvalidParams, /kvBudgetBytes/);
    const init = await connection.sendRequest(Methods.initialize, { capabilities: {}, initializationOptions: { kvBudgetBytes: LIMITS.minKvBudgetBytes } });
    assert.ok(init.capabilities.policies.length > 0);
    assert.equal((await connection.sendRequest(Methods.serverStats)).kvBudgetBytes, LIMITS.minKvBudgetBytes);
    socket.close();
  });
});

describe('the lifecycle and the model queue', () => {
  it('answers requests after shutdown with ShuttingDown', async () => {
    const sidecar = await startSidecar();
    try {
      const { connection } = await connect(sidecar);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      await connection.sendRequest(Methods.shutdown);
      await rejectsWith(connection.sendRequest(Methods.serverStats), ErrorCode.ShuttingDown, /shutting down/);
      await rejectsWith(connection.sendRequest(Methods.modelInfo), ErrorCode.ShuttingDown);
    } finally {
      sidecar.process.kill();
    }
  });

  it('model/load waits for the turn in flight instead of releasing its runtime', async () => {
    const copy = mkdtempSync(join(tmpdir(), 'lookm-model-copy-'));
    cpSync(tinyModel, copy, { recursive: true });
    const sidecar = await startSidecar(['--model', tinyModel]);
    try {
      const { connection } = await connect(sidecar);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { maxNewTokens: 200 } });
      // The random test model rarely emits EOS, so the turn decodes for a while: the load arrives mid-turn.
      const firstToken = new Promise<void>((resolve) => connection.onNotification(Methods.sessionToken, () => resolve()));
      const turn = connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Tell me a long story.' });
      await firstToken;
      const load = connection.sendRequest(Methods.modelLoad, { path: copy });
      const result = await turn;
      assert.ok(result.stats.generatedTokens > 0, 'the turn finished on the model it started with');
      assert.equal((await load).path, copy);
      const next = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And then?' });
      assert.equal(next.stats.rebuilt, true, 'the conversation is rebuilt on the new model');
      const turnLines = sidecar.stderr.map((line) => JSON.parse(line) as { level: string; message: string; session?: string; newTokens?: number }).filter((entry) => entry.message === 'turn');
      assert.equal(turnLines.length, 2, 'one info line per turn');
      assert.deepEqual([turnLines[0].level, turnLines[0].session], ['info', sessionId.slice(0, 8)]);
      assert.ok((turnLines[1].newTokens ?? 0) > 0);
    } finally {
      sidecar.process.kill();
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

describe('a busy model', () => {
  it('does not hold up server/stats, cancels or other clients', async () => {
    const sidecar = await startSidecar(['--model', tinyModel]);
    try {
      const busy = await connect(sidecar);
      await busy.connection.sendRequest(Methods.initialize, { capabilities: {} });
      await busy.connection.sendRequest(Methods.modelLoad, { path: tinyModel });
      const other = await connect(sidecar);
      await other.connection.sendRequest(Methods.initialize, { capabilities: {} });
      // Tokenizing 100,000 CJK characters takes the model's thread a while (synchronous work).
      const order: string[] = [];
      const counting = busy.connection.sendRequest(Methods.modelCountTokens, { text: '漢字'.repeat(50_000) }).then(() => order.push('countTokens'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      for (let i = 0; i < 5; i++) {
        const stats = await other.connection.sendRequest(Methods.serverStats);
        assert.equal(stats.model.state, 'ready');
        order.push('stats');
      }
      await counting;
      assert.deepEqual(order, ['stats', 'stats', 'stats', 'stats', 'stats', 'countTokens'], 'stats were answered while the tokenizer ran');
    } finally {
      sidecar.process.kill();
    }
  });
});

describe('the engine worker', () => {
  it('a worker that dies says why in every answer, while the server thread keeps answering', async () => {
    const work = mkdtempSync(join(tmpdir(), 'lookm-worker-'));
    const notAFolder = join(work, 'state');
    writeFileSync(notAFolder, 'a file where the state folder should be');
    const server = new SidecarServer({ host: '127.0.0.1', port: 0, token: 'worker-test-token-0123456789abcdef', version: 'test', log: { log: () => undefined }, stateDir: notAFolder });
    try {
      const port = await server.listen();
      const { connection, socket } = await connectSidecar(port, 'worker-test-token-0123456789abcdef');
      await rejectsWith(connection.sendRequest(Methods.initialize, { capabilities: {} }), ErrorCode.InternalError, /the model stopped while running modelInfo: .*(EEXIST|ENOTDIR|not a directory|file already exists)/);
      socket.close();
      const stats = server.stats();
      assert.equal(stats.model.state, 'failed');
      assert.match(stats.model.error ?? '', /the model worker stopped/);
    } finally {
      await server.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('allowed folders', () => {
  it('a model folder that does not exist is reported as missing, not as outside the allowed folders', async () => {
    const missing = join(tmpdir(), `lookm-missing-${process.pid}`, 'model');
    const sidecar = await startSidecar(['--allow-dir', missing]);
    try {
      const { connection } = await connect(sidecar);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: missing }), ErrorCode.ModelLoadFailed, /model folder not found/);
      await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: join(missing, '..', 'other') }), ErrorCode.InvalidParams, /outside the folders/);
    } finally {
      sidecar.process.kill();
    }
  });
});

describe('connection floods', () => {
  let server: SidecarServer;
  let port: number;
  const token = 'flood-test-token-0123456789abcdef';
  const logs: string[] = [];
  before(async () => {
    server = new SidecarServer({ host: '127.0.0.1', port: 0, token, version: 'test', log: { log: (_level, message) => void logs.push(message) }, upgradeTimeoutMs: 300 });
    port = await server.listen();
  });
  after(async () => {
    await server.close();
  });

  it('drops sockets that never finish their upgrade', async () => {
    const silent = connectTcp(port, '127.0.0.1');
    const slow = connectTcp(port, '127.0.0.1', () => slow.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'));
    await Promise.all([once(silent, 'close'), once(slow, 'close')]);
  });

  it(`refuses WebSocket connections beyond ${LIMITS.maxConnections} and keeps answering the open ones`, async () => {
    const sockets = await Promise.all(Array.from({ length: LIMITS.maxConnections }, () => openSocket(port, { [TOKEN_HEADER]: token })));
    await assert.rejects(openSocket(port, { [TOKEN_HEADER]: token }), /HTTP 503/);
    sockets.slice(1).forEach((socket) => socket.close());
    const reply = await rawExchange(sockets[0], JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { capabilities: {} } }));
    assert.ok(reply.result);
    sockets[0].close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const { socket } = await connectSidecar(port, token);
    socket.close();
  });
});

describe('error classification', () => {
  it('gives each failure kind its own code', () => {
    assert.equal(classifyError(new SidecarError(ErrorCode.ContextTooLong, 'too long'))?.code, ErrorCode.ContextTooLong);
    assert.equal(classifyError(new KvSettingsError('recent_size 0'))?.code, ErrorCode.InvalidParams);
    assert.equal(classifyError(new RangeError('Array buffer allocation failed'))?.code, ErrorCode.OutOfMemory);
    assert.equal(classifyError(new RangeError('Invalid typed array length: 99999999999'))?.code, ErrorCode.OutOfMemory);
    assert.equal(classifyError(new RangeError('offset is out of bounds')), null, 'an unknown RangeError is not blamed on the settings');
    assert.equal(classifyError(new Error('boom')), null);
  });
});
