/**
 * A text-only causal LM (Qwen2ForCausalLM, tools/model/make_text_only.py) over the real sidecar:
 * the model info says it reads no images, a LOOK-M conversation asks about a file longer than one
 * prefill chunk and follows up on it, and a turn with an image is refused before any work,
 * leaving the conversation as it was.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { ErrorCode, Methods, type ModelInfo } from '../../sidecar/src/protocol/index.js';
import { connect, rejectsWith, root, startSidecar, type Sidecar } from './harness.js';

const model = join(root, 'test/fixtures/models/tiny-qwen2-text');
const red = readFileSync(join(root, 'test/fixtures/images/red-square.png')).toString('base64');
const file = Array.from({ length: 30 }, (_, i) => `line ${i}: The first image shows a red square on a light background.`).join('\n');

describe('a text-only model over the sidecar', () => {
  let sidecar: Sidecar;
  let connection: MessageConnection;
  let info: ModelInfo;
  before(async () => {
    sidecar = await startSidecar();
    ({ connection } = await connect(sidecar));
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    info = await connection.sendRequest(Methods.modelLoad, { path: model });
  });
  after(() => sidecar.process.kill());

  it('describes the model as reading text only', () => {
    assert.deepEqual(
      { architecture: info.architecture, textModel: info.textModel, imageInput: info.imageInput, visionModel: info.visionModel, imageSize: info.imageSize, tokensPerImage: info.tokensPerImage },
      { architecture: 'Qwen2ForCausalLM', textModel: 'qwen2', imageInput: false, visionModel: null, imageSize: null, tokensPerImage: 0 },
    );
  });

  it('a LOOK-M conversation about a long file: the file is prefilled and compressed, follow-ups feed only their new text, an image is refused', async () => {
    const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy: 'text_prior_pivot_merge', maxNewTokens: 6 } });
    const first = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Which shape does the file mention?', files: [{ name: 'notes.txt', text: file }] });
    assert.ok(first.stats.newTokens > 512, `the file is in the prompt, over one prefill chunk (${first.stats.newTokens} tokens)`);
    assert.equal(first.stats.generatedTokens, 6);
    assert.equal(first.stats.imagesEncoded, 0);
    assert.ok(Math.max(...first.stats.keptSlots) < first.stats.tokensSeen, `LOOK-M compressed the text cache (${first.stats.keptSlots.join(', ')} of ${first.stats.tokensSeen} slots)`);

    const second = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And which color?' });
    assert.ok(second.stats.newTokens < 32, `a follow-up prefills only its new text (${second.stats.newTokens} tokens)`);
    assert.equal(second.stats.tokensSeen, first.stats.tokensSeen + second.stats.newTokens + second.stats.generatedTokens);

    const before = await connection.sendRequest(Methods.sessionStats, { sessionId });
    await rejectsWith(connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is in this image?', images: [{ data: red }] }), ErrorCode.InvalidParams, /: this model reads text only; the message has 1 image: send it without images/);
    assert.deepEqual(await connection.sendRequest(Methods.sessionStats, { sessionId }), before, 'the refused turn changed nothing');

    const third = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Thanks. One more question about the file: how many lines?' });
    assert.equal(third.stats.tokensSeen, second.stats.tokensSeen + third.stats.newTokens + third.stats.generatedTokens, 'the conversation goes on where it was');
    assert.equal((await connection.sendRequest(Methods.sessionStats, { sessionId })).turns.length, 3);
  });
});
