/**
 * Resource exhaustion against a running sidecar: floods of silent sockets (waited for until the
 * server drops them, or closed), unauthorised upgrades and authorised connections, and thousands
 * of sessions; after each, `server/stats` must still
 * answer on a connection opened before the flood. Returns the figures the fuzz report prints.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import type WebSocket from 'ws';
import { openSocket } from '../../sidecar/src/client/launch.js';
import { LIMITS, TOKEN_HEADER } from '../../sidecar/src/protocol/index.js';

export interface ExhaustionReport {
  silentSockets: number;
  unauthorisedRefused: number;
  authorisedAccepted: number;
  authorisedRefused: number;
  sessionsCreated: number;
  statsAnsweredAfterEach: boolean;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  /** Seconds until the server had closed every silent socket (null: not waited for). */
  silentDroppedAfterS: number | null;
}

type Call = (method: string, params?: unknown) => Promise<{ result?: unknown; error?: unknown } | null>;

function silentSocket(port: number): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.on('error', () => undefined); // refused or reset once over the cap: that is the point
    socket.once('connect', () => resolve(socket));
    socket.once('close', () => resolve(socket));
  });
}

export async function runExhaustion(port: number, token: string, call: Call, options: { connections: number; sessions: number; waitForDrop: boolean }): Promise<ExhaustionReport> {
  const rss = async () => {
    const stats = (await call('server/stats'))?.result as { rssBytes: number } | undefined;
    if (!stats) throw new Error('server/stats did not answer');
    return stats.rssBytes / 2 ** 20;
  };
  const report: ExhaustionReport = { silentSockets: 0, unauthorisedRefused: 0, authorisedAccepted: 0, authorisedRefused: 0, sessionsCreated: 0, statsAnsweredAfterEach: true, rssBeforeMiB: await rss(), rssPeakMiB: 0, silentDroppedAfterS: null };
  const check = async () => {
    try {
      report.rssPeakMiB = Math.max(report.rssPeakMiB, await rss());
    } catch {
      report.statsAnsweredAfterEach = false;
    }
  };

  const silent = await Promise.all(Array.from({ length: options.connections }, () => silentSocket(port)));
  report.silentSockets = silent.length;
  await check();
  if (options.waitForDrop) {
    const started = Date.now();
    await Promise.all(silent.map((socket) => (socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once('close', resolve)))));
    report.silentDroppedAfterS = (Date.now() - started) / 1000;
  } else {
    silent.forEach((socket) => socket.destroy());
  }

  const unauthorised = await Promise.allSettled(Array.from({ length: options.connections }, (_, i) => openSocket(port, i % 2 ? {} : { [TOKEN_HEADER]: 'x'.repeat(token.length) })));
  report.unauthorisedRefused = unauthorised.filter((r) => r.status === 'rejected').length;
  unauthorised.forEach((r) => r.status === 'fulfilled' && r.value.close());
  await check();

  const authorised = await Promise.allSettled(Array.from({ length: Math.max(options.connections, 2 * LIMITS.maxConnections) }, () => openSocket(port, { [TOKEN_HEADER]: token })));
  const open = authorised.filter((r): r is PromiseFulfilledResult<WebSocket> => r.status === 'fulfilled').map((r) => r.value);
  report.authorisedAccepted = open.length;
  report.authorisedRefused = authorised.length - open.length;
  await check();
  open.forEach((socket) => socket.close());

  for (let i = 0; i < options.sessions; i++) if ((await call('session/create', {}))?.result) report.sessionsCreated++;
  await check();
  return report;
}
