/**
 * `npm run chat -- --model DIR [--image FILE ...] [--policy NAME] [--state-dir DIR]`: a terminal
 * conversation through a real sidecar, over the same protocol the extension speaks. Each line is a
 * question; `/image FILE` attaches an image to the next one, `/file FILE` a text file, `/stats`
 * shows the session's KV figures, `/quit` (or Ctrl-D) ends. Ctrl-C cancels the answer in progress.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { connectSidecar, launchSidecar } from '../client/launch.js';
import { Methods, POLICY_NAMES, type TurnStats } from '../protocol/index.js';

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

function describe(stats: TurnStats): string {
  return `[${stats.newTokens} new tokens, ${stats.imagesEncoded} images encoded / ${stats.imagesReused} reused, KV ${kib(stats.kvBytes)} of ${kib(stats.fullKvBytes)} full, first token after ${stats.timeToFirstTokenMs.toFixed(0)} ms${stats.rebuilt ? ', cache rebuilt from the transcript' : ''}]`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      image: { type: 'string', multiple: true, default: [] },
      policy: { type: 'string', default: 'text_prior_pivot_merge' },
      'state-dir': { type: 'string' },
      'max-new-tokens': { type: 'string', default: '128' },
    },
  });
  if (!values.model) {
    console.error('usage: npm run chat -- --model DIR [--image FILE ...] [--policy NAME] [--state-dir DIR] [--max-new-tokens N]');
    return 2;
  }
  const policy = POLICY_NAMES.find((p) => p === values.policy);
  if (!policy) throw new Error(`unknown --policy ${values.policy} (${POLICY_NAMES.join(', ')})`);
  const bundled = join(__dirname, 'sidecar.js');
  const entry = existsSync(bundled) ? bundled : join(__dirname, '../main.ts');
  const args = values['state-dir'] ? ['--state-dir', resolve(values['state-dir'])] : [];
  const sidecar = await launchSidecar(entry, args, { nodeArgs: entry.endsWith('.ts') ? ['--import', 'tsx'] : [] });
  const { connection } = await connectSidecar(sidecar.port, sidecar.token);
  await connection.sendRequest(Methods.initialize, { processId: process.pid, clientInfo: { name: 'lookm-chat' }, capabilities: {} });
  connection.onNotification(Methods.modelProgress, (p) => console.error(`[model] ${p.step}`));
  const info = await connection.sendRequest(Methods.modelLoad, { path: resolve(values.model) });
  console.error(`[model] ${info.textModel} ${info.layers} layers + ${info.visionModel}; ${info.tokensPerImage} tokens per image`);
  const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens: Number(values['max-new-tokens']) } });
  connection.onNotification(Methods.sessionToken, (t) => {
    process.stdout.write(t.text);
  });

  let images = values.image.map((file) => ({ data: readFileSync(file).toString('base64'), name: basename(file) }));
  let files: { name: string; text: string }[] = [];
  let answering: CancellationTokenSource | null = null;
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: '> ' });
  rl.on('SIGINT', () => (answering ? answering.cancel() : rl.close()));
  rl.prompt();
  for await (const line of rl) {
    const text = line.trim();
    if (text === '/quit') break;
    try {
      if (text.startsWith('/image ')) {
        const file = text.slice(7).trim();
        images.push({ data: readFileSync(file).toString('base64'), name: basename(file) });
      } else if (text.startsWith('/file ')) {
        const file = text.slice(6).trim();
        files.push({ name: basename(file), text: readFileSync(file, 'utf8') });
      } else if (text === '/stats') {
        const stats = await connection.sendRequest(Methods.sessionStats, { sessionId });
        console.log(`${stats.turns.length} turns, ${stats.tokensSeen} tokens seen, KV ${kib(stats.kvBytes)}`);
      } else if (text) {
        answering = new CancellationTokenSource();
        const result = await connection.sendRequest(Methods.sessionChat, { sessionId, text, images, files }, answering.token);
        images = [];
        files = [];
        console.log(`\n${result.stopReason === 'cancelled' ? '[cancelled] ' : ''}${describe(result.stats)}`);
      }
    } catch (error) {
      console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      answering = null;
    }
    rl.prompt();
  }
  await connection.sendRequest(Methods.shutdown);
  await connection.sendNotification(Methods.exit);
  return (await sidecar.exited) ?? 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
