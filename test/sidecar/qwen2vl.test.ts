/**
 * Qwen2-VL and Qwen2.5-VL over the real sidecar: the model info, three-turn conversations (an image
 * in turn 1, two of other sizes in turn 2, text in turn 3) under every KV policy, the cache view
 * drawing each image as its merged-patch grid, and a conversation resumed by a restarted sidecar
 * from its saved state (its cache rebuilt with the images' grids and M-RoPE positions) answering
 * as the live one does.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { Methods, POLICY_NAMES, type ModelInfo } from '../../sidecar/src/protocol/index.js';
import { connect, root, startSidecar, type Sidecar } from './harness.js';

const image = (file: string) => ({ data: readFileSync(join(root, 'test/fixtures/images', file)).toString('base64') });
const wide = image('qwen2vl/wide-editor.png');
const tall = image('qwen2vl/tall-list.png');
const red = image('red-square.png');

for (const model of ['tiny-qwen2-vl', 'tiny-qwen2.5-vl']) {
  describe(`${model} over the sidecar`, () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'lookm-qwen2vl-'));
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

    it('describes the model', () => {
      assert.equal(info.architecture, model === 'tiny-qwen2-vl' ? 'Qwen2VLForConditionalGeneration' : 'Qwen2_5_VLForConditionalGeneration');
      assert.equal(info.imageInput, true);
    });

    for (const policy of POLICY_NAMES) {
      it(`${policy}: three turns with images of several sizes; the cache view draws their grids`, async () => {
        const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy, maxNewTokens: 4, budget: { hhRatio: 0.2, recentRatio: 0.2 } } });
        const first = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is in this screenshot?', images: [wide] });
        assert.equal(first.stats.imagesEncoded + first.stats.imagesReused, 1);
        const second = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And these two?', images: [tall, red] });
        assert.equal(second.stats.imagesEncoded + second.stats.imagesReused, 2);
        const third = await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'Which was wider?' });
        assert.equal(third.stats.tokensSeen, second.stats.tokensSeen + third.stats.newTokens + third.stats.generatedTokens);
        if (policy !== 'full') assert.ok(Math.max(...third.stats.keptSlots) < third.stats.tokensSeen, `${policy} compressed`);
        const map = await connection.sendRequest(Methods.sessionCache, { sessionId });
        assert.equal(map.images.length, 3);
        for (const entry of map.images) {
          assert.equal(entry.grid[0] * entry.grid[1], entry.tokens);
          assert.equal(entry.kept.length, entry.tokens);
        }
        // wide-editor is wider than tall, tall-list taller than wide: drawn so.
        assert.ok(map.images[0].grid[1] > map.images[0].grid[0], `the wide screenshot: ${map.images[0].grid.join(' x ')}`);
        assert.ok(map.images[1].grid[0] > map.images[1].grid[1], `the tall list: ${map.images[1].grid.join(' x ')}`);
      });
    }

    it('a restarted sidecar resumes a saved conversation with images: the same next answer', async () => {
      const settings = { policy: 'text_prior_pivot_merge' as const, maxNewTokens: 4, budget: { hhRatio: 0.2, recentRatio: 0.2 } };
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings });
      await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'What is in this screenshot?', images: [wide] });
      await connection.sendRequest(Methods.sessionChat, { sessionId, text: 'And this?', images: [tall] });
      const { sessionId: live } = await connection.sendRequest(Methods.sessionCreate, { settings });
      await connection.sendRequest(Methods.sessionChat, { sessionId: live, text: 'What is in this screenshot?', images: [wide] });
      await connection.sendRequest(Methods.sessionChat, { sessionId: live, text: 'And this?', images: [tall] });
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
