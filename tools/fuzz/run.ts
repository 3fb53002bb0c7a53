/**
 * Drives a real sidecar with the generated cases over raw authenticated WebSockets: each case's
 * answer must be the expected JSON-RPC error (or nothing, for notifications), and the server must
 * answer a valid request right after it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type WebSocket from 'ws';
import { launchSidecar, openSocket } from '../../sidecar/src/client/launch.js';
import { LIMITS, TOKEN_HEADER } from '../../sidecar/src/protocol/index.js';
import { generateCases, type FuzzCase } from './cases.js';
import { runExhaustion, type ExhaustionReport } from './exhaustion.js';
import { buildHostileModels, SECRET } from './hostileModels.js';

const root = join(__dirname, '../..');

export interface FuzzReport {
  passed: number;
  failed: number;
  failures: string[];
  /** Per kind of case: counts and the slowest answer, in ms. */
  byKind: Map<string, { passed: number; failed: number; maxMs: number }>;
  crashed: boolean;
  /** The flood phase's figures (null when not run). */
  exhaustion: ExhaustionReport | null;
}

export interface FuzzOptions {
  /** Connections of each kind in the flood phase (0: no flood), and sessions created. */
  flood?: { connections: number; sessions: number; waitForDrop: boolean };
}

interface Reply {
  id?: unknown;
  result?: unknown;
  error?: { code: number; message: string };
}

/** The next reply (a message with an id) on `socket`, or null after `ms`. */
function nextReply(socket: WebSocket, ms: number): Promise<Reply | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(null), ms);
    const onMessage = (data: Buffer) => {
      const message = JSON.parse(data.toString('utf8')) as Reply;
      if ('id' in message) done(message);
    };
    const onClose = () => done(null);
    const done = (value: Reply | null) => {
      clearTimeout(timer);
      socket.off('message', onMessage);
      socket.off('close', onClose);
      resolve(value);
    };
    socket.on('message', onMessage);
    socket.on('close', onClose);
  });
}

async function call(socket: WebSocket, id: string, method: string, params?: unknown): Promise<Reply | null> {
  const reply = nextReply(socket, 10_000);
  socket.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
  return reply;
}

export async function runFuzz(count: number, seed: number, log: (line: string) => void = () => undefined, options: FuzzOptions = {}): Promise<FuzzReport> {
  const model = join(root, 'test/fixtures/models/tiny-llava-llama');
  const sidecar = await launchSidecar(join(root, 'sidecar/src/main.ts'), ['--model', model, '--threads', '1', '--log-level', 'error'], { nodeArgs: ['--import', 'tsx'], cwd: root });
  const headers = { [TOKEN_HEADER]: sidecar.token };
  const report: FuzzReport = { passed: 0, failed: 0, failures: [], byKind: new Map(), crashed: false, exhaustion: null };
  const scratch = mkdtempSync(join(tmpdir(), 'lookm-fuzz-'));
  try {
    let main = await openSocket(sidecar.port, headers);
    await call(main, 'init', 'initialize', { capabilities: {} });
    await call(main, 'load', 'model/load', { path: model });
    const created = await call(main, 'create', 'session/create', {});
    const ctx = {
      sessionId: (created?.result as { sessionId: string }).sessionId,
      pngBase64: readFileSync(join(root, 'test/fixtures/images/red-square.png')).toString('base64'),
      hostileModels: buildHostileModels(model, scratch).map(({ model: m, dir }) => ({ name: m.name, dir, error: m.error, notInMessage: SECRET })),
    };
    const closed = await openSocket(sidecar.port, headers);
    await call(closed, 'init', 'initialize', { capabilities: {} });
    await call(closed, 'down', 'shutdown');

    const cases = generateCases(count, seed, ctx);
    for (const [index, c] of cases.entries()) {
      const started = performance.now();
      const problem = await runCase(c, main, closed, sidecar.port, headers);
      const ms = performance.now() - started;
      // Liveness: a valid request right after, on the main connection; the good model stays loaded.
      if (main.readyState !== main.OPEN) main = await openSocket(sidecar.port, headers).catch(() => main);
      const live = main.readyState === main.OPEN ? await call(main, `live-${index}`, 'server/stats') : null;
      const state = (live?.result as { model?: { state?: string } } | undefined)?.model?.state;
      const failure =
        problem ??
        (live && 'result' in live ? null : `the server did not answer a valid request after it (${JSON.stringify(live)})`) ??
        (state === 'ready' ? null : `the model is no longer loaded after it (state ${state})`);
      const kind = c.name.replace(/:.*/, '');
      const counts = report.byKind.get(kind) ?? { passed: 0, failed: 0, maxMs: 0 };
      counts.maxMs = Math.max(counts.maxMs, ms);
      if (failure) {
        counts.failed++;
        report.failed++;
        report.failures.push(`#${index + 1} ${c.name}: ${failure}`);
        log(`FAIL #${index + 1} ${c.name}: ${failure}`);
      } else {
        counts.passed++;
        report.passed++;
      }
      report.byKind.set(kind, counts);
      if (sidecar.process.exitCode !== null) {
        report.crashed = true;
        report.failures.push(`the sidecar exited with ${sidecar.process.exitCode} after case #${index + 1}`);
        break;
      }
    }
    if (options.flood && !report.crashed) {
      const socket = main;
      let n = 0;
      report.exhaustion = await runExhaustion(sidecar.port, sidecar.token, (method, params) => call(socket, `flood-${n++}`, method, params), options.flood);
      const e = report.exhaustion;
      const problems = [
        !e.statsAnsweredAfterEach && 'server/stats went unanswered during the flood',
        e.authorisedAccepted > LIMITS.maxConnections && `${e.authorisedAccepted} authorised connections held (cap ${LIMITS.maxConnections})`,
        e.unauthorisedRefused !== e.silentSockets && `${e.silentSockets - e.unauthorisedRefused} unauthorised upgrades accepted`,
        e.sessionsCreated !== options.flood.sessions && `${e.sessionsCreated} of ${options.flood.sessions} sessions created`,
        sidecar.process.exitCode !== null && 'the sidecar exited during the flood',
      ].filter((p): p is string => typeof p === 'string');
      report.failures.push(...problems);
      report.failed += problems.length;
    }
    main.close();
    closed.close();
  } finally {
    sidecar.process.kill();
    rmSync(scratch, { recursive: true, force: true });
  }
  return report;
}

/** What is wrong with the server's answer to one case, or null. */
async function runCase(c: FuzzCase, main: WebSocket, closed: WebSocket, port: number, headers: Record<string, string>): Promise<string | null> {
  const socket = c.connection === 'initialized' ? main : c.connection === 'after-shutdown' ? closed : await openSocket(port, headers);
  try {
    const reply = c.expect.kind === 'silence' ? null : nextReply(socket, 10_000);
    socket.send(c.payload);
    if (c.expect.kind === 'silence') return null;
    const answer = await reply;
    if (!answer) return 'no answer';
    if (!answer.error) return `expected error ${c.expect.codes.join('|')}, got a result`;
    if (!c.expect.codes.includes(answer.error.code)) return `expected error ${c.expect.codes.join('|')}, got ${answer.error.code}: ${answer.error.message.slice(0, 200)}`;
    if (c.expect.id !== undefined && answer.id !== c.expect.id) return `expected id ${JSON.stringify(c.expect.id)}, got ${JSON.stringify(answer.id)}`;
    if (c.expect.message && !c.expect.message.test(answer.error.message)) return `expected a message matching ${String(c.expect.message)}, got: ${answer.error.message.slice(0, 300)}`;
    if (c.expect.notInMessage && answer.error.message.includes(c.expect.notInMessage)) return `the message quotes file contents: ${answer.error.message.slice(0, 300)}`;
    return null;
  } finally {
    if (c.connection === 'fresh') socket.close();
  }
}
