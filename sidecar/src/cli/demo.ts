/**
 * `npm run demo [-- --model DIR --policy NAME --budget RATIO]`: two scripted conversations through a
 * real sidecar (three sample pictures over four turns; a settings file over two), each held twice:
 * with the chosen KV policy (LOOK-M at 20% by default; its answer streams) and with the full cache.
 * Per turn: both answers, right or wrong, images encoded vs reused, KV bytes kept vs full, time to
 * first token. The default model is the embedded one (sidecar/model, made by
 * tools/model/train/train_vlm.py); the questions are phrased the way it was trained to read them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { Methods, POLICY_NAMES, type ChatResult, type SessionChatParams } from '../protocol/index.js';

type PolicyName = (typeof POLICY_NAMES)[number];
import { describeTurn, kib, runMain, startWithModel, stop } from './connect.js';

const root = join(__dirname, '../../..');
const samples = join(root, 'media/samples');
const EMBEDDED = join(root, 'sidecar/model');

type Turn = Omit<SessionChatParams, 'sessionId'> & { expected: string };

const image = (name: string) => ({ data: readFileSync(join(samples, name)).toString('base64'), name });
const settingsFile = () => ({ name: 'service.conf', text: readFileSync(join(samples, 'service.conf'), 'utf8') });

/** The conversations, with what each answer should be (the samples were drawn by tools/model/train/samples.py). */
const CONVERSATIONS: { title: string; turns: Turn[] }[] = [
  {
    title: 'three pictures',
    turns: [
      { text: 'What colour is the shape in image 2?', images: [image('red-square.png'), image('blue-circle.png')], expected: 'blue' },
      { text: 'And which digit is written in image 1?', expected: '3' },
      { text: 'Which shape is shown in image 3?', images: [image('green-triangle.png')], expected: 'triangle' },
      { text: 'And which digit is written in image 2?', expected: '7' },
    ],
  },
  {
    title: 'a 40-line settings file',
    turns: [
      { text: 'What is the value of `retries`?', files: [settingsFile()], expected: '126' },
      { text: 'And what is the value of `port`?', expected: '2316' },
    ],
  },
];

interface Tally {
  right: number;
  total: number;
}

async function holdConversation(connection: MessageConnection, turns: Turn[], policy: PolicyName, budget: number, maxNewTokens: number, tallies: Record<'ours' | 'full', Tally>): Promise<ChatResult[]> {
  const create = async (p: PolicyName) => (await connection.sendRequest(Methods.sessionCreate, { settings: { policy: p, budget: { hhRatio: budget / 2, recentRatio: budget / 2 }, maxNewTokens } })).sessionId;
  const ours = await create(policy);
  const full = await create('full');
  const streamed = connection.onNotification(Methods.sessionToken, (t) => {
    if (t.sessionId === ours) process.stdout.write(t.text);
  });
  const results: ChatResult[] = [];
  const verdict = (answer: string, expected: string, tally: Tally) => {
    const ok = answer.trim() === expected;
    tally.right += ok ? 1 : 0;
    tally.total += 1;
    return ok ? 'right' : `WRONG (expected ${expected})`;
  };
  for (const { expected, ...turn } of turns) {
    const attached = [...(turn.images ?? []).map((x) => x.name), ...(turn.files ?? []).map((f) => f.name)];
    console.log(`\n\x1b[1m${turn.text}\x1b[0m${attached.length ? ` (+ ${attached.join(', ')})` : ''}`);
    process.stdout.write(`  ${policy}: `);
    const result = await connection.sendRequest(Methods.sessionChat, { sessionId: ours, ...turn });
    const reference = await connection.sendRequest(Methods.sessionChat, { sessionId: full, ...turn });
    results.push(result);
    console.log(`   ${verdict(result.text, expected, tallies.ours)}\n  full cache: ${reference.text.trim()}   ${verdict(reference.text, expected, tallies.full)}`);
    console.log(`  ${describeTurn(result.stats)}`);
  }
  streamed.dispose();
  return results;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, policy: { type: 'string', default: 'text_prior_pivot_merge' }, budget: { type: 'string', default: '0.2' }, 'max-new-tokens': { type: 'string', default: '8' } } });
  const policy = POLICY_NAMES.find((p) => p === values.policy);
  if (!policy) throw new Error(`unknown --policy ${values.policy} (${POLICY_NAMES.join(', ')})`);
  const budget = Number(values.budget);
  if (!(budget > 0 && budget <= 1)) throw new Error(`--budget must be in (0, 1], got ${values.budget}`);
  const model = values.model ?? EMBEDDED;
  if (!existsSync(join(model, 'config.json'))) throw new Error(`no model in ${model} (the embedded model ships in sidecar/model; tools/model/train/README.md regenerates it)`);
  const { sidecar, connection } = await startWithModel('lookm-demo', model);

  const tallies = { ours: { right: 0, total: 0 }, full: { right: 0, total: 0 } };
  for (const { title, turns } of CONVERSATIONS) {
    console.log(`\n\x1b[4mConversation: ${title}\x1b[0m`);
    const results = await holdConversation(connection, turns, policy, budget, Number(values['max-new-tokens']), tallies);
    const last = results[results.length - 1].stats;
    const encoded = results.reduce((n, r) => n + r.stats.imagesEncoded, 0);
    const followUps = results.slice(1).map((r) => r.stats.timeToFirstTokenMs.toFixed(0));
    console.log(`\n  ${turns.length} turns: ${encoded} image encodes; KV ${kib(last.keptKvBytes ?? 0)} kept vs ${kib(last.fullKvBytes)} with the full cache (${((100 * (last.keptKvBytes ?? 0)) / last.fullKvBytes).toFixed(0)}%), ${kib(last.kvBytes)} allocated; first token of the follow-ups ${followUps.join(' / ')} ms vs ${results[0].stats.timeToFirstTokenMs.toFixed(0)} ms for the opening turn.`);
  }
  console.log(`\nAnswers right: ${tallies.ours.right}/${tallies.ours.total} with ${policy} at ${budget * 100}%, ${tallies.full.right}/${tallies.full.total} with the full cache.`);
  return stop(sidecar, connection);
}

runMain(main);
