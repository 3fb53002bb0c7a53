/**
 * `npm run demo [-- --model DIR --policy NAME]`: a scripted multi-turn, multi-image conversation
 * through a real sidecar about the sample images and file in media/samples/: answers stream, and
 * each turn prints what LOOK-M did (images encoded vs reused, KV bytes kept vs the full cache,
 * time to first token). The default model is the embedded one when it ships (issue 9); until then
 * it is the tiny RANDOM test checkpoint, whose answers are noise (the figures are real).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Methods, POLICY_NAMES, type ChatResult, type SessionChatParams } from '../protocol/index.js';
import { describeTurn, kib, runMain, startWithModel, stop } from './connect.js';

const root = join(__dirname, '../../..');
const samples = join(root, 'media/samples');
const EMBEDDED = join(root, 'sidecar/model');
const RANDOM = join(root, 'test/fixtures/models/tiny-llava-llama');

const image = (name: string) => ({ data: readFileSync(join(samples, name)).toString('base64'), name });
const SCRIPT: Omit<SessionChatParams, 'sessionId'>[] = [
  { text: 'Describe the two images.', images: [image('red-square.png'), image('blue-circle.png')] },
  { text: 'What colour is the shape in the first image?' },
  { text: 'Here is a third image. What shape does it show?', images: [image('green-triangle.png')] },
  { text: 'What is RETRY_LIMIT set to in this file?', files: [{ name: 'settings.py', text: readFileSync(join(samples, 'settings.py'), 'utf8') }] },
  { text: 'Which of the three images showed a circle?' },
];

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, policy: { type: 'string', default: 'text_prior_pivot_merge' }, 'max-new-tokens': { type: 'string', default: '24' } } });
  const policy = POLICY_NAMES.find((p) => p === values.policy);
  if (!policy) throw new Error(`unknown --policy ${values.policy} (${POLICY_NAMES.join(', ')})`);
  const model = values.model ?? (existsSync(join(EMBEDDED, 'config.json')) ? EMBEDDED : RANDOM);
  if (model === RANDOM) console.error('[demo] no embedded model yet (issue 9): using the tiny RANDOM test checkpoint, so the answers are noise; every figure is real.');
  const { sidecar, connection } = await startWithModel('lookm-demo', model);
  const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens: Number(values['max-new-tokens']) } });
  connection.onNotification(Methods.sessionToken, (t) => {
    process.stdout.write(t.text);
  });

  const results: ChatResult[] = [];
  for (const [i, turn] of SCRIPT.entries()) {
    const attached = [...(turn.images ?? []).map((x) => x.name), ...(turn.files ?? []).map((f) => f.name)];
    console.log(`\n\x1b[1mturn ${i + 1}: ${turn.text}\x1b[0m${attached.length ? ` (+ ${attached.join(', ')})` : ''}`);
    process.stdout.write('> ');
    const result = await connection.sendRequest(Methods.sessionChat, { sessionId, ...turn });
    results.push(result);
    console.log(`\n${describeTurn(result.stats)}`);
  }
  const last = results[results.length - 1].stats;
  const encoded = results.reduce((n, r) => n + r.stats.imagesEncoded, 0);
  console.log(`\n${SCRIPT.length} turns, policy ${policy}: ${encoded} image encodes for 3 images; KV ${kib(last.kvBytes)} kept vs ${kib(last.fullKvBytes)} with the full cache (${((100 * last.kvBytes) / last.fullKvBytes).toFixed(0)}%); first token of the follow-ups ${results.slice(1).map((r) => r.stats.timeToFirstTokenMs.toFixed(0)).join(' / ')} ms vs ${results[0].stats.timeToFirstTokenMs.toFixed(0)} ms for the opening turn.`);
  return stop(sidecar, connection);
}

runMain(main);
