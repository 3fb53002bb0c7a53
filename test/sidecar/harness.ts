/** Starts the real sidecar process and connects to it over a real WebSocket. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createMessageConnection, type MessageConnection } from 'vscode-jsonrpc/node';
import WebSocket from 'ws';
import { TOKEN_ENV, TOKEN_HEADER } from '../../sidecar/src/protocol/index.js';
import { WebSocketMessageReader, WebSocketMessageWriter } from '../../sidecar/src/server/wsTransport.js';

export const root = join(__dirname, '../..');
export const tinyModel = join(root, 'test/fixtures/models/tiny-llava-llama');

export interface Sidecar {
  process: ChildProcess;
  port: number;
  token: string;
  stderr: string[];
  exited: Promise<number | null>;
}

export async function startSidecar(args: string[] = []): Promise<Sidecar> {
  const token = randomBytes(24).toString('hex');
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'sidecar/src/main.ts'), '--port', '0', '--threads', '1', ...args], {
    cwd: root,
    env: { ...process.env, [TOKEN_ENV]: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  const stderrDone = once(createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line)), 'close');
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([once(lines, 'line').then(([line]) => String(line)), exited.then(() => null)]);
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

export async function connect(sidecar: Sidecar): Promise<{ socket: WebSocket; connection: MessageConnection }> {
  const socket = await openSocket(sidecar.port, { [TOKEN_HEADER]: sidecar.token });
  const connection = createMessageConnection(new WebSocketMessageReader(socket), new WebSocketMessageWriter(socket));
  connection.listen();
  return { socket, connection };
}

/** Sends raw text and resolves with the next message the server sends back. */
export async function rawExchange(socket: WebSocket, data: string | Buffer): Promise<{ id: unknown; error?: { code: number; message: string }; result?: unknown }> {
  const reply = once(socket, 'message').then(([message]) => JSON.parse(String(message)) as { id: unknown; error?: { code: number; message: string } });
  socket.send(data);
  return reply;
}
