/** What the terminal clients share: a sidecar started with a model loaded, and a turn's figures in one line. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { connectSidecar, launchSidecar, type LaunchedSidecar } from '../client/launch.js';
import { Methods, type ModelInfo, type TurnStats } from '../protocol/index.js';

export const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

/** Kept against full (slots with slots), then the allocated memory (spare capacity included), never as a share of full. */
function kvFigures(stats: TurnStats): string {
  const kept = stats.keptKvBytes === undefined ? '' : `${kib(stats.keptKvBytes)} kept of ${kib(stats.fullKvBytes)} full (${stats.fullKvBytes > 0 ? ((100 * stats.keptKvBytes) / stats.fullKvBytes).toFixed(0) : '–'}%), `;
  return `KV ${kept}${kib(stats.kvBytes)} allocated`;
}

export function describeTurn(stats: TurnStats): string {
  return `[${stats.newTokens} new tokens, ${stats.imagesEncoded} images encoded / ${stats.imagesReused} reused, ${kvFigures(stats)}, first token after ${stats.timeToFirstTokenMs.toFixed(0)} ms${stats.coldBytes === undefined ? '' : `, cold tier ${kib(stats.coldBytes)}, ${stats.recalledSlots ?? 0} slots recalled in ${(stats.recallMs ?? 0).toFixed(0)} ms`}${stats.rebuilt ? ', cache rebuilt from the transcript' : ''}]`;
}

/** Starts the sidecar (the bundle when built, else the sources) and loads `model`, printing progress. */
export async function startWithModel(client: string, model: string, args: string[] = []): Promise<{ sidecar: LaunchedSidecar; connection: MessageConnection; info: ModelInfo }> {
  const bundled = join(__dirname, 'sidecar.js');
  const entry = existsSync(bundled) ? bundled : join(__dirname, '../main.ts');
  const sidecar = await launchSidecar(entry, args, { nodeArgs: entry.endsWith('.ts') ? ['--import', 'tsx'] : [] });
  const { connection } = await connectSidecar(sidecar.port, sidecar.token);
  await connection.sendRequest(Methods.initialize, { processId: process.pid, clientInfo: { name: client }, capabilities: {} });
  connection.onNotification(Methods.modelProgress, (p) => console.error(`[model] ${p.step}`));
  const info = await connection.sendRequest(Methods.modelLoad, { path: resolve(model) });
  console.error(`[model] ${info.textModel} ${info.layers} layers ${info.visionModel === null ? '(text only)' : `+ ${info.visionModel}; ${info.maxTokensPerImage === undefined ? info.tokensPerImage : `up to ${info.maxTokensPerImage}`} tokens per image`}`);
  return { sidecar, connection, info };
}

/** Ends the session politely: shutdown, exit, and the process's exit code. */
export async function stop(sidecar: LaunchedSidecar, connection: MessageConnection): Promise<number> {
  await connection.sendRequest(Methods.shutdown);
  await connection.sendNotification(Methods.exit);
  return (await sidecar.exited) ?? 0;
}

/** Runs a CLI's main and exits with its code; an error is printed in one line (exit 1). */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
}
