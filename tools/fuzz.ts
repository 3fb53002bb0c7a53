/**
 * `npm run fuzz -- --count N --seed S`: sends N generated bad inputs to a real sidecar (see
 * tools/fuzz/cases.ts), checks each answer and the server's liveness after it, prints the counts
 * per kind, then floods it (silent sockets, unauthorised and authorised connections, sessions;
 * `--connections`, `--sessions`, 0 to skip) and ends with `N passed, N failed`. Exits non-zero on any failure or crash.
 */
import { parseArgs } from 'node:util';
import { runFuzz } from './fuzz/run.js';

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '1000' }, seed: { type: 'string', default: '1' }, connections: { type: 'string', default: '2000' }, sessions: { type: 'string', default: '2000' } } });
  const count = Number(values.count);
  const seed = Number(values.seed);
  const started = Date.now();
  const flood = { connections: Number(values.connections), sessions: Number(values.sessions), waitForDrop: true };
  const report = await runFuzz(count, seed, (line) => console.log(line), flood.connections > 0 ? { flood } : {});
  for (const [kind, c] of [...report.byKind].sort()) console.log(`${kind.padEnd(24)} ${String(c.passed).padStart(6)} passed ${String(c.failed).padStart(4)} failed, slowest ${c.maxMs.toFixed(0).padStart(5)} ms`);
  if (report.exhaustion) console.log(`flood: ${JSON.stringify(report.exhaustion)}`);
  for (const failure of report.failures.slice(0, 20)) console.log(`FAIL ${failure}`);
  console.log(`seed ${seed}, ${count} cases in ${((Date.now() - started) / 1000).toFixed(1)} s, crashed: ${report.crashed}`);
  console.log(`${report.passed} passed, ${report.failed} failed`);
  return report.failed === 0 && !report.crashed ? 0 : 1;
}

void main().then((code) => process.exit(code));
