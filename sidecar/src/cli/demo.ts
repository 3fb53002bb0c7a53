/**
 * `npm run demo [-- --model DIR --policy NAME]`: a scripted multi-turn, multi-image conversation
 * through a real sidecar about the sample images and file in media/samples/: answers stream, and
 * each turn prints what LOOK-M did (images encoded vs reused, KV bytes kept vs the full cache,
 * time to first token). The default model is the embedded one (sidecar/model, trained by
 * tools/model/train/train_vlm.py); the questions are phrased the way it was trained to read them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Methods, POLICY_NAMES, type ChatResult, type SessionChatParams } from '../protocol/index.js';
import { describeTurn, kib, runMain, startWithModel, stop } from './connect.js';

const root = join(__dirname, '../../..');
const samples = join(root, 'media/samples');
const EMBEDDED = join(root, 'sidecar/model');

const image = (name: string) => ({ data: readFileSync(join(samples, name)).toString('base64'), name });
/** The conversation, with what each answer should be (the samples were drawn by tools/model/train/samples.py). */
const SCRIPT: (Omit<SessionChatParams, 'sessionId'> & { expected: string })[] = [
  { text: 'What colour is the shape in image 2?', images: [image('red-square.png'), image('blue-circle.png')], expected: 'blue' },
  { text: 'And which digit is written in image 1?', expected: '3' },
  { text: 'Which shape is shown in image 3?', images: [image('green-triangle.png')], expected: 'triangle' },
  { text: 'What is the value of `retries`?', files: [{ name: 'service.conf', text: readFileSync(join(samples, 'service.conf'), 'utf8') }], expected: '126' },
  { text: 'And which digit is written in image 2?', expected: '7' },
];

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, policy: { type: 'string', default: 'text_prior_pivot_merge' }, 'max-new-tokens': { type: 'string', default: '24' } } });
  const policy = POLICY_NAMES.find((p) => p === values.policy);
  if (!policy) throw new Error(`unknown --policy ${values.policy} (${POLICY_NAMES.join(', ')})`);
  const model = values.model ?? EMBEDDED;
  if (!existsSync(join(model, 'config.json'))) throw new Error(`no model in ${model} (the embedded model ships in sidecar/model; tools/model/train/README.md regenerates it)`);
  const { sidecar, connection } = await startWithModel('lookm-demo', model);
  const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens: Number(values['max-new-tokens']) } });
  connection.onNotification(Methods.sessionToken, (t) => {
    process.stdout.write(t.text);
  });

  const results: ChatResult[] = [];
  let right = 0;
  for (const [i, { expected, ...turn }] of SCRIPT.entries()) {
    const attached = [...(turn.images ?? []).map((x) => x.name), ...(turn.files ?? []).map((f) => f.name)];
    console.log(`\n\x1b[1mturn ${i + 1}: ${turn.text}\x1b[0m${attached.length ? ` (+ ${attached.join(', ')})` : ''}`);
    process.stdout.write('> ');
    const result = await connection.sendRequest(Methods.sessionChat, { sessionId, ...turn });
    results.push(result);
    const ok = result.text.trim() === expected;
    right += ok ? 1 : 0;
    console.log(`   ${ok ? 'right' : `WRONG (expected ${expected})`}\n${describeTurn(result.stats)}`);
  }
  const last = results[results.length - 1].stats;
  const encoded = results.reduce((n, r) => n + r.stats.imagesEncoded, 0);
  console.log(`\n${right}/${SCRIPT.length} answers right, policy ${policy}: ${encoded} image encodes for 3 images; KV ${kib(last.kvBytes)} kept vs ${kib(last.fullKvBytes)} with the full cache (${((100 * last.kvBytes) / last.fullKvBytes).toFixed(0)}%); first token of the follow-ups ${results.slice(1).map((r) => r.stats.timeToFirstTokenMs.toFixed(0)).join(' / ')} ms vs ${results[0].stats.timeToFirstTokenMs.toFixed(0)} ms for the opening turn.`);
  return stop(sidecar, connection);
}

runMain(main);
