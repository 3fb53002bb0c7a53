/**
 * SmolVLM (Idefics3) end to end on the runtime: `OnnxModelRuntime.load` through the architecture
 * registry, transformers' own greedy two-turn conversation reproduced by a `Conversation` (the
 * processor's tiles, pixels and ids, the image encoder, the decoder), the KV engine seeing every
 * tile of image k as image k, and every KV policy running multi-turn conversations on it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TEXT } from '../../sidecar/src/kv/index.js';
import { POLICY_NAMES } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { assertRecordedTwoTurns, budgetedConversation, type RecordedTwoTurns } from './conversationTurns.js';

const root = join(__dirname, '../..');

interface RecordedConversation extends RecordedTwoTurns {
  image_files: string[];
  frames_per_image: number[];
  image_seq_len: number;
}

for (const model of ['tiny-smolvlm', 'tiny-smolvlm-nosplit']) {
  describe(`${model}: a SmolVLM conversation on the runtime`, () => {
    const recorded = JSON.parse(readFileSync(join(root, 'test/fixtures/parity', model, 'conversation.json'), 'utf8')) as RecordedConversation;
    const image = readFileSync(join(root, recorded.image_files[0]));
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(root, 'test/fixtures/models', model), { threads: 1 });
    });
    after(async () => runtime?.release());

    it('loads as Idefics3ForConditionalGeneration with its image tokens per frame', () => {
      assert.equal(runtime.info.architecture, 'Idefics3ForConditionalGeneration');
      assert.equal(runtime.info.visionModel, 'idefics3_vision');
      assert.equal(runtime.info.tokensPerImage, recorded.image_seq_len);
    });

    it('two greedy turns of a Conversation: transformers\' prompt ids and answers', () => assertRecordedTwoTurns(runtime, recorded, image, 'turn 1 prompt ids (tiles, row/column tokens, global image)'));

    it('every tile of image k is image k for the KV engine; the markup around the tiles is text', async () => {
      const grids = await runtime.imageGrids([() => image, () => image]);
      assert.deepEqual(
        grids.map((g) => g.frames),
        [recorded.frames_per_image[0], recorded.frames_per_image[0]],
      );
      const prompt = runtime.processor.renderChatTemplate([{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Compare them.' }] }]);
      const ids = runtime.processor.encode(prompt, true, 0, grids);
      const rows = grids.map((g) => g.frames * runtime.info.tokensPerImage);
      const features = new Float32Array((rows[0] + rows[1]) * runtime.info.hiddenSize);
      const { modality } = runtime.embedPrompt(ids, features, 0, rows);
      const imageId = runtime.processor.imageTokenId;
      const imageModalities = ids.flatMap((id, i) => (id === imageId ? [modality[i]] : []));
      assert.deepEqual(imageModalities, [...new Array<number>(rows[0]).fill(0), ...new Array<number>(rows[1]).fill(1)]);
      assert.ok(ids.every((id, i) => (id === imageId) === (modality[i] !== TEXT)), 'only image tokens carry an image index');
    });

    for (const policy of POLICY_NAMES) {
      it(`${policy}: three turns with images (two in one turn), under a budget, deterministic`, async () => {
        const run = async () => {
          const { answers } = await budgetedConversation(runtime, policy, [
            ['What is in the image?', [image]],
            ['And these two?', [readFileSync(join(root, 'test/fixtures/images/wide-code.png')), readFileSync(join(root, 'test/fixtures/images/tall-bars.png'))]],
            ['What color is the square?', []],
          ]);
          return answers;
        };
        const answers = await run();
        assert.equal(answers.length, 3);
        for (const a of answers) assert.ok(a.length >= 1 && a.length <= 6);
        assert.deepEqual(await run(), answers, 'the same answers again');
      });
    }
  });
}
