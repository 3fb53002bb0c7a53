/**
 * The shipped model (sidecar/model) through the real sidecar over its WebSocket: it must answer
 * held-out questions (tools/eval/dataset.ts, seed 7, a generator the training script never uses)
 * about image k of several, a follow-up and a long file, with the full cache and on LOOK-M.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { Methods, type SessionCreateParams } from '../../sidecar/src/protocol/index.js';
import { evalSet, type EvalItem } from '../../tools/eval/dataset.js';
import { connect, root, startSidecar, type Sidecar } from './harness.js';

const embeddedModel = join(root, 'sidecar/model');
/** Items 0..ITEMS-1 of the held-out set: a third each of multi-image, follow-up and file lookup. */
const ITEMS = 12;
/** At least this many final answers must be exactly right with the full cache (sidecar/model/README.md: 1.00 on each of these kinds). */
const MIN_CORRECT_FULL = 11;

interface Outcome {
  item: EvalItem;
  answer: string;
  correct: boolean;
}

const report = (outcomes: Outcome[]) => outcomes.map((o) => `${o.correct ? 'ok  ' : 'FAIL'} ${o.item.id}: ${JSON.stringify(o.answer)}, expected ${JSON.stringify(o.item.turns.at(-1)?.expected)}`).join('\n');

describe('the embedded default model', () => {
  let sidecar: Sidecar;
  let connection: MessageConnection;
  let items: EvalItem[];
  before(async () => {
    assert.ok(existsSync(join(embeddedModel, 'config.json')), `${embeddedModel} is missing: it ships with the repository (tools/model/train/README.md regenerates it)`);
    items = await evalSet(ITEMS);
    sidecar = await startSidecar(['--model', embeddedModel]);
    ({ connection } = await connect(sidecar));
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    await connection.sendRequest(Methods.modelLoad, { path: embeddedModel });
  });
  after(() => sidecar.process.kill());

  async function answer(settings: SessionCreateParams['settings'], asked = items): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    for (const item of asked) {
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { ...settings, maxNewTokens: 8 } });
      let text = '';
      for (const turn of item.turns) {
        const images = turn.images.map((bytes) => ({ data: Buffer.from(bytes).toString('base64') }));
        text = (await connection.sendRequest(Methods.sessionChat, { sessionId, text: turn.text, images, files: turn.files })).text.trim();
      }
      outcomes.push({ item, answer: text, correct: text === item.turns.at(-1)?.expected });
    }
    return outcomes;
  }

  it(`answers at least ${MIN_CORRECT_FULL} of ${ITEMS} held-out questions (images, follow-ups, lookups) exactly with the full cache`, async () => {
    const outcomes = await answer({ policy: 'full' });
    assert.ok(outcomes.filter((o) => o.correct).length >= MIN_CORRECT_FULL, report(outcomes));
    for (const kind of ['multi-image', 'follow-up', 'file-lookup']) assert.ok(outcomes.some((o) => o.correct && o.item.kind === kind), `no ${kind} item right:\n${report(outcomes)}`);
  });

  it('keeps answering the question asked with the images on the default LOOK-M cache (20%)', async () => {
    // The question is in the prompt when the cache is compressed, so the asked image's KV is kept.
    // Follow-ups about other images and file lookups are not asserted here: at 20% this model
    // loses them (bench/results/eval.md measures how often).
    const outcomes = await answer({}, items.filter((item) => item.kind === 'multi-image'));
    assert.ok(outcomes.length > 0 && outcomes.every((o) => o.correct), report(outcomes));
  });
});
