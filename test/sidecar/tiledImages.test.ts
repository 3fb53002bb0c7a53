/**
 * The tiling families over the real sidecar: SmolVLM (`Idefics3ForConditionalGeneration`: tiles
 * plus a global image) and LLaVA-NeXT / LLaVA-OneVision (tiles at a pinpoint plus a base image,
 * unpadded, a row end per row). Three-turn conversations (an image in turn 1, two of other shapes
 * in turn 2, text in turn 3) under every KV policy, the cache view drawing each image's frames or
 * parts, and a conversation resumed by a restarted sidecar from its saved state answering as the
 * live one does.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { Methods, POLICY_NAMES, type CacheMap, type ModelInfo } from '../../sidecar/src/protocol/index.js';
import { connect, root, startSidecar, type Sidecar } from './harness.js';

const image = (file: string) => ({ data: readFileSync(join(root, 'test/fixtures/images', file)).toString('base64') });
const wide = image('qwen2vl/wide-editor.png');
const tall = image('tall-bars.png');
const small = image('red-square.png');

const FAMILIES = [
  { model: 'tiny-smolvlm', architecture: 'Idefics3ForConditionalGeneration' },
  { model: 'tiny-llava-next', architecture: 'LlavaNextForConditionalGeneration' },
  { model: 'tiny-llava-onevision', architecture: 'LlavaOnevisionForConditionalGeneration' },
];

/** The cache view's entries of image `index`: SmolVLM's frames (tiles, then the global image) or LLaVA-NeXT's parts. */
function drawn(map: CacheMap, index: number): CacheMap['images'] {
  return map.images.filter((entry) => entry.index === index);
}

for (const { model, architecture } of FAMILIES) {
  describe(`${model} over the sidecar`, () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'lookm-tiled-'));
    let sidecar: Sidecar;
    let connection: MessageConnection;
    let info: ModelInfo;
    const start = async () => {
      sidecar = await startSidecar(['--state-dir', stateDir]);
      ({ connection } = await connect(sidecar));
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      info = await connection.sendRequest(Methods.modelLoad, { path: join(root, 'test/fixtures/models', model) });
    };
    before(start);
    after(() => {
      sidecar.process.kill();
      rmSync(stateDir, { recursive: true, force: true });
    });

    it('describes the model, with the most tokens one image can become', () => {
      assert.equal(info.architecture, architecture);
      assert.equal(info.imageInput, true);
      assert.ok((info.maxTokensPerImage ?? 0) > info.tokensPerImage, `${info.maxTokensPerImage} most, ${info.tokensPerImage} per frame`);
    });

    for (const policy of POLICY_NAMES) {
      it(`${policy}: three turns with images of several shapes; the cache view draws their tiles`, async () => {
        const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens: 4, budget: { hhRatio: 0.2, recentRatio: 0.2 } } });
        const first = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is in this screenshot?', images: [wide] });
        assert.equal(first.stats.imagesEncoded + first.stats.imagesReused, 1);
        const second = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And these two?', images: [tall, small] });
        assert.equal(second.stats.imagesEncoded + second.stats.imagesReused, 2);
        const third = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Which was wider?' });
        assert.equal(third.stats.tokensSeen, second.stats.tokensSeen + third.stats.newTokens + third.stats.generatedTokens);
        if (policy !== 'full') assert.ok(Math.max(...third.stats.keptSlots) < third.stats.tokensSeen, `${policy} compressed`);
        const map = await connection.sendRequest(Methods.sessionCache, { sessionId });
        assert.deepEqual([...new Set(map.images.map((entry) => entry.index))], [0, 1, 2], 'three images drawn');
        for (const entry of map.images) {
          assert.equal(entry.grid[0] * entry.grid[1], entry.tokens);
          assert.equal(entry.kept.length, entry.tokens);
          assert.ok(entry.kept.every((share) => share >= 0 && share <= 1));
        }
        // The wide screenshot is split: several frames (SmolVLM) or a base image and its tile grid (LLaVA-NeXT).
        const screenshot = drawn(map, 0);
        assert.ok(screenshot.length > 1, `the screenshot drawn as ${screenshot.length} part(s)`);
        if (model === 'tiny-smolvlm') assert.ok(screenshot.every((entry, i) => entry.frame === i && entry.frames === screenshot.length));
        else {
          assert.deepEqual(screenshot.map((entry) => entry.part === 'base image'), [true, false]);
          assert.match(screenshot[1].part ?? '', /^\d+ x \d+ tiles, unpadded.*; last column: row ends$/);
        }
      });
    }

    it('a restarted sidecar resumes a saved conversation with images: the same next answer', async () => {
      const settings = { policy: 'text_prior_pivot_merge' as const, maxNewTokens: 4, budget: { hhRatio: 0.2, recentRatio: 0.2 } };
      const ask = async (sessionId: string) => {
        await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is in this screenshot?', images: [wide] });
        await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And this?', images: [tall] });
      };
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings });
      await ask(sessionId);
      const { sessionId: live } = await connection.sendRequest(Methods.sessionCreate, { settings });
      await ask(live);
      const liveAnswer = await connection.sendRequest(Methods.sessionChat, { sessionId: live, text: 'Which was taller?' });
      sidecar.process.kill();
      await start();
      const resumed = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Which was taller?' });
      assert.equal(resumed.stats.rebuilt, true);
      assert.equal(resumed.text, liveAnswer.text);
      assert.equal(resumed.stats.tokensSeen, liveAnswer.stats.tokensSeen);
    });
  });
}
