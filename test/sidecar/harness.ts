/** Starts the real sidecar process (from source, through tsx) and connects to it over a real WebSocket. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { ResponseError } from 'vscode-jsonrpc/node';
import type WebSocket from 'ws';
import { connectSidecar, launchSidecar, type LaunchedSidecar } from '../../sidecar/src/client/launch.js';

export { openSocket } from '../../sidecar/src/client/launch.js';

export const root = join(__dirname, '../..');
export const tinyModel = join(root, 'test/fixtures/models/tiny-llava-llama');

export type Sidecar = LaunchedSidecar;

export function startSidecar(args: string[] = []): Promise<Sidecar> {
  return launchSidecar(join(root, 'sidecar/src/main.ts'), ['--threads', '1', ...args], { nodeArgs: ['--import', 'tsx'], cwd: root });
}

export function connect(sidecar: Sidecar): ReturnType<typeof connectSidecar> {
  return connectSidecar(sidecar.port, sidecar.token);
}

/** Sends raw text and resolves with the next message the server sends back. */
export async function rawExchange(socket: WebSocket, data: string | Buffer): Promise<{ id: unknown; error?: { code: number; message: string }; result?: unknown }> {
  const reply = once(socket, 'message').then(([message]) => JSON.parse(String(message)) as { id: unknown; error?: { code: number; message: string } });
  socket.send(data);
  return reply;
}

/** Asserts that `promise` fails with a JSON-RPC error of `code` (and a message matching `pattern`). */
export async function rejectsWith(promise: Promise<unknown>, code: number, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ResponseError, String(error));
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}
