/**
 * The sidecar the kill loop starts and kills: the bundle `dist/sidecar.js` when it is newer than
 * every source it was built from (`npm run build`), otherwise `sidecar/src/main.ts` through tsx,
 * so a stale bundle never stands in for the code under test.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { connectSidecar, launchSidecar, type LaunchedSidecar } from '../../sidecar/src/client/launch.js';
import { Methods } from '../../sidecar/src/protocol/index.js';

export interface SidecarEntry {
  entry: string;
  nodeArgs: string[];
  /** What ran, for the report. */
  label: string;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export function chooseEntry(root: string): SidecarEntry {
  const bundle = join(root, 'dist/sidecar.js');
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= newestMtime(join(root, 'sidecar/src'))) return { entry: bundle, nodeArgs: [], label: 'dist/sidecar.js' };
  return { entry: join(root, 'sidecar/src/main.ts'), nodeArgs: ['--import', 'tsx'], label: 'sidecar/src/main.ts (tsx; run `npm run build` for the bundle)' };
}

export interface RunningSidecar {
  sidecar: LaunchedSidecar;
  connection: MessageConnection;
  /** From the spawn to the model ready for turns. */
  startMs: number;
  /** Set once the loop itself killed it: any other exit is a crash. */
  killed: boolean;
}

/** Starts a sidecar on `stateDir` with `model` and waits until it can take turns. */
export async function startSidecar(root: string, entry: SidecarEntry, model: string, stateDir: string): Promise<RunningSidecar> {
  const started = performance.now();
  const sidecar = await launchSidecar(entry.entry, ['--model', model, '--state-dir', stateDir, '--threads', '1', '--log-level', 'info'], { nodeArgs: entry.nodeArgs, cwd: root });
  try {
    const { connection } = await connectSidecar(sidecar.port, sidecar.token);
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    await connection.sendRequest(Methods.modelLoad, { path: model });
    return { sidecar, connection, startMs: performance.now() - started, killed: false };
  } catch (error) {
    sidecar.process.kill('SIGKILL');
    throw error;
  }
}

/** SIGKILL, the way a crash or an OOM killer ends it: no handler runs, nothing is flushed. */
export function killNow(running: RunningSidecar): void {
  running.killed = true;
  running.sidecar.process.kill('SIGKILL');
}
