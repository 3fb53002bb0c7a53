/**
 * Each vision-language family over the real sidecar: Qwen2-VL / Qwen2.5-VL (images at their own
 * resolution, M-RoPE), SmolVLM (tiles plus a global image) and LLaVA-NeXT / LLaVA-OneVision (tiles at
 * a pinpoint plus a base image, unpadded, a row end per row). Three-turn conversations (an image in
 * turn 1, two of other shapes in turn 2, text in turn 3) under every KV policy, the cache view
 * drawing each image as its family lays it out, and a conversation resumed by a restarted sidecar
 * from its saved state (its cache rebuilt with the images' grids and positions) answering as the
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
/** 300 x 90, 60 x 200, 40 x 110 and 48 x 40 pixels. */
const wide = image('qwen2vl/wide-editor.png');
const tallList = image('qwen2vl/tall-list.png');
const tallBars = image('tall-bars.png');
const small = image('red-square.png');

type Drawn = CacheMap['images'];

interface Family {
  model: string;
  architecture: string;
  /** Turn 2's two images. */
  second: { data: string }[];
  /** What the cache view must show of the wide screenshot (turn 1) and of turn 2's first image. */
  checkDrawing: (screenshot: Drawn, secondImage: Drawn) => void;
}

/** Qwen2-VL: one grid of merged patches per image, as wide or tall as the image. */
const mergedPatches = (screenshot: Drawn, tall: Drawn) => {
  assert.ok(screenshot.length === 1 && screenshot[0].grid[1] > screenshot[0].grid[0], `the wide screenshot: ${screenshot[0].grid.join(' x ')}`);
  assert.ok(tall.length === 1 && tall[0].grid[0] > tall[0].grid[1], `the tall list: ${tall[0].grid.join(' x ')}`);
};
/** SmolVLM: the split screenshot frame by frame (its tiles, then the global image). */
const frames = (screenshot: Drawn) => {
  assert.ok(screenshot.length > 1, `the screenshot drawn as ${screenshot.length} frame(s)`);
  assert.ok(screenshot.every((entry, i) => entry.frame === i && entry.frames === screenshot.length));
};
/** LLaVA-NeXT / OneVision: the base image, then the unpadded tile grid with its row-end column. */
const parts = (screenshot: Drawn) => {
  assert.deepEqual(
    screenshot.map((entry) => entry.part === 'base image'),
    [true, false],
  );
  assert.match(screenshot[1].part ?? '', /^\d+ x \d+ tiles, unpadded.*; last column: row ends$/);
};

const FAMILIES: Family[] = [
  { model: 'tiny-qwen2-vl', architecture: 'Qwen2VLForConditionalGeneration', second: [tallList, small], checkDrawing: mergedPatches },
  { model: 'tiny-qwen2.5-vl', architecture: 'Qwen2_5_VLForConditionalGeneration', second: [tallList, small], checkDrawing: mergedPatches },
  { model: 'tiny-smolvlm', architecture: 'Idefics3ForConditionalGeneration', second: [tallBars, small], checkDrawing: frames },
  { model: 'tiny-llava-next', architecture: 'LlavaNextForConditionalGeneration', second: [tallBars, small], checkDrawing: parts },
  { model: 'tiny-llava-onevision', architecture: 'LlavaOnevisionForConditionalGeneration', second: [tallBars, small], checkDrawing: parts },
];

for (const { model, architecture, second, checkDrawing } of FAMILIES) {
  describe(`${model} over the sidecar`, () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'lookm-vlm-'));
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
      assert.ok((info.maxTokensPerImage ?? 0) > info.tokensPerImage, `${info.maxTokensPerImage} at most, ${info.tokensPerImage} per frame`);
    });

    for (const policy of POLICY_NAMES) {
      it(`${policy}: three turns with images of several shapes; the cache view draws them as the family lays them out`, async () => {
        const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens: 4, budget: { hhRatio: 0.2, recentRatio: 0.2 } } });
        const first = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is in this screenshot?', images: [wide] });
        assert.equal(first.stats.imagesEncoded + first.stats.imagesReused, 1);
        const secondTurn = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And these two?', images: second });
        assert.equal(secondTurn.stats.imagesEncoded + secondTurn.stats.imagesReused, 2);
        const third = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Which was wider?' });
        assert.equal(third.stats.tokensSeen, secondTurn.stats.tokensSeen + third.stats.newTokens + third.stats.generatedTokens);
        if (policy !== 'full') assert.ok(Math.max(...third.stats.keptSlots) < third.stats.tokensSeen, `${policy} compressed`);
        const map = await connection.sendRequest(Methods.sessionCache, { sessionId });
        assert.deepEqual([...new Set(map.images.map((entry) => entry.index))], [0, 1, 2], 'three images drawn');
        for (const entry of map.images) {
          assert.equal(entry.grid[0] * entry.grid[1], entry.tokens);
          assert.equal(entry.kept.length, entry.tokens);
          assert.ok(entry.kept.every((share) => share >= 0 && share <= 1));
        }
        checkDrawing(
          map.images.filter((entry) => entry.index === 0),
          map.images.filter((entry) => entry.index === 1),
        );
      });
    }

    it('a restarted sidecar resumes a saved conversation with images: the same next answer', async () => {
      const settings = { policy: 'text_prior_pivot_merge' as const, maxNewTokens: 4, budget: { hhRatio: 0.2, recentRatio: 0.2 } };
      const twoTurns = async (sessionId: string) => {
        await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is in this screenshot?', images: [wide] });
        await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And this?', images: [second[0]] });
      };
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings });
      await twoTurns(sessionId);
      const { sessionId: live } = await connection.sendRequest(Methods.sessionCreate, { settings });
      await twoTurns(live);
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
