/**
 * The sidecar started with `--device webgpu` serves a multi-turn conversation with images through
 * its real WebSocket, the device named in `model/info`. Run in the WebGPU child of
 * `modelWebgpu.test.ts` (the sidecar inherits its Vulkan environment).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { Methods } from '../../sidecar/src/protocol/index.js';
import { launchSidecar } from '../../sidecar/src/client/launch.js';
import { connect, root, startSidecar, tinyModel, type Sidecar } from '../sidecar/harness.js';

/** The bundle `npm test` builds before the unit run (`node dist/sidecar.js --device webgpu`); the source when it was not built. */
const bundled = join(root, 'dist/sidecar.js');

const image = (name: string) => readFileSync(join(root, 'test/fixtures/images', name)).toString('base64');

export function defineSidecarTests(): void {
  describe('the sidecar with --device webgpu', () => {
    let sidecar: Sidecar;
    let connection: MessageConnection;
    before(async () => {
      const args = ['--device', 'webgpu', '--threads', '1'];
      console.log(`# ${existsSync(bundled) ? 'dist/sidecar.js' : 'sidecar/src/main.ts (no build)'} --device webgpu`);
      sidecar = existsSync(bundled) ? await launchSidecar(bundled, args, { cwd: root }) : await startSidecar(args);
      ({ connection } = await connect(sidecar));
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
    });
    after(() => sidecar?.process.kill());

    it('names the device in model/info', async () => {
      const info = await connection.sendRequest(Methods.modelLoad, { path: tinyModel });
      assert.equal(info.device?.provider, 'webgpu');
      assert.equal(info.device?.kvOnDevice, true);
      assert.match(info.device?.adapter ?? '', /WebGPU/);
    });

    it('serves a multi-turn conversation with images, compressed by LOOK-M on the device', async () => {
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: { policy: 'text_prior_pivot_merge', maxNewTokens: 6 } });
      const chat = (text: string, images: string[] = []) => connection.sendRequest(Methods.sessionChat, { sessionId, text, images: images.map((data) => ({ data })) });
      const first = await chat('What is in the second image?', [image('red-square.png'), image('blue-circle.png')]);
      assert.equal(first.stats.imagesEncoded, 2);
      const second = await chat('And the first?');
      assert.ok(second.stats.newTokens < 15, `only the new question is read: ${second.stats.newTokens} tokens`);
      assert.equal(second.stats.tokensSeen, first.stats.tokensSeen + first.stats.generatedTokens + second.stats.newTokens);
      const third = await chat('Compare it with this one.', [image('red-square.png')]);
      assert.ok(third.stats.kvBytes < third.stats.fullKvBytes, `LOOK-M keeps less than the full cache: ${third.stats.kvBytes} of ${third.stats.fullKvBytes}`);
      const stats = await connection.sendRequest(Methods.sessionStats, { sessionId });
      assert.equal(stats.turns.length, 3);
    });
  });
}
