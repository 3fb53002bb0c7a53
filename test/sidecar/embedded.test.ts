/**
 * The shipped model (sidecar/model) through the real sidecar over its WebSocket, with the default
 * KV policy and budget: it must answer held-out questions (tools/eval/dataset.ts, seed 7, a
 * generator the training script never uses) about several images, a follow-up and a long file.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { Methods } from '../../sidecar/src/protocol/index.js';
import { evalSet, type EvalItem } from '../../tools/eval/dataset.js';
import { connect, root, startSidecar, type Sidecar } from './harness.js';

const embeddedModel = join(root, 'sidecar/model');
/** Items 0..ITEMS-1 of the held-out set: a third each of multi-image, follow-up and file lookup. */
const ITEMS = 12;
/** At least this many of their final answers must be exactly right (see sidecar/model/README.md for the measured accuracy). */
const MIN_CORRECT = 10;

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

  it(`answers at least ${MIN_CORRECT} of ${ITEMS} held-out questions exactly, on the compressed cache`, async () => {
    const results: { item: EvalItem; answer: string; correct: boolean }[] = [];
    for (const item of items) {
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { maxNewTokens: 8 } });
      let answer = '';
      for (const turn of item.turns) {
        const images = turn.images.map((bytes) => ({ data: Buffer.from(bytes).toString('base64') }));
        answer = (await connection.sendRequest(Methods.sessionChat, { sessionId, text: turn.text, images, files: turn.files })).text.trim();
      }
      results.push({ item, answer, correct: answer === item.turns.at(-1)?.expected });
    }
    const report = results.map((r) => `${r.correct ? 'ok  ' : 'FAIL'} ${r.item.id}: ${JSON.stringify(r.answer)}, expected ${JSON.stringify(r.item.turns.at(-1)?.expected)}`).join('\n');
    const correct = results.filter((r) => r.correct).length;
    assert.ok(correct >= MIN_CORRECT, `${correct}/${ITEMS} correct:\n${report}`);
    // Every kind is among the right answers: the model reads images, follows up and looks up.
    for (const kind of ['multi-image', 'follow-up', 'file-lookup']) {
      assert.ok(results.some((r) => r.correct && r.item.kind === kind), `no ${kind} item answered correctly:\n${report}`);
    }
  });
});
