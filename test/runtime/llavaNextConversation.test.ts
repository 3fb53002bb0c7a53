/**
 * LLaVA-NeXT and LLaVA-OneVision end to end on the runtime: `OnnxModelRuntime.load` through the
 * architecture registry, transformers' own greedy two-turn conversation reproduced by a
 * `Conversation` (layout, pixels, packed features, ids), every token of image k image k for the
 * KV engine, the cache view drawing each image's base image and unpadded tile grid with its row
 * ends, and every KV policy (LOOK-M's included) running three-turn conversations on each.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { POLICY_NAMES, SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache } from '../../sidecar/src/session/conversation.js';
import { assertRecordedTwoTurns, budgetedConversation, type RecordedTwoTurns } from './conversationTurns.js';

const root = join(__dirname, '../..');
const imageFile = (name: string) => new Uint8Array(readFileSync(join(root, 'test/fixtures/images', name)));

interface RecordedConversation extends RecordedTwoTurns {
  image_files: string[];
  feature_rows_per_image: number[];
}

const FAMILIES: [model: string, architecture: string, tower: string][] = [
  ['tiny-llava-next', 'LlavaNextForConditionalGeneration', 'clip_vision_model'],
  ['tiny-llava-onevision', 'LlavaOnevisionForConditionalGeneration', 'siglip_vision_model'],
];

for (const [model, architecture, tower] of FAMILIES) {
  describe(`${model}: a ${architecture} conversation on the runtime`, () => {
    const recorded = JSON.parse(readFileSync(join(root, 'test/fixtures/parity', model, 'conversation.json'), 'utf8')) as RecordedConversation;
    const image = new Uint8Array(readFileSync(join(root, recorded.image_files[0])));
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(root, 'test/fixtures/models', model), { threads: 1 });
    });
    after(async () => runtime?.release());

    it(`loads as ${architecture} with its ${tower} tower`, () => {
      assert.equal(runtime.info.architecture, architecture);
      assert.equal(runtime.info.visionModel, tower);
      assert.equal(runtime.info.tokensPerImage, 16, 'per tile');
    });

    it('two greedy turns of a Conversation: transformers\' prompt ids and answers', () => assertRecordedTwoTurns(runtime, recorded, image));

    it('the cache view draws each image as its base image, then its unpadded tile grid with a row-end column', async () => {
      const conversation = new Conversation('c', SessionSettings.parse({ policy: 'text_prior_weighted_merge', maxNewTokens: 4, budget: { hhRatio: 0.2, recentRatio: 0.2 } }));
      const features = new FeatureCache();
      const wide = imageFile('wide-code.png');
      await conversation.turn(runtime, features, { text: 'Compare them.', images: [image, wide], files: [] }, () => undefined, () => false);
      const [one, two] = await runtime.imageGrids([() => image, () => wide]);
      const map = conversation.cacheMap();
      const drawn = map.images.map(({ index, tokens, grid, frame, frames, part, kept }) => ({ index, tokens, grid, frame, frames, base: part?.startsWith('base image'), keptShares: kept.length }));
      const parts = (index: number, grid: typeof one) => {
        const tiles = grid.drawing![1];
        return [
          { index, tokens: 16, grid: [4, 4], frame: 0, frames: 2, base: true, keptShares: 16 },
          { index, tokens: tiles.rows * tiles.cols, grid: [tiles.rows, tiles.cols], frame: 1, frames: 2, base: false, keptShares: tiles.rows * tiles.cols },
        ];
      };
      assert.deepEqual(drawn, [...parts(0, one), ...parts(1, two)]);
      assert.equal(drawn[0].tokens + drawn[1].tokens, recorded.feature_rows_per_image[0], 'the parts cover the image\'s tokens');
      assert.match(map.images[1].part ?? '', /tiles, unpadded.*last column: row ends/);
      // The drawn grids are exactly the image's positions: the first part starts at the image's first token.
      const imageId = runtime.processor.imageTokenId;
      const firstImageToken = conversation.toJSON().segments[0].ids.indexOf(imageId!);
      assert.equal(map.images[0].firstPosition, firstImageToken);
      assert.equal(map.images[1].firstPosition, firstImageToken + 16);
    });

    for (const policy of POLICY_NAMES) {
      it(`${policy}: three turns (an image in turn 1, two in turn 2), under a budget, deterministic`, async () => {
        const run = async () => {
          const { answers, conversation } = await budgetedConversation(runtime, policy, [
            ['What is in the image?', [image]],
            ['And these two?', [imageFile('wide-code.png'), imageFile('tall-bars.png')]],
            ['What color is the square?', []],
          ]);
          return { answers, images: conversation.cacheMap().images.length, tokensSeen: conversation.tokensSeen };
        };
        const result = await run();
        assert.equal(result.answers.length, 3);
        for (const a of result.answers) assert.ok(a.length >= 1 && a.length <= 6);
        assert.equal(result.images, 6, 'three images, each drawn as base image and tiles');
        assert.deepEqual(await run(), result, 'the same answers again');
      });
    }
  });
}
