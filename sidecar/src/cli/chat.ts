/**
 * `npm run chat -- --model DIR [--image FILE ...] [--policy NAME] [--state-dir DIR] [--cold-tier int8|int4|off]`: a terminal
 * conversation through a real sidecar, over the same protocol the extension speaks. Each line is a
 * question; `/image FILE` attaches an image to the next one, `/file FILE` a text file, `/stats`
 * shows the session's KV figures, `/quit` (or Ctrl-D) ends. Ctrl-C cancels the answer in progress.
 */
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { Methods, POLICY_NAMES } from '../protocol/index.js';
import { describeTurn, kib, runMain, startWithModel, stop } from './connect.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      image: { type: 'string', multiple: true, default: [] },
      policy: { type: 'string', default: 'text_prior_pivot_merge' },
      'state-dir': { type: 'string' },
      'max-new-tokens': { type: 'string', default: '128' },
      'cold-tier': { type: 'string', default: 'int8' },
      'recall-span': { type: 'string' },
      'recall-budget': { type: 'string' },
      'cold-budget-mb': { type: 'string' },
    },
  });
  if (!values.model) {
    console.error('usage: npm run chat -- --model DIR [--image FILE ...] [--policy NAME] [--state-dir DIR] [--max-new-tokens N] [--cold-tier off|int8|int4] [--recall-span N] [--recall-budget SLOTS|RATIO] [--cold-budget-mb MB]');
    return 2;
  }
  const policy = POLICY_NAMES.find((p) => p === values.policy);
  if (!policy) throw new Error(`unknown --policy ${values.policy} (${POLICY_NAMES.join(', ')})`);
  const coldTier = (['off', 'int8', 'int4'] as const).find((c) => c === values['cold-tier']);
  if (!coldTier) throw new Error(`--cold-tier must be off, int8 or int4, got ${values['cold-tier']}`);
  const cold = { coldTier, ...optionalNumber('recallSpan', values['recall-span']), ...optionalNumber('recallBudget', values['recall-budget']) };
  const args = values['state-dir'] ? ['--state-dir', resolve(values['state-dir'])] : [];
  if (values['cold-budget-mb'] !== undefined) args.push('--cold-budget-mb', values['cold-budget-mb']);
  const { sidecar, connection } = await startWithModel('lookm-chat', values.model, args);
  // The sidecar checks the values (an invalid one is refused with what is wrong).
  const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens: Number(values['max-new-tokens']), ...cold } });
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
        console.log(`\n${result.stopReason === 'cancelled' ? '[cancelled] ' : ''}${describeTurn(result.stats)}`);
      }
    } catch (error) {
      console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      answering = null;
    }
    rl.prompt();
  }
  return stop(sidecar, connection);
}

runMain(main);

/** `{[key]: number}` for a flag given, `{}` for one left out. */
function optionalNumber(key: string, value: string | undefined): Record<string, number> {
  return value === undefined ? {} : { [key]: Number(value) };
}
