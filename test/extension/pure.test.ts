/** The extension's VS Code-free parts: settings vs the manifest, chat formatting, status text. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, mock } from 'node:test';
import { AnswerLog } from '../../extension/src/answers/answerLog.js';
import { Coalescer } from '../../extension/src/answers/coalesce.js';
import { kvPhrase, readingProgress, statsSummary, turnFooter } from '../../extension/src/chat/format.js';
import { contextTooLongLine, contextTooLongText, isContextTooLong, TOY_MODEL_NOTICE, ToyModelNotice } from '../../extension/src/chat/notices.js';
import { localModelInformation } from '../../extension/src/lm/modelInformation.js';
import { cacheViewModel } from '../../extension/src/cacheView/viewModel.js';
import { previousSession } from '../../extension/src/chat/history.js';
import { imageFromDataUrl } from '../../extension/src/clipboard/dataUrl.js';
import { ConversationIndex, type PlainMessage } from '../../extension/src/lm/conversations.js';
import { modelFolderInfo, readModelFolder } from '../../extension/src/lm/modelFolder.js';
import { RESTART_KEYS, SECTION, SETTINGS, sessionSettings, sidecarArgs, type Settings } from '../../extension/src/settings.js';
import { readableLogLine } from '../../extension/src/sidecar/logLine.js';
import { RestartPolicy } from '../../extension/src/sidecar/restartPolicy.js';
import { modelLabel, statusText } from '../../extension/src/statusText.js';
import { DEFAULT_POLICY, POLICY_DESCRIPTIONS, POLICY_NAMES, SessionSettings, type CacheMap, type ChatResult, type TurnStats } from '../../sidecar/src/protocol/index.js';

const manifest = JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')) as {
  contributes: { configuration: { properties: Record<string, { default: unknown; enum?: string[]; enumDescriptions?: string[]; description?: string; markdownDescription?: string }> }; commands: { command: string; category: string }[]; chatParticipants: { id: string }[] };
  activationEvents: string[];
  main: string;
};

const stats: TurnStats = { newTokens: 40, generatedTokens: 8, tokensSeen: 48, keptSlots: [10, 10], kvBytes: 12288, keptKvBytes: 10240, fullKvBytes: 51200, timeToFirstTokenMs: 123.4, prefillMs: 100, compressMs: 2, decodeMs: 50, imagesEncoded: 1, imagesReused: 0, rebuilt: false };

describe('extension manifest', () => {
  it('declares exactly the settings the code reads, with the same defaults', () => {
    const declared = manifest.contributes.configuration.properties;
    assert.deepEqual(Object.keys(declared).sort(), Object.values(SETTINGS).map((s) => `${SECTION}.${s.key}`).sort());
    for (const s of Object.values(SETTINGS)) assert.equal(declared[`${SECTION}.${s.key}`].default, s.default, s.key);
    assert.deepEqual(declared['lookm.kv.policy'].enum, [...POLICY_NAMES]);
  });

  it("offers exactly the protocol's policies, each with its description, LOOK-M's the default", () => {
    const policy = manifest.contributes.configuration.properties['lookm.kv.policy'];
    assert.deepEqual(policy.enum, [...POLICY_NAMES], 'package.json cannot import POLICY_NAMES: keep its enum in step');
    assert.deepEqual(policy.enumDescriptions, POLICY_NAMES.map((name) => POLICY_DESCRIPTIONS[name]), 'one description per policy, in the same order');
    assert.equal(policy.default, DEFAULT_POLICY);
    assert.match(POLICY_DESCRIPTIONS[DEFAULT_POLICY], /recommended/);
  });

  it('says which settings apply after a restart, and only those offer one', () => {
    const declared = manifest.contributes.configuration.properties;
    for (const [key, p] of Object.entries(declared)) {
      assert.equal(/after a restart/.test(p.markdownDescription ?? p.description ?? ''), RESTART_KEYS.includes(key), key);
    }
  });

  it('turns the settings into session settings the sidecar accepts, in both modes', () => {
    const defaults = Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, s.default])) as never;
    const improved = SessionSettings.parse(sessionSettings({ ...(defaults as object), maxSlots: 64 } as never));
    assert.deepEqual(improved.budget, { hhRatio: 0.1, recentRatio: 0.1, maxSlots: 64 });
    const reference = SessionSettings.parse(sessionSettings({ ...(defaults as object), maxSlots: 64, mode: 'reference' } as never));
    assert.equal(reference.budget.maxSlots, undefined, 'the reference takes ratios only');
  });

  it('offers LOOK-M: Open Chat and activates after start-up, so the chat lists the local model before the first question', () => {
    assert.ok(manifest.contributes.commands.some((c) => c.command === 'lookm.openChat'));
    assert.ok(manifest.activationEvents.includes('onStartupFinished'));
  });

  it('asks for the cold tier only when it is on, never in reference mode (which refuses it) nor off the CPU', () => {
    const defaults = Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, s.default])) as never;
    // On by default (int8): the later-turn evaluation (bench/results/eval-later-*) supports it.
    assert.equal(SessionSettings.parse(sessionSettings(defaults)).coldTier, 'int8', 'int8 by default');
    assert.equal(SessionSettings.parse(sessionSettings({ ...(defaults as object), coldTier: 'off' } as never)).coldTier, undefined);
    for (const executionProvider of ['webgpu', 'auto', 'cuda']) assert.equal(SessionSettings.parse(sessionSettings({ ...(defaults as object), executionProvider } as never)).coldTier, undefined, executionProvider);
    const on = SessionSettings.parse(sessionSettings({ ...(defaults as object), coldTier: 'int4', recallSpan: 8, recallBudget: 24 } as never));
    assert.deepEqual([on.coldTier, on.recallSpan, on.recallBudget], ['int4', 8, 24]);
    const reference = SessionSettings.parse(sessionSettings({ ...(defaults as object), coldTier: 'int8', mode: 'reference' } as never));
    assert.equal(reference.coldTier, undefined);
    const args = sidecarArgs({ ...(defaults as object), coldBudgetMb: 256 } as never, '/state');
    assert.equal(args[args.indexOf('--cold-budget-mb') + 1], '256');
  });

  it('puts every command in the LOOK-M category and never activates on "*"', () => {
    assert.ok(manifest.contributes.commands.every((c) => c.category === 'LOOK-M'));
    assert.ok(!manifest.activationEvents.includes('*'));
    assert.equal(manifest.main, './dist/extension.js');
    assert.equal(manifest.contributes.chatParticipants[0].id, 'lookm.chat');
  });
});

describe('settings order', () => {
  it('lists Model Path first and gives every setting its place', () => {
    const properties = manifest.contributes.configuration.properties as Record<string, { order?: number }>;
    const orders = Object.values(properties).map((p) => p.order);
    assert.ok(orders.every((o) => Number.isInteger(o)), 'every setting has an order');
    assert.equal(new Set(orders).size, orders.length, 'no two share a place');
    assert.equal(properties['lookm.modelPath'].order, Math.min(...(orders as number[])));
  });
});

describe('sidecar command line', () => {
  it('lets the sidecar read the model folder itself, not its parent', () => {
    const defaults = Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, s.default])) as Settings;
    const args = sidecarArgs({ ...defaults, modelPath: '/home/me/llava-x' }, '/state');
    assert.equal(args[args.indexOf('--allow-dir') + 1], '/home/me/llava-x');
    assert.equal(args[args.indexOf('--model') + 1], '/home/me/llava-x');
  });
});

describe('sidecar log lines', () => {
  it('shows a JSON line at its level, without its timestamp, fields as key=value, stacks last', () => {
    const line = JSON.stringify({ time: '2026-12-06T21:11:17.290Z', level: 'warn', message: 'upgrade refused', status: '401 Unauthorized', remote: '127.0.0.1', ms: 12.345, count: 3 });
    assert.deepEqual(readableLogLine(line), { level: 'warn', text: 'upgrade refused status="401 Unauthorized" remote=127.0.0.1 ms=12.3 count=3' });
    const failed = readableLogLine(JSON.stringify({ time: 't', level: 'error', message: 'handler failed', method: 'session/chat', error: 'Error: boom\n    at x' }));
    assert.equal(failed.level, 'error');
    assert.equal(failed.text, 'handler failed method=session/chat\nerror: Error: boom\n    at x');
    assert.doesNotMatch(readableLogLine(line).text, /2026-12-06/);
  });

  it('passes anything else through as info', () => {
    assert.deepEqual(readableLogLine('plain text'), { level: 'info', text: 'plain text' });
    assert.deepEqual(readableLogLine('[1,2]'), { level: 'info', text: '[1,2]' });
    assert.deepEqual(readableLogLine('{"level":"loud","message":"x"}'), { level: 'info', text: '{"level":"loud","message":"x"}' });
  });
});

describe('chat formatting', () => {
  it('ends an answer with KV kept vs full, the memory allocated and the time to first token', () => {
    const footer = turnFooter({ text: 'x', stopReason: 'eos', stats } satisfies ChatResult);
    assert.match(footer, /\*KV 10\.0 KiB kept of 50\.0 KiB \(20%\) · 12\.0 KiB allocated · first token 123 ms · 1 image encoded\*/);
    assert.match(turnFooter({ text: 'x', stopReason: 'cancelled', stats }), /stopped/);
    assert.match(turnFooter({ text: 'x', stopReason: 'eos', stats: { ...stats, imagesEncoded: 0, imagesReused: 2 } }), /0 images encoded, 2 reused/);
  });

  it('never shows the allocated bytes as a share of the full cache (a short answer\'s headroom made it 125%)', () => {
    // The embedded model's short answer: 51.0 KiB of slots, all kept (full policy), 63.8 KiB allocated with the regrowth headroom.
    const short: TurnStats = { ...stats, kvBytes: 65_331, keptKvBytes: 52_224, fullKvBytes: 52_224 };
    const footer = turnFooter({ text: 'x', stopReason: 'eos', stats: short });
    assert.match(footer, /KV 51\.0 KiB kept of 51\.0 KiB \(100%\) · 63\.8 KiB allocated ·/);
    for (const text of [footer, statsSummary({ sessionId: 'abcdef123456', settings: SessionSettings.parse({}), turns: [short], kvBytes: 65_331, tokensSeen: 48, cached: true })]) {
      const shares = [...text.matchAll(/\((\d+)%\)/g)].map((m) => Number(m[1]));
      assert.ok(shares.length > 0 && shares.every((share) => share <= 100), text);
      assert.doesNotMatch(text, /held of/);
    }
    const compressed = kvPhrase({ kvBytes: 30_000, keptKvBytes: 20_480, fullKvBytes: 102_400 });
    assert.equal(compressed, 'KV 20.0 KiB kept of 100.0 KiB (20%) · 29.3 KiB allocated');
  });

  it('shows a turn saved before kept bytes were reported with its allocated bytes alone', () => {
    const old: TurnStats = { ...stats };
    delete old.keptKvBytes;
    assert.equal(kvPhrase(old), 'KV 12.0 KiB allocated');
    assert.match(turnFooter({ text: 'x', stopReason: 'eos', stats: old }), /\*KV 12\.0 KiB allocated · first token/);
  });

  it('says nothing about images on a turn that showed none', () => {
    const footer = turnFooter({ text: 'x', stopReason: 'eos', stats: { ...stats, imagesEncoded: 0, imagesReused: 0 } });
    assert.doesNotMatch(footer, /image/);
  });

  it('shows /stats as one line per turn, the latest eight', () => {
    const settings = { policy: 'h2o' as const, mode: 'improved' as const, budget: {}, maxNewTokens: 8, temperature: 0, topK: 0, topP: 1, seed: 0 };
    const summary = statsSummary({ sessionId: 'abcdef123456', settings, turns: [stats, stats], kvBytes: 10240, tokensSeen: 48, cached: true });
    assert.equal(summary.split('\n').filter((l) => l.startsWith('- ')).length, 2);
    assert.match(summary, /policy `h2o` \(improved\) · cache resident/);
    assert.doesNotMatch(summary, /\|/, 'no table in the chat panel');
    const long = statsSummary({ sessionId: 'abcdef123456', settings, turns: Array.from({ length: 12 }, () => stats), kvBytes: 10240, tokensSeen: 48, cached: true });
    assert.equal(long.split('\n').filter((l) => l.startsWith('- ')).length, 8);
    assert.match(long, /4 earlier turns not shown/);
    assert.match(long, /- \*\*12\*\*/);
  });

  it('gives the status bar a text for every state', () => {
    for (const state of ['stopped', 'starting', 'ready', 'failed'] as const) assert.match(statusText(state, 'llama').text, /LOOK-M/);
    assert.match(statusText('failed', null).text, /\$\(error\)/);
    assert.equal(statusText('ready', 'm', { busy: false, kvBytes: 3 * 2 ** 20, kvBudgetBytes: 2 ** 31 }).text, '$(database) LOOK-M 3.0 MiB / 2048.0 MiB');
    assert.match(statusText('ready', 'm', { busy: true, kvBytes: null, kvBudgetBytes: null }).text, /^\$\(sync~spin\)/);
    const onGpu = modelLabel({ textModel: 'llama', path: '/m', device: { provider: 'webgpu', adapter: 'WebGPU on Vulkan', reason: 'auto: a WebGPU adapter answered', kvOnDevice: true } });
    assert.equal(onGpu, 'llama on WebGPU on Vulkan (KV cache in GPU memory), /m');
    assert.match(statusText('ready', onGpu).tooltip, /WebGPU on Vulkan/);
    assert.equal(modelLabel({ textModel: 'llama', path: '/m' }), 'llama, /m');
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

describe('clipboard text', () => {
  it('takes a base64 image data URL and nothing else', () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
    assert.deepEqual(imageFromDataUrl(`data:image/png;base64,${png.toString('base64')}`), new Uint8Array(png));
    assert.equal(imageFromDataUrl('data:text/plain;base64,aGVsbG8='), null);
    assert.equal(imageFromDataUrl('/some/path.png'), null);
  });
});

describe('cache view model', () => {
  const map: CacheMap = {
    sessionId: 'abcdef0123',
    settings: SessionSettings.parse({}),
    cached: true,
    tokensSeen: 20,
    kvBytes: 600,
    keptKvBytes: 400,
    fullKvBytes: 2000,
    kvBudgetBytes: 4000,
    keptPerHead: 4,
    bucket: 1,
    columnModality: Array.from({ length: 20 }, (_, p) => (p >= 4 && p < 8 ? 0 : -1)),
    layers: [{ heads: [[1, 0], [0, 1]] }],
    images: [{ index: 0, firstPosition: 4, tokens: 4, grid: [2, 2], kept: [0.75, 0.5, 0.25, 0.5], merged: [0, 0, 0.75, 0] }],
    turns: [stats],
  };

  it('states tokens and bytes kept, and the share of image tokens kept', () => {
    const text = cacheViewModel(map).figures.map((f) => `${f.label}: ${f.value}`).join('\n');
    assert.match(text, /Tokens seen \/ kept per head: 20 \/ 4 \(20%\)/);
    assert.match(text, /KV bytes kept \/ full: 0\.4 KiB \/ 2\.0 KiB \(20%\)/);
    assert.match(text, /KV memory allocated: 0\.6 KiB/, 'allocated memory is its own figure, not a share of full');
    assert.match(cacheViewModel({ ...map, keptKvBytes: undefined }).figures[1].value, /^– \/ 2\.0 KiB$/);
    assert.equal(cacheViewModel(map).turns[0].kept, '10.0 KiB / 50.0 KiB (20%)');
    assert.match(text, /Image tokens kept: 50% of 4/);
    assert.doesNotMatch(text, /evicted to the transcript/);
    assert.match(cacheViewModel({ ...map, cached: false }).figures.at(-1)!.value, /rebuilt on the next turn/);
  });

  it('passes the heat-maps on with their grid, one row per turn', () => {
    const model = cacheViewModel(map);
    assert.deepEqual([model.images[0].rows, model.images[0].cols], [2, 2]);
    assert.deepEqual(model.images[0].merged, [0, 0, 0.75, 0]);
    assert.equal(model.turns.length, 1);
  });

  it('labels the frames of a tiled image (SmolVLM): tiles, then the global image', () => {
    const frame = (n: number) => ({ index: 1, firstPosition: 10 + 5 * n, tokens: 4, grid: [2, 2], frame: n, frames: 3, kept: [1, 1, 1, 1], merged: [0, 0, 0, 0] });
    const model = cacheViewModel({ ...map, images: [...map.images, frame(0), frame(1), frame(2)] });
    assert.deepEqual(
      model.images.map((i) => i.label),
      ['Image 1 (4 tokens)', 'Image 2, tile 1 of 2 (4 tokens)', 'Image 2, tile 2 of 2 (4 tokens)', 'Image 2, global image (4 tokens)'],
    );
  });

  it('labels the parts an architecture names (LLaVA-NeXT: the base image, then the unpadded tiles with row ends)', () => {
    const part = (n: number, name: string, grid: number[]) => ({ index: 1, firstPosition: 10 + 4 * n, tokens: grid[0] * grid[1], grid, frame: n, frames: 2, part: name, kept: new Array<number>(grid[0] * grid[1]).fill(1), merged: new Array<number>(grid[0] * grid[1]).fill(0) });
    const model = cacheViewModel({ ...map, images: [part(0, 'base image', [2, 2]), part(1, '1 x 2 tiles, unpadded; last column: row ends', [2, 5])] });
    assert.deepEqual(
      model.images.map((i) => [i.label, i.rows, i.cols]),
      [
        ['Image 2, base image (4 tokens)', 2, 2],
        ['Image 2, 1 x 2 tiles, unpadded; last column: row ends (10 tokens)', 2, 5],
      ],
    );
  });
});

describe('language model conversations', () => {
  const user = (text: string, images: Uint8Array[] = []): PlainMessage => ({ role: 'user', text, images });
  const assistant = (text: string): PlainMessage => ({ role: 'assistant', text, images: [] });

  it('continues the session a conversation of ours left, with only the new message', () => {
    const index = new ConversationIndex();
    const first = [user('What is this?', [new Uint8Array([1, 2])])];
    assert.deepEqual(index.plan(first), { sessionId: undefined, text: 'What is this?', images: first[0].images });
    index.answered(first, 'A red square.', 's1');
    assert.deepEqual(index.plan([...first, assistant('A red square.'), user('And its size?')]), { sessionId: 's1', text: 'And its size?', images: [] });
  });

  it('folds any other history into the first turn of a new session, images included', () => {
    const index = new ConversationIndex();
    index.answered([user('Hi')], 'Hello.', 's1');
    const image = new Uint8Array([9]);
    const planned = index.plan([user('Hi', [image]), assistant('Something else.'), user('Go on')]);
    assert.equal(planned.sessionId, undefined, 'an edited history is not ours');
    assert.match(planned.text, /User: Hi\nAssistant: Something else\.\n\nGo on$/);
    assert.deepEqual(planned.images, [image]);
    assert.throws(() => index.plan([user('x'), assistant('y')]), /last message/);
  });
});

describe('chat history to session', () => {
  const ours = (sessionId?: string) => ({ participant: 'lookm.chat', result: { metadata: sessionId ? { sessionId } : {} } });
  it('continues the session of our latest answer, skipping requests and other participants', () => {
    assert.equal(previousSession([ours('a'), { participant: 'lookm.chat' }, ours('b'), { participant: 'other', result: { metadata: { sessionId: 'x' } } }, { participant: 'lookm.chat' }]), 'b');
  });
  it('starts over after /clear (an answer naming no session) and in a new chat', () => {
    assert.equal(previousSession([ours('a'), ours()]), undefined);
    assert.equal(previousSession([]), undefined);
  });
});

describe('language model conversations, fresh', () => {
  it('folds the history when asked to ignore a known session', () => {
    const index = new ConversationIndex();
    const first: PlainMessage[] = [{ role: 'user', text: 'Hi', images: [] }];
    index.answered(first, 'Hello.', 's1');
    const next: PlainMessage[] = [...first, { role: 'assistant', text: 'Hello.', images: [] }, { role: 'user', text: 'More', images: [] }];
    assert.equal(index.plan(next).sessionId, 's1');
    const fresh = index.plan(next, true);
    assert.equal(fresh.sessionId, undefined);
    assert.match(fresh.text, /User: Hi\nAssistant: Hello\.\n\nMore$/);
  });
});

describe('model picker info from config.json', () => {
  it('a LLaVA model reads images, its context under text_config; a text-only causal LM does not, its context at the top level', () => {
    const fixture = (name: string) => readModelFolder(join(__dirname, '../fixtures/models', name));
    assert.deepEqual(fixture('tiny-llava-llama'), { contextLength: 512, imageInput: true });
    for (const name of ['tiny-llama-text', 'tiny-mistral-text', 'tiny-qwen2-text']) assert.deepEqual(fixture(name), { contextLength: 2048, imageInput: false }, name);
    assert.deepEqual(modelFolderInfo({ architectures: ['LlamaForCausalLM'] }), { contextLength: 0, imageInput: false });
    assert.deepEqual(readModelFolder('/nonexistent'), { contextLength: 0, imageInput: true }, 'unreadable: unknown length; the sidecar decides');
  });
});

describe('reading progress and the answer view', () => {
  it('reads progress as tokens read of the total, with thousands separated', () => {
    assert.equal(readingProgress(1024, 2700), 'Reading… 1,024 / 2,700 tokens');
    assert.equal(readingProgress(0, 12), 'Reading… 0 / 12 tokens');
  });

  it('the sidecar is told the prefill chunk', () => {
    const defaults = Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, s.default])) as Settings;
    const args = sidecarArgs({ ...defaults, prefillChunk: 64 }, '/state');
    assert.equal(args[args.indexOf('--prefill-chunk') + 1], '64');
  });

  it('keeps every answer in one text, newest first, each with its question, text and status', () => {
    const log = new AnswerLog(3);
    const first = log.begin('Explain red.png', 'Explain this image.');
    first.text = 'A red square.';
    const second = log.begin('notes.md', 'What is line 2?\nAnd line 3?');
    second.status = 'Reading… 64 / 300 tokens';
    const text = log.render();
    assert.ok(text.startsWith('# LOOK-M answers'));
    assert.ok(text.indexOf('## notes.md') < text.indexOf('## Explain red.png'), 'newest first');
    assert.match(text, /> What is line 2\?\n> And line 3\?/);
    assert.match(text, /\*Reading… 64 \/ 300 tokens\*/);
    assert.match(text, /## Explain red.png\n\n> Explain this image.\n\nA red square.\n/);
    second.status = '';
    assert.doesNotMatch(log.render(), /Reading…/);
    log.begin('c', 'q');
    log.begin('d', 'q');
    assert.equal(log.size, 3, 'the oldest beyond the limit are dropped');
    assert.doesNotMatch(log.render(), /Explain red.png/);
  });

  it('refreshes once per interval however many tokens arrive, and at once when flushed', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let fired = 0;
      const refresh = new Coalescer(() => fired++, 75);
      for (let i = 0; i < 100; i++) refresh.request();
      assert.equal(fired, 0);
      mock.timers.tick(75);
      assert.equal(fired, 1);
      refresh.request();
      refresh.flush();
      assert.equal(fired, 2);
      mock.timers.tick(200);
      assert.equal(fired, 2, 'a flush drops the pending refresh');
    } finally {
      mock.timers.reset();
    }
  });
});

describe('the model in the chat picker', () => {
  const source = { modelPath: '/ext/sidecar/model', embedded: true, policy: 'text_prior_pivot_merge', maxNewTokens: 512 };

  it('is user-selectable and declares tool calling: VS Code 1.117 lists nothing else in the picker (agent mode), and a participant runs only with a model', () => {
    const info = localModelInformation(source, { contextLength: 2048, imageInput: true });
    assert.equal(info.isUserSelectable, true);
    assert.equal(info.capabilities.toolCalling, true);
    assert.equal(info.capabilities.imageInput, true);
    assert.equal(info.id, 'lookm-local');
    assert.equal(info.family, 'lookm');
    assert.equal(info.maxInputTokens, 2048);
    assert.equal(info.maxOutputTokens, 512);
    assert.equal(info.name, 'LOOK-M local (embedded tiny VLM)');
  });

  it('names a model folder, and is listed (with what to do) when there is none', () => {
    assert.equal(localModelInformation({ ...source, modelPath: '/models/llava-1.5-7b-hf', embedded: false }, { contextLength: 0, imageInput: false }).name, 'LOOK-M local (llava-1.5-7b-hf)');
    const none = localModelInformation({ ...source, modelPath: '', embedded: false }, { contextLength: 0, imageInput: true });
    assert.equal(none.name, 'LOOK-M local (no model selected)');
    assert.match(none.tooltip, /Select Model…/);
    assert.equal(none.maxInputTokens, 4096, 'unknown length: a generous guess, the sidecar refuses what does not fit');
  });
});

describe('chat notices', () => {
  const refusal = "Session/chat: the message has 14315 tokens with its chat markup and images, but the model's context is 2048 tokens, so 2047 fit (one is kept for the answer): send a shorter message with fewer images or files";

  it('says what a context-length refusal means and what to do, with readable numbers and without the method name', () => {
    const text = contextTooLongText(refusal);
    assert.match(text, /^\*\*Too long for this model; nothing of this question was read\.\*\* The message has 14,315 tokens with its chat markup and images, but the model's context is 2,048 tokens, so 2,047 fit \(one is kept for the answer\)\./);
    assert.match(text, /ask about a shorter file or a selection of it, or use a model with a longer context/);
    assert.doesNotMatch(text, /Session\/chat|start a new conversation/);
    assert.match(contextTooLongLine(refusal), /^Too long for this model: the message has 14,315 tokens .* 2,048 tokens, so 2,047 fit \(one is kept for the answer\)\. Ask about a shorter file or a selection/);
  });

  it('advises a new conversation when the conversation fills the context', () => {
    const text = contextTooLongText("the message has 300 tokens with its chat markup and images, but the conversation already holds 400 of the model's 512-token context, so 111 fit: start a new conversation, or send a shorter message with fewer images or files");
    assert.match(text, /The message has 300 tokens [^]*already holds 400 of the model's 512-token context, so 111 fit\./);
    assert.match(text, /To ask anyway: start a new conversation, or ask about a shorter file/);
  });

  it('keeps a refusal of another wording whole', () => {
    assert.match(contextTooLongText('too long'), /\*\* Too long\.\n/);
  });

  it('tells the refusal from other failures by its protocol code', () => {
    assert.ok(isContextTooLong({ code: -32015, message: refusal }));
    assert.ok(!isContextTooLong({ code: -32014, message: 'bad image' }));
    assert.ok(!isContextTooLong(new Error('crash')));
    assert.ok(!isContextTooLong(undefined));
  });

  it('says the toy-model notice once per installation, only for the shipped model, and points to a real one', () => {
    const stored = new Map<string, unknown>();
    const memory = { get: <T>(key: string) => stored.get(key) as T | undefined, update: (key: string, value: unknown) => Promise.resolve(void stored.set(key, value)) };
    const notice = new ToyModelNotice(memory);
    assert.equal(notice.take(false), false, 'another model: nothing said, nothing used up');
    assert.equal(notice.take(true), true);
    assert.equal(notice.take(true), false);
    assert.equal(new ToyModelNotice(memory).take(true), false, 'remembered across windows');
    assert.match(TOY_MODEL_NOTICE, /tiny demo model[^]*only knows the shapes of its training data[^]*LOOK-M: Download Model…/);
  });
});
