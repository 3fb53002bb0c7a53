/**
 * Load on a real sidecar: many concurrent sessions with images under a global KV budget smaller
 * than their sum, for a bounded time. Checks, continuously and at the end: the resident KV never
 * exceeds the budget (server/stats sampled every 50 ms), every answer equals the answer of the
 * same script run alone (greedy, full cache, so evicted sessions rebuilt by re-prefill must answer
 * exactly the same), memory does not grow, and server/stats stays responsive.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectSidecar, launchSidecar } from '../../sidecar/src/client/launch.js';
import { Methods, type SessionChatParams } from '../../sidecar/src/protocol/index.js';

const root = join(__dirname, '../..');
const image = (name: string) => ({ data: readFileSync(join(root, 'test/fixtures/images', name)).toString('base64') });
const SCRIPT: Omit<SessionChatParams, 'sessionId'>[] = [
  { text: 'What is in these two images?', images: [image('red-square.png'), image('blue-circle.png')] },
  { text: 'Which one is round?' },
  { text: 'And the colour of the first?' },
  { text: 'Compare them with this one.', images: [image('red-square.png')] },
];
const SETTINGS = { policy: 'full' as const, maxNewTokens: 6 };

export interface SoakReport {
  sessions: number;
  seconds: number;
  turns: number;
  wrongAnswers: number;
  errors: string[];
  budgetBytes: number;
  maxResidentBytes: number;
  budgetViolations: number;
  samples: number;
  evictions: number;
  rssFirstQuarterMiB: number;
  rssLastQuarterMiB: number;
  statsLatencyMs: { p50: number; p99: number; max: number };
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? 0;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

export async function runSoak(sessions: number, seconds: number, log: (line: string) => void = () => undefined): Promise<SoakReport> {
  const model = join(root, 'test/fixtures/models/tiny-llava-llama');
  const sidecar = await launchSidecar(join(root, 'sidecar/src/main.ts'), ['--model', model, '--threads', '1', '--log-level', 'warn'], { nodeArgs: ['--import', 'tsx'], cwd: root });
  try {
    const { connection } = await connectSidecar(sidecar.port, sidecar.token);
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    await connection.sendRequest(Methods.modelLoad, { path: model });

    // The reference: the script run alone; its last turn tells how large one session's cache gets.
    const reference: string[] = [];
    const { sessionId: alone } = await connection.sendRequest(Methods.sessionCreate, { settings: SETTINGS });
    let perSession = 0;
    for (const turn of SCRIPT) {
      const result = await connection.sendRequest(Methods.sessionChat, { sessionId: alone, ...turn });
      reference.push(result.text);
      perSession = result.stats.kvBytes;
    }
    await connection.sendRequest(Methods.sessionDelete, { sessionId: alone });
    // A third of what all sessions would hold: the global budget, set (server-wide) by initializing
    // a second connection with it, as a client that knows its memory would.
    const budgetBytes = Math.floor((perSession * sessions) / 3);
    const second = await connectSidecar(sidecar.port, sidecar.token);
    await second.connection.sendRequest(Methods.initialize, { capabilities: {}, initializationOptions: { kvBudgetBytes: budgetBytes } });

    const deadline = Date.now() + seconds * 1000;
    const report: SoakReport = { sessions, seconds, turns: 0, wrongAnswers: 0, errors: [], budgetBytes, maxResidentBytes: 0, budgetViolations: 0, samples: 0, evictions: 0, rssFirstQuarterMiB: 0, rssLastQuarterMiB: 0, statsLatencyMs: { p50: 0, p99: 0, max: 0 } };
    const latencies: number[] = [];
    const rss: number[] = [];
    let running = true;
    const sampler = (async () => {
      while (running) {
        const started = performance.now();
        const stats = await connection.sendRequest(Methods.serverStats);
        latencies.push(performance.now() - started);
        rss.push(stats.rssBytes);
        report.samples++;
        report.maxResidentBytes = Math.max(report.maxResidentBytes, stats.kvBytes);
        if (stats.kvBudgetBytes !== null && stats.kvBytes > stats.kvBudgetBytes) report.budgetViolations++;
        report.evictions = stats.evictions;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const worker = async (index: number) => {
      do {
        const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: SETTINGS });
        for (const [turn, input] of SCRIPT.entries()) {
          try {
            const result = await connection.sendRequest(Methods.sessionChat, { sessionId, ...input });
            report.turns++;
            if (result.text !== reference[turn]) {
              report.wrongAnswers++;
              log(`session ${index} turn ${turn}: ${JSON.stringify(result.text)} != ${JSON.stringify(reference[turn])}${result.stats.rebuilt ? ' (rebuilt)' : ''}`);
            }
          } catch (error) {
            report.errors.push(`session ${index} turn ${turn}: ${error instanceof Error ? error.message : String(error)}`);
          }
        }
        await connection.sendRequest(Methods.sessionDelete, { sessionId });
      } while (Date.now() < deadline);
    };
    await Promise.all(Array.from({ length: sessions }, (_, i) => worker(i)));
    running = false;
    await sampler;
    const quarter = Math.max(1, Math.floor(rss.length / 4));
    report.rssFirstQuarterMiB = mean(rss.slice(0, quarter)) / 2 ** 20;
    report.rssLastQuarterMiB = mean(rss.slice(-quarter)) / 2 ** 20;
    report.statsLatencyMs = { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: Math.max(...latencies) };
    return report;
  } finally {
    sidecar.process.kill();
  }
}
