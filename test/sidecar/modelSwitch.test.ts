/**
 * A conversation that outlives a model switch: its saved token ids belong to the model that made
 * them, so under another model (switched in place, or after a restart on another model folder) it
 * is rebuilt from its transcript's text, never refused as corrupt and never losing its transcript.
 * The two fixtures have different vocabularies (416 and 400 tokens): before the fix, the next
 * turn failed with "saved conversation ... is corrupt (token id 400 outside the vocabulary of size 400)".
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Engine } from '../../sidecar/src/engine/engine.js';
import type { Logger } from '../../sidecar/src/log.js';
import { modelFingerprint } from '../../sidecar/src/model/fingerprint.js';
import type { SessionSettings } from '../../sidecar/src/protocol/index.js';
import type { PersistedConversation } from '../../sidecar/src/session/conversation.js';
import { root } from './harness.js';

/** Its chat template's <|im_start|> and <|im_end|> are ids 400 and 401, outside the other's vocabulary. */
const firstModel = join(root, 'test/fixtures/models/tiny-llava-qwen2-hub');
const otherModel = join(root, 'test/fixtures/models/tiny-llava-qwen2');
const OTHER_VOCAB = 400;
const red = readFileSync(join(root, 'test/fixtures/images/red-square.png'));
const settings: SessionSettings = { policy: 'text_prior_pivot_merge', mode: 'improved', budget: { hhRatio: 0.2, recentRatio: 0.2 }, maxNewTokens: 6, temperature: 0, topK: 0, topP: 1, seed: 0 };
const SWITCH_LINE = /made by another model/;

interface Line {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

function recorder(): Logger & { lines: Line[] } {
  const lines: Line[] = [];
  return { lines, log: (level, message, fields = {}) => void lines.push({ level, message, fields }) };
}

describe('a conversation across a model switch', () => {
  let stateDir: string;
  before(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'lookm-switch-'));
  });
  after(() => rmSync(stateDir, { recursive: true, force: true }));

  const saved = (id: string) => JSON.parse(readFileSync(join(stateDir, 'sessions', `${id}.json`), 'utf8')) as PersistedConversation;
  const ids = (data: PersistedConversation) => data.segments.flatMap((segment) => segment.ids);

  /** A conversation of the first model with an image and a file, whose saved ids the second model's vocabulary does not hold. */
  async function firstModelConversation(log: Logger): Promise<{ engine: Engine; sessionId: string }> {
    const engine = new Engine({ threads: 1, stateDir }, log);
    await engine.loadModel({ path: firstModel });
    const { sessionId } = engine.createSession({ settings });
    await engine.chat({ sessionId, text: 'What is in this picture? Describe the colours and shapes.', images: [red], files: [{ name: 'notes.txt', text: 'zebra quartz vortex jukebox' }] });
    await engine.chat({ sessionId, text: 'And what else?', images: [], files: [] });
    const data = saved(sessionId);
    assert.equal(data.model, modelFingerprint(firstModel), 'the conversation records the model that made its token ids');
    assert.ok(ids(data).some((id) => id >= OTHER_VOCAB), 'the test needs ids outside the other model\'s vocabulary');
    return { engine, sessionId };
  }

  it('answers the next question after the model is switched in place, rebuilding from the transcript text', async () => {
    const log = recorder();
    const { engine, sessionId } = await firstModelConversation(log);
    try {
      await engine.loadModel({ path: otherModel });
      const result = await engine.chat({ sessionId, text: 'Tell me more.', images: [], files: [] });
      assert.ok(result.stats.rebuilt, 'the cache was rebuilt');
      assert.ok(result.stats.imagesEncoded + result.stats.imagesReused >= 1, 'the earlier image is read again by the new model');
      const switched = log.lines.filter((l) => SWITCH_LINE.test(l.message));
      assert.equal(switched.length, 1, 'one info line says why');
      assert.equal(switched[0].level, 'info');
      const data = saved(sessionId);
      assert.equal(data.model, modelFingerprint(otherModel));
      assert.equal(data.messages.length, 6, 'the transcript is whole: three questions, three answers');
      assert.match(JSON.stringify(data.messages[0]), /zebra quartz vortex jukebox/, 'the attached file stays in the transcript');
      assert.ok(ids(data).every((id) => id < OTHER_VOCAB), 'every saved id is now the new model\'s');
      assert.equal(data.turns.length, 3);

      // Its ids are now the new model's: the next turn continues on top of the cache as usual.
      const next = await engine.chat({ sessionId, text: 'Thanks.', images: [], files: [] });
      assert.ok(!next.stats.rebuilt);
      assert.equal(log.lines.filter((l) => SWITCH_LINE.test(l.message)).length, 1);
    } finally {
      await engine.close();
    }
  });

  it('answers after a restart on another model, and replays exactly (no text rebuild) on the same model', async () => {
    const first = recorder();
    const { engine, sessionId } = await firstModelConversation(first);
    await engine.close();

    const same = recorder();
    const sameEngine = new Engine({ threads: 1, stateDir }, same);
    try {
      await sameEngine.loadModel({ path: firstModel });
      const replayed = await sameEngine.chat({ sessionId, text: 'Go on.', images: [], files: [] });
      assert.ok(replayed.stats.rebuilt);
      assert.equal(same.lines.filter((l) => SWITCH_LINE.test(l.message)).length, 0, 'the same model replays its own ids');
    } finally {
      await sameEngine.close();
    }

    const other = recorder();
    const otherEngine = new Engine({ threads: 1, stateDir }, other);
    try {
      await otherEngine.loadModel({ path: otherModel });
      const result = await otherEngine.chat({ sessionId, text: 'Tell me more.', images: [], files: [] });
      assert.ok(result.stats.rebuilt);
      assert.equal(other.lines.filter((l) => SWITCH_LINE.test(l.message)).length, 1);
      assert.equal(saved(sessionId).messages.length, 8);
    } finally {
      await otherEngine.close();
    }
  });

  it('rebuilds from text a conversation saved before models were recorded, whose ids another vocabulary made', async () => {
    const { engine, sessionId } = await firstModelConversation(recorder());
    await engine.close();
    const file = join(stateDir, 'sessions', `${sessionId}.json`);
    const legacy: Partial<PersistedConversation> = saved(sessionId);
    delete legacy.model;
    writeFileSync(file, JSON.stringify(legacy));

    const log = recorder();
    const otherEngine = new Engine({ threads: 1, stateDir }, log);
    try {
      await otherEngine.loadModel({ path: otherModel });
      const result = await otherEngine.chat({ sessionId, text: 'Tell me more.', images: [], files: [] });
      assert.ok(result.stats.rebuilt);
      assert.equal(log.lines.filter((l) => SWITCH_LINE.test(l.message)).length, 1);
      assert.equal(saved(sessionId).messages.length, 6);
    } finally {
      await otherEngine.close();
    }
  });
});
