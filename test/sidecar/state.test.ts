/** The state folder through the real sidecar over its WebSocket: hostile ids, deletion, retention flags, damaged and corrupt files, modes. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { ErrorCode, Methods } from '../../sidecar/src/protocol/index.js';
import { connect, rejectsWith, root, startSidecar, tinyModel, type Sidecar } from './harness.js';

const red = readFileSync(join(root, 'test/fixtures/images/red-square.png')).toString('base64');
const settings = { policy: 'full' as const, maxNewTokens: 3 };

async function ready(sidecar: Sidecar, model = true): Promise<MessageConnection> {
  const { connection } = await connect(sidecar);
  await connection.sendRequest(Methods.initialize, { capabilities: {} });
  if (model) await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
  return connection;
}

describe('state folder', () => {
  let work: string;
  let stateDir: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'lookm-statefolder-'));
    stateDir = join(work, 'state');
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('session ids that are not UUIDs are refused before any file is touched; an unknown one deletes nothing', async () => {
    mkdirSync(join(stateDir, 'sessions'), { recursive: true });
    const canaries = [join(work, 'canary.json'), join(stateDir, 'canary.json'), join(stateDir, 'sessions', 'canary.json')];
    for (const canary of canaries) writeFileSync(canary, '{}');
    const sidecar = await startSidecar(['--state-dir', stateDir]);
    try {
      const connection = await ready(sidecar, false);
      const hostile = ['../../canary', '../canary', 'canary', join(work, 'canary'), 'a/b', '..', 'x'.repeat(100), `../../canary${' '.repeat(10)}`];
      const answers: Promise<unknown>[] = [];
      for (const sessionId of hostile) {
        for (const method of [Methods.sessionDelete.method, Methods.sessionStats.method, Methods.sessionCache.method]) answers.push(connection.sendRequest(method, { sessionId }));
        answers.push(connection.sendRequest(Methods.sessionChat, { sessionId, text: 'hi' }));
      }
      const settled = await Promise.allSettled(answers);
      for (const canary of canaries) assert.ok(existsSync(canary) && readFileSync(canary, 'utf8') === '{}', `${canary} survives`);
      for (const answer of settled) await rejectsWith(answer.status === 'rejected' ? Promise.reject(answer.reason as Error) : Promise.resolve(answer.value), ErrorCode.InvalidParams, /UUID/);
      assert.deepEqual(await connection.sendRequest(Methods.sessionDelete, { sessionId: randomUUID() }), { deleted: false });
      await rejectsWith(connection.sendRequest(Methods.sessionStats, { sessionId: randomUUID() }), ErrorCode.SessionNotFound);
      for (const canary of canaries) assert.equal(readFileSync(canary, 'utf8'), '{}', `${canary} survives`);
    } finally {
      sidecar.process.kill();
      await sidecar.exited;
    }
  });

  it('deleting a session deletes its image; files are 0600 and folders 0700', async () => {
    const sidecar = await startSidecar(['--state-dir', stateDir]);
    try {
      const connection = await ready(sidecar);
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings });
      await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is this?', images: [{ data: red }] });
      const [image] = readdirSync(join(stateDir, 'images'));
      assert.ok(image, 'the image was stored');
      if (process.platform !== 'win32') {
        for (const dir of [stateDir, join(stateDir, 'sessions'), join(stateDir, 'images')]) assert.equal(statSync(dir).mode & 0o777, 0o700, dir);
        for (const file of [join(stateDir, 'sessions', `${sessionId}.json`), join(stateDir, 'images', image), join(stateDir, 'index.json')]) assert.equal(statSync(file).mode & 0o777, 0o600, file);
      }
      assert.deepEqual(await connection.sendRequest(Methods.sessionDelete, { sessionId }), { deleted: true });
      assert.deepEqual(readdirSync(join(stateDir, 'images')), [], 'no session shows the image any more');
      assert.ok(!existsSync(join(stateDir, 'sessions', `${sessionId}.json`)));
    } finally {
      sidecar.process.kill();
      await sidecar.exited;
    }
  });

  it('a restart resumes sessions lazily; a damaged file loses only its own conversation, with a warning; out-of-range token ids are named', async () => {
    const first = await startSidecar(['--state-dir', stateDir]);
    const ids: string[] = [];
    let expected: string;
    try {
      const connection = await ready(first);
      for (let i = 0; i < 4; i++) {
        const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings });
        await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is this?' });
        ids.push(sessionId);
      }
      expected = (await connection.sendRequest(Methods.sessionChat, { sessionId: ids[3], text: 'And then?' })).text;
    } finally {
      first.process.kill('SIGKILL');
      await first.exited;
    }
    const file = (id: string) => join(stateDir, 'sessions', `${id}.json`);
    const text = readFileSync(file(ids[0]), 'utf8');
    writeFileSync(file(ids[0]), text.slice(0, Math.floor(text.length / 3))); // truncated by a crash or a full disk
    const outOfRange = JSON.parse(readFileSync(file(ids[1]), 'utf8')) as { segments: { ids: number[] }[] };
    outOfRange.segments[0].ids[2] = 123_456;
    writeFileSync(file(ids[1]), JSON.stringify(outOfRange));

    const second = await startSidecar(['--state-dir', stateDir]);
    try {
      const connection = await ready(second);
      assert.equal((await connection.sendRequest(Methods.serverStats)).sessions, 3, 'the truncated one is skipped, the others counted before any is used');
      const warning = second.stderr.map((line) => (line.startsWith('{') ? (JSON.parse(line) as { level: string; file?: string }) : { level: '' })).find((l) => l.level === 'warn' && l.file === file(ids[0]));
      assert.ok(warning, `a warning names the truncated file: ${second.stderr.join('\n')}`);
      assert.ok(existsSync(`${file(ids[0])}.corrupt`), 'the damaged file is kept aside, not deleted');
      await rejectsWith(connection.sendRequest(Methods.sessionStats, { sessionId: ids[0] }), ErrorCode.SessionNotFound);

      await rejectsWith(connection.sendRequest(Methods.sessionChat, { sessionId: ids[1], text: 'And then?' }), ErrorCode.TokenOutOfRange, new RegExp(`saved conversation ${ids[1]} is corrupt \\(token id 123456 outside the vocabulary of size 416\\).*Clear Conversation Cache`));
      assert.equal((await connection.sendRequest(Methods.sessionStats, { sessionId: ids[1] })).turns.length, 1, 'the refused turn changed nothing');

      const stats = await connection.sendRequest(Methods.sessionStats, { sessionId: ids[3] });
      assert.deepEqual([stats.turns.length, stats.cached], [2, false]);
      const answer = await connection.sendRequest(Methods.sessionChat, { sessionId: ids[2], text: 'And then?' });
      assert.ok(answer.stats.rebuilt);
      assert.equal(answer.text, expected, 'a resumed conversation answers as an uninterrupted one');
      assert.deepEqual(await connection.sendRequest(Methods.sessionDelete, { sessionId: ids[1] }), { deleted: true });
      assert.equal((await connection.sendRequest(Methods.serverStats)).sessions, 2);
    } finally {
      second.process.kill();
      await second.exited;
    }
  });

  it('--max-sessions keeps the most recently used sessions, never the one just used', async () => {
    const dir = join(work, 'retention');
    const sidecar = await startSidecar(['--state-dir', dir, '--max-sessions', '2']);
    try {
      const connection = await ready(sidecar, false);
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        ids.push((await connection.sendRequest(Methods.sessionCreate, { settings })).sessionId);
        await new Promise((r) => setTimeout(r, 20)); // distinct file times
      }
      assert.equal((await connection.sendRequest(Methods.serverStats)).sessions, 2);
      for (const gone of ids.slice(0, 2)) await rejectsWith(connection.sendRequest(Methods.sessionStats, { sessionId: gone }), ErrorCode.SessionNotFound);
      for (const kept of ids.slice(2)) assert.equal((await connection.sendRequest(Methods.sessionStats, { sessionId: kept })).sessionId, kept);
      assert.equal(readdirSync(join(dir, 'sessions')).length, 2);
    } finally {
      sidecar.process.kill();
      await sidecar.exited;
    }
    await assert.rejects(startSidecar(['--state-dir', dir, '--max-sessions=1.5']), /--max-sessions must be a non-negative integer/);
  });

  it("keeps the model's packed weights beside the conversations, so a restarted sidecar maps them; --packed-weights-mb 0 keeps none", async () => {
    const load = async (dir: string, args: string[] = []) => {
      const sidecar = await startSidecar(['--state-dir', dir, ...args]);
      try {
        await ready(sidecar);
      } finally {
        sidecar.process.kill();
        await sidecar.exited;
      }
      const packed = join(dir, 'packed-weights');
      return existsSync(packed) ? readdirSync(packed).filter((name) => existsSync(join(packed, name, 'complete'))) : [];
    };
    const dir = join(work, 'packed');
    const first = await load(dir);
    assert.equal(first.length, 2, 'the vision tower and the decoder');
    assert.deepEqual(await load(dir), first, 'the same entries, used again');
    assert.deepEqual(await load(join(work, 'unpacked'), ['--packed-weights-mb', '0']), []);
    await assert.rejects(startSidecar(['--state-dir', dir, '--packed-weights-mb=-1']), /--packed-weights-mb must be a non-negative number of MiB/);
  });
});
