/** The extension's VS Code-free parts: settings vs the manifest, chat formatting, status text. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { statsTable, turnFooter } from '../../extension/src/chat/format.js';
import { SECTION, SETTINGS } from '../../extension/src/settings.js';
import { RestartPolicy } from '../../extension/src/sidecar/restartPolicy.js';
import { statusText } from '../../extension/src/statusText.js';
import { POLICY_NAMES, type ChatResult, type TurnStats } from '../../sidecar/src/protocol/index.js';

const manifest = JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')) as {
  contributes: { configuration: { properties: Record<string, { default: unknown; enum?: string[] }> }; commands: { command: string; category: string }[]; chatParticipants: { id: string }[] };
  activationEvents: string[];
  main: string;
};

const stats: TurnStats = { newTokens: 40, generatedTokens: 8, tokensSeen: 48, keptSlots: [10, 10], kvBytes: 10240, fullKvBytes: 51200, timeToFirstTokenMs: 123.4, prefillMs: 100, compressMs: 2, decodeMs: 50, imagesEncoded: 1, imagesReused: 0, rebuilt: false };

describe('extension manifest', () => {
  it('declares exactly the settings the code reads, with the same defaults', () => {
    const declared = manifest.contributes.configuration.properties;
    assert.deepEqual(Object.keys(declared).sort(), Object.values(SETTINGS).map((s) => `${SECTION}.${s.key}`).sort());
    for (const s of Object.values(SETTINGS)) assert.equal(declared[`${SECTION}.${s.key}`].default, s.default, s.key);
    assert.deepEqual(declared['lookm.kv.policy'].enum, [...POLICY_NAMES]);
  });

  it('puts every command in the LOOK-M category and never activates on "*"', () => {
    assert.ok(manifest.contributes.commands.every((c) => c.category === 'LOOK-M'));
    assert.ok(!manifest.activationEvents.includes('*'));
    assert.equal(manifest.main, './dist/extension.js');
    assert.equal(manifest.contributes.chatParticipants[0].id, 'lookm.chat');
  });
});

describe('chat formatting', () => {
  it('ends an answer with KV kept vs full and the time to first token', () => {
    const footer = turnFooter({ text: 'x', stopReason: 'eos', stats } satisfies ChatResult);
    assert.match(footer, /KV 10\.0 KiB kept of 50\.0 KiB \(20%\) · first token 123 ms · 1 images encoded, 0 reused/);
    assert.match(turnFooter({ text: 'x', stopReason: 'cancelled', stats }), /stopped/);
  });

  it('shows /stats as a table with a row per turn', () => {
    const table = statsTable({ sessionId: 'abcdef123456', settings: { policy: 'h2o', mode: 'improved', budget: {}, maxNewTokens: 8, temperature: 0, topK: 0, topP: 1, seed: 0 }, turns: [stats, stats], kvBytes: 10240, tokensSeen: 48, cached: true });
    assert.equal(table.split('\n').filter((l) => /^\| \d/.test(l)).length, 2);
    assert.match(table, /policy `h2o` \(improved\) · cache resident/);
  });

  it('gives the status bar a text for every state', () => {
    for (const state of ['stopped', 'starting', 'ready', 'failed'] as const) assert.match(statusText(state, 'llama').text, /LOOK-M/);
    assert.match(statusText('failed', null).text, /\$\(error\)/);
  });
});

describe('restart policy', () => {
  it('restarts at once after a healthy run and backs off, then gives up, while it never gets healthy', () => {
    const policy = new RestartPolicy({ baseDelayMs: 100, maxDelayMs: 350, maxConsecutiveCrashes: 4 });
    assert.deepEqual([policy.crashed(), policy.crashed(), policy.crashed(), policy.crashed(), policy.crashed()], [100, 200, 350, 350, null]);
    policy.healthy();
    assert.equal(policy.crashed(), 100);
    assert.equal(policy.crashes, 6);
  });
});
