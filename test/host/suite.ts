/**
 * Integration tests inside a real VS Code host (code-server, see tools/host/): bundled to
 * dist-test/host.js and loaded as the `extensionTestsPath` module, which exports `run()`.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { LookmApi } from '../../extension/src/extension.js';
import { Methods, type ChatResult } from '../../sidecar/src/protocol/index.js';

// This bundle has its own copy of vscode-jsonrpc, so the typed request objects of the protocol
// are not the extension's: talk to its client by method name.
const CREATE = Methods.sessionCreate.method;
const CHAT = Methods.sessionChat.method;
const TOKEN = Methods.sessionToken.method;

const results: { name: string; ok: boolean; error?: string }[] = [];

async function test(name: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
    results.push({ name, ok: true });
  } catch (error) {
    results.push({ name, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
}

export async function run(): Promise<void> {
  const root = process.env.LOOKM_REPO ?? join(__dirname, '..');
  const extension = vscode.extensions.getExtension<LookmApi>('lookm.lookm-vscode');
  assert.ok(extension, 'the extension is installed in the host');
  const api = await extension.activate();
  const config = vscode.workspace.getConfiguration('lookm');

  await test('registers its commands', async () => {
    const commands = await vscode.commands.getCommands(true);
    for (const id of ['lookm.explainImage', 'lookm.askAboutFile', 'lookm.askAboutSelection', 'lookm.restartSidecar', 'lookm.showLog']) assert.ok(commands.includes(id), id);
  });

  await test('starts the sidecar on first use and answers with streamed tokens', async () => {
    await config.update('modelPath', join(root, 'test/fixtures/models/tiny-llava-llama'), vscode.ConfigurationTarget.Global);
    const client = await api.sidecar.ready();
    assert.equal(api.sidecar.modelInfo?.textModel, 'llama');
    const { sessionId } = await client.sendRequest<{ sessionId: string }>(CREATE, { settings: { maxNewTokens: 6 } });
    const tokens: string[] = [];
    const listener = client.onNotification(TOKEN, (t: { text: string }) => {
      tokens.push(t.text);
    });
    const result = await client.sendRequest<ChatResult>(CHAT, { sessionId, text: 'Hello?' });
    listener.dispose();
    assert.equal(tokens.length, result.stats.generatedTokens);
  });

  await test('comes back after the sidecar is killed, with the conversation', async () => {
    const client = await api.sidecar.ready();
    const { sessionId } = await client.sendRequest<{ sessionId: string }>(CREATE, { settings: { maxNewTokens: 4 } });
    await client.sendRequest<ChatResult>(CHAT, { sessionId, text: 'First question.' });
    api.sidecar.killForTests();
    const deadline = Date.now() + 30_000;
    let answer: ChatResult | null = null;
    while (!answer && Date.now() < deadline) {
      answer = await (await api.sidecar.ready()).sendRequest<ChatResult>(CHAT, { sessionId, text: 'Second question.' }).catch(() => null);
      if (!answer) await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(answer, 'no answer within 30 s of the kill');
    assert.equal(answer.stats.rebuilt, true);
  });

  await test('repeated kills in the middle of streamed answers lose no completed turn', async () => {
    const kills = 3;
    let client = await api.sidecar.ready();
    const { sessionId } = await client.sendRequest<{ sessionId: string }>(CREATE, { settings: { maxNewTokens: 400 } });
    let completed = 0;
    let interrupted = 0;
    for (let round = 0; round < kills; round++) {
      client = await api.sidecar.ready();
      let killed = false;
      const listener = client.onNotification(TOKEN, () => {
        if (!killed) {
          killed = true;
          api.sidecar.killForTests();
        }
      });
      const outcome = await client.sendRequest<ChatResult>(CHAT, { sessionId, text: `Question ${round}` }).then(
        () => 'completed',
        () => 'interrupted',
      );
      listener.dispose();
      if (outcome === 'completed') completed++;
      else interrupted++;
      // The interrupted question is reported to the caller; asking again must work.
      const deadline = Date.now() + 30_000;
      let retried: ChatResult | null = null;
      while (!retried && Date.now() < deadline) {
        retried = await (await api.sidecar.ready()).sendRequest<ChatResult>(CHAT, { sessionId, text: `Question ${round}, again` }).catch(() => null);
        if (!retried) await new Promise((r) => setTimeout(r, 500));
      }
      assert.ok(retried, `round ${round}: no answer after the restart`);
      completed++;
    }
    const stats = await (await api.sidecar.ready()).sendRequest<{ turns: unknown[] }>(Methods.sessionStats.method, { sessionId });
    assert.equal(interrupted, kills, 'every kill interrupted an answer and the caller was told');
    assert.equal(stats.turns.length, completed, `turns lost: ${completed - stats.turns.length}`);
  });

  await test('a bad model path fails once, clearly, and is not restarted in a loop', async () => {
    await config.update('modelPath', '/nonexistent/model', vscode.ConfigurationTarget.Global);
    await api.sidecar.stop();
    await assert.rejects(api.sidecar.ready());
    assert.equal(api.sidecar.state, 'failed');
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(api.sidecar.state, 'failed');
    assert.equal(api.sidecar.childForTests, null, 'no sidecar process left running');
  });

  await config.update('modelPath', undefined, vscode.ConfigurationTarget.Global);
  await api.sidecar.stop();
  const file = process.env.VSCODE_HOST_RESULTS_FILE ?? process.env.LOOKM_HOST_RESULTS;
  if (file) writeFileSync(file, JSON.stringify(results, null, 2));
  const failed = results.filter((r) => !r.ok);
  if (failed.length) throw new Error(`${failed.length} of ${results.length} host tests failed:\n${failed.map((f) => `${f.name}: ${f.error}`).join('\n')}`);
}
