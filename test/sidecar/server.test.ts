/** The real sidecar process over a real WebSocket: lifecycle, errors, authentication. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { ErrorCode, Methods, TOKEN_HEADER } from '../../sidecar/src/protocol/index.js';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectSidecar, launchSidecar } from '../../sidecar/src/client/launch.js';
import { connect, openSocket, rawExchange, rejectsWith, root, startSidecar, tinyModel, type Sidecar } from './harness.js';

describe('sidecar server', () => {
  let sidecar: Sidecar;
  before(async () => {
    sidecar = await startSidecar(['--model', tinyModel]);
  });
  after(() => {
    sidecar.process.kill();
  });

  it('prints the handshake and answers the LSP-style lifecycle', async () => {
    assert.ok(sidecar.port > 0);
    const { connection, socket } = await connect(sidecar);
    await rejectsWith(connection.sendRequest(Methods.serverStats), ErrorCode.ServerNotInitialized, /send "initialize" first/);
    const init = await connection.sendRequest(Methods.initialize, { processId: process.pid, capabilities: {} });
    assert.equal(init.serverInfo.name, 'lookm-sidecar');
    assert.ok(init.capabilities.policies.includes('text_prior_pivot_merge'));
    await connection.sendNotification(Methods.initialized, {});
    await rejectsWith(connection.sendRequest(Methods.initialize, { capabilities: {} }), ErrorCode.InvalidRequest, /already initialized/);
    const info = await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
    assert.deepEqual([info.architecture, info.textModel, info.tokensPerImage], ['LlavaForConditionalGeneration', 'llama', 16]);
    assert.deepEqual(await connection.sendRequest(Methods.modelInfo), info);
    const stats = await connection.sendRequest(Methods.serverStats);
    assert.equal(stats.model.state, 'ready');
    socket.close();
  });

  it('answers bad input with the right JSON-RPC error and keeps serving', async () => {
    const { connection, socket } = await connect(sidecar);
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    await rejectsWith(connection.sendRequest('no/such/method', {}), ErrorCode.MethodNotFound);
    await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: 42 } as never), ErrorCode.InvalidParams, /path/);
    await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: tinyModel, extra: true } as never), ErrorCode.InvalidParams);
    await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: '/nonexistent/model' }), ErrorCode.ModelLoadFailed, /model folder not found/);
    assert.equal((await connection.sendRequest(Methods.serverStats)).model.state, 'ready', 'a failed load keeps the loaded model');

    const raw = await openSocket(sidecar.port, { [TOKEN_HEADER]: sidecar.token });
    assert.equal((await rawExchange(raw, '{"jsonrpc": "2.0", "id": 1, "method": ')).error?.code, ErrorCode.ParseError);
    const shape = await rawExchange(raw, JSON.stringify({ jsonrpc: '1.0', id: 7, method: 'server/stats' }));
    assert.deepEqual([shape.id, shape.error?.code], [7, ErrorCode.InvalidRequest]);
    assert.equal((await rawExchange(raw, JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'x' }]))).error?.code, ErrorCode.InvalidRequest);
    assert.equal((await rawExchange(raw, Buffer.from([0xff, 0xfe, 0x00]))).error?.code, ErrorCode.InvalidRequest);
    const after = await rawExchange(raw, JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'model/info' }));
    assert.deepEqual([after.id, after.error?.code], [9, ErrorCode.ServerNotInitialized], 'the raw socket still gets answers');
    raw.close();
    assert.equal((await connection.sendRequest(Methods.serverStats)).model.state, 'ready');
    socket.close();
  });

  it('closes a connection that sends more than the payload limit, and accepts the next one', async () => {
    const raw = await openSocket(sidecar.port, { [TOKEN_HEADER]: sidecar.token });
    const closed = once(raw, 'close');
    raw.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'model/load', params: { path: 'x'.repeat(65 * 1024 * 1024) } }));
    const [code] = (await closed) as [number];
    assert.equal(code, 1009);
    const { connection, socket } = await connect(sidecar);
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    socket.close();
  });

  it('refuses upgrades without the token, with a wrong one, or with a browser Origin', async () => {
    await assert.rejects(openSocket(sidecar.port, {}), /HTTP 401/);
    await assert.rejects(openSocket(sidecar.port, { [TOKEN_HEADER]: 'x'.repeat(sidecar.token.length) }), /HTTP 401/);
    await assert.rejects(openSocket(sidecar.port, { [TOKEN_HEADER]: sidecar.token.slice(1) }), /HTTP 401/);
    await assert.rejects(openSocket(sidecar.port, { [TOKEN_HEADER]: sidecar.token, Origin: 'https://example.com' }), /HTTP 403/);
    assert.ok(!sidecar.stderr.join('\n').includes(sidecar.token), 'the token never appears in the logs');
  });

  it('exits with 0 after shutdown and exit, refusing requests in between', async () => {
    const { connection } = await connect(sidecar);
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    assert.equal(await connection.sendRequest(Methods.shutdown), null);
    await rejectsWith(connection.sendRequest(Methods.serverStats), ErrorCode.ShuttingDown, /shutting down/);
    await connection.sendNotification(Methods.exit);
    assert.equal(await sidecar.exited, 0);
  });
});

describe('authentication at scale', () => {
  it('refuses 100% of 300 upgrades with a missing or wrong token or any browser Origin', async () => {
    const sidecar = await startSidecar();
    try {
      let refused = 0;
      const attempts = 300;
      for (let i = 0; i < attempts; i++) {
        const wrong = randomBytes(24).toString('hex');
        const headers: Record<string, string> = [{}, { [TOKEN_HEADER]: wrong }, { [TOKEN_HEADER]: `${sidecar.token}x` }, { [TOKEN_HEADER]: sidecar.token, Origin: `http://site${i}.example` }, { [TOKEN_HEADER]: sidecar.token, Origin: 'null' }][i % 5];
        await openSocket(sidecar.port, headers).then(
          (socket) => socket.close(),
          () => refused++,
        );
      }
      assert.equal(refused, attempts);
      const listening = sidecar.stderr.map((line) => JSON.parse(line) as { message: string; host?: string }).find((entry) => entry.message === 'listening');
      assert.equal(listening?.host, '127.0.0.1', 'bound to loopback');
      assert.ok(!sidecar.stderr.join('\n').includes(sidecar.token));
    } finally {
      sidecar.process.kill();
    }
  });
});

describe('allowed folders', () => {
  it('model/load reads only inside --allow-dir, symlinks resolved', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'lookm-outside-'));
    const allowedDir = mkdtempSync(join(tmpdir(), 'lookm-allowed-'));
    cpSync(tinyModel, join(allowedDir, 'model'), { recursive: true });
    symlinkSync(outside, join(allowedDir, 'escape'));
    const sidecar = await startSidecar(['--allow-dir', allowedDir]);
    try {
      const { connection } = await connect(sidecar);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      assert.equal((await connection.sendRequest(Methods.modelLoad, { path: join(allowedDir, 'model') })).textModel, 'llama');
      await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: outside }), ErrorCode.InvalidParams, /outside the folders/);
      await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: join(allowedDir, 'escape') }), ErrorCode.InvalidParams, /outside the folders/);
      await rejectsWith(connection.sendRequest(Methods.modelLoad, { path: join(allowedDir, '..', 'x') }), ErrorCode.InvalidParams, /outside the folders/);
    } finally {
      sidecar.process.kill();
      rmSync(outside, { recursive: true, force: true });
      rmSync(allowedDir, { recursive: true, force: true });
    }
  });
});

describe('sidecar start-up', () => {
  const bundled = join(root, 'dist/sidecar.js');
  it('the bundled dist/sidecar.js prints the handshake and loads a model', { skip: existsSync(bundled) ? false : 'run npm run build first' }, async () => {
    const sidecar = await launchSidecar(bundled, ['--model', tinyModel, '--threads', '1']);
    try {
      const { connection } = await connectSidecar(sidecar.port, sidecar.token);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      const info = await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
      assert.equal(info.textModel, 'llama');
    } finally {
      sidecar.process.kill();
    }
  });

  it('refuses a non-loopback host', async () => {
    await assert.rejects(startSidecar(['--host', '0.0.0.0']), /loopback/);
  });
});
