/**
 * Starting a sidecar and talking to it: spawn with a fresh secret, wait for the handshake line,
 * open the authenticated WebSocket and a vscode-jsonrpc connection over it. Used by `npm run chat`
 * and the tests; the extension drives the same steps through vscode-languageclient.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createMessageConnection, type MessageConnection } from 'vscode-jsonrpc/node';
import WebSocket from 'ws';
import { TOKEN_ENV, TOKEN_HEADER } from '../protocol/index.js';
import { WebSocketMessageReader, WebSocketMessageWriter } from '../transport/wsTransport.js';

export interface LaunchedSidecar {
  process: ChildProcess;
  port: number;
  token: string;
  /** stderr lines (JSON logs) so far. */
  stderr: string[];
  exited: Promise<number | null>;
}

/** Spawns `node [nodeArgs] entry --port 0 [args]` and resolves once its handshake line arrived. */
export async function launchSidecar(
  entry: string,
  args: string[] = [],
  options: { nodeArgs?: string[]; cwd?: string; env?: Record<string, string>; onLog?: (line: string) => void } = {},
): Promise<LaunchedSidecar> {
  const token = randomBytes(24).toString('hex');
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), entry, '--port', '0', ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, [TOKEN_ENV]: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  const stderrDone = once(
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      options.onLog?.(line);
    }),
    'close',
  );
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const first = await Promise.race([once(createInterface({ input: child.stdout }), 'line').then(([line]) => String(line)), exited.then(() => null)]);
  if (first === null) {
    await stderrDone;
    throw new Error(`the sidecar exited before its handshake: ${stderr.join('\n')}`);
  }
  const handshake = JSON.parse(first) as { port: number; pid: number; version: string };
  return { process: child, port: handshake.port, token, stderr, exited };
}

export async function openSocket(port: number, headers: Record<string, string>): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, { headers });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    socket.once('error', reject);
  });
  return socket;
}

export async function connectSidecar(port: number, token: string): Promise<{ socket: WebSocket; connection: MessageConnection }> {
  const socket = await openSocket(port, { [TOKEN_HEADER]: token });
  const connection = createMessageConnection(new WebSocketMessageReader(socket), new WebSocketMessageWriter(socket));
  // A dead sidecar must not leave requests pending forever: disposing rejects them.
  socket.on('close', () => connection.dispose());
  connection.listen();
  return { socket, connection };
}
