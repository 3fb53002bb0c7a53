/**
 * The later-turn evaluation items (issue 19, section 3) and the evaluation's settings seam: the
 * content comes in turn 1, the question one to three turns later, only the question is scored,
 * files are about the asked length; unknown session settings are refused by name.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '../../sidecar/src/kv/index.js';
import { exportItems } from '../../tools/eval/laterReport.js';
import { codeFile, laterTurnEmbeddedItems, laterTurnPasskeyItems, laterTurnTextItems, lookupFile } from '../../tools/eval/laterTurns.js';
import { settingsOf } from '../../tools/eval/run.js';

/** A stand-in tokenizer: one token per character (the lengths scale, the logic is the same). */
const chars = (text: string) => text.length;

describe('later-turn evaluation items', () => {
  it('text items: the file in turn 1 only, the question 1-3 turns later and the only scored turn, its answer in the file', () => {
    const items = laterTurnTextItems(8, chars, mulberry32(1), [500, 2000]);
    assert.deepEqual(items.map((i) => i.kind), ['later-lookup', 'later-code', 'later-lookup', 'later-code', 'later-lookup', 'later-code', 'later-lookup', 'later-code']);
    assert.deepEqual(items.map((i) => i.fileTokens), [500, 500, 2000, 2000, 500, 500, 2000, 2000]);
    for (const item of items) {
      const [first, ...rest] = item.turns;
      const question = rest[rest.length - 1];
      assert.ok(rest.length >= 1 && rest.length <= 3, `${item.id}: ${rest.length} turns after the file`);
      assert.equal(first.files.length, 1);
      assert.ok(rest.every((t) => t.files.length === 0 && t.images.length === 0));
      assert.deepEqual(item.turns.map((t) => t.scored !== false), [...item.turns.slice(0, -1).map(() => false), true]);
      const file = first.files[0].text;
      const key = /value of (\S+)\?|get_(\S+)\(\)/.exec(question.text);
      assert.ok(key, question.text);
      const line = item.kind === 'later-code' ? `def get_${key[2]}():\n    return ${question.expected}\n` : `${key[1]} = ${question.expected}\n`;
      assert.ok(`${file}\n`.includes(line), `${item.id}: the asked line is in the file`);
      assert.ok(!first.text.includes(question.expected), 'turn 1 does not give the answer away');
    }
  });

  it('passkey items: one fact line in the middle of a log or README of the asked length, asked for 1-3 turns later', () => {
    const items = laterTurnPasskeyItems(8, chars, mulberry32(7), [500, 2000]);
    assert.deepEqual(items.map((i) => i.kind), ['later-log', 'later-notes', 'later-log', 'later-notes', 'later-log', 'later-notes', 'later-log', 'later-notes']);
    assert.deepEqual(items.map((i) => i.fileTokens), [500, 500, 2000, 2000, 500, 500, 2000, 2000]);
    for (const item of items) {
      const [first, ...rest] = item.turns;
      const question = rest[rest.length - 1];
      assert.ok(rest.length >= 1 && rest.length <= 3, `${item.id}: ${rest.length} turns after the file`);
      assert.deepEqual(item.turns.map((t) => t.scored !== false), [...item.turns.slice(0, -1).map(() => false), true]);
      assert.ok(rest.every((t) => t.files.length === 0 && t.images.length === 0));
      assert.match(question.expected, /^\d{4}$/);
      const lines = first.files[0].text.split('\n');
      assert.ok(lines.join('\n').length >= (item.fileTokens ?? 0), `${item.id}: shorter than asked`);
      const subject = /what is the (.+)\? Answer with the number only\.$/.exec(question.text)?.[1];
      assert.ok(subject, question.text);
      const facts = lines.map((line, i) => [line, i] as const).filter(([line]) => line.includes(`is ${question.expected}.`));
      assert.equal(facts.length, 1, `${item.id}: one fact line`);
      const [line, at] = facts[0];
      assert.ok(line.toLowerCase().includes(subject.toLowerCase()), `${item.id}: the fact line names what is asked (${line})`);
      assert.ok(at > 0 && at < lines.length - 1, `${item.id}: not the first or last line`);
      assert.ok(!first.text.includes(question.expected) && !rest.slice(0, -1).some((t) => t.text.includes(question.expected)), 'no other turn gives the answer away');
    }
  });

  it('files reach the asked length in tokens, no more than one line over; names are distinct', () => {
    for (const make of [lookupFile, codeFile]) {
      const file = make(1000, chars, mulberry32(2));
      const longest = Math.max(...file.text.split('\n').map((l) => l.length + 1)) * 2;
      assert.ok(file.text.length + 1 >= 1000 && file.text.length <= 1000 + longest, `${file.text.length}`);
      assert.equal(new Set(file.lines.map((l) => l.key)).size, file.lines.length);
    }
  });

  it('is reproducible from its seed', async () => {
    const a = laterTurnTextItems(4, chars, mulberry32(3));
    assert.deepEqual(laterTurnTextItems(4, chars, mulberry32(3)), a);
    assert.notDeepEqual(laterTurnTextItems(4, chars, mulberry32(4)), a);
    const e = await laterTurnEmbeddedItems(4, mulberry32(3));
    assert.deepEqual((await laterTurnEmbeddedItems(4, mulberry32(3))).map((i) => i.turns.map((t) => [t.text, t.expected])), e.map((i) => i.turns.map((t) => [t.text, t.expected])));
  });

  it('embedded-model items: images or a file in turn 1, the scored question last, in the phrasing it was trained on', async () => {
    const items = await laterTurnEmbeddedItems(6, mulberry32(5));
    assert.deepEqual(new Set(items.map((i) => i.kind)), new Set(['later-image', 'later-file']));
    for (const item of items) {
      const last = item.turns[item.turns.length - 1];
      assert.notEqual(last.scored, false);
      assert.ok(item.turns.slice(0, -1).every((t) => t.scored === false));
      assert.ok(item.turns.slice(1).every((t) => t.images.length === 0 && t.files.length === 0));
      assert.match(last.text, item.kind === 'later-image' ? /^And which digit is written in image \d\?$/ : /^What is the value of `\w+`\?$/);
    }
  });

  it('exports text items as chat messages (files in front, as the session sends them) and refuses images', () => {
    const items = laterTurnTextItems(2, chars, mulberry32(6), [300]);
    const exported = JSON.parse(exportItems(items, { model: 'm', seed: 6, maxNewTokens: 8 })) as { items: { turns: { content: string; scored: boolean }[] }[] };
    assert.match(exported.items[0].turns[0].content, /^File settings\.ini:\n```\n[\s\S]*\n```\n\nHere is settings\.ini\./);
    assert.deepEqual(exported.items[0].turns.map((t) => t.scored), items[0].turns.map((t) => t.scored !== false));
    assert.throws(() => exportItems(laterTurnsWithImage(), { model: 'm', seed: 0, maxNewTokens: 8 }), /item x has images: only text items can be exported/);
  });

  it('passes extra session settings through, and refuses one this build does not know, by name', () => {
    assert.equal(settingsOf({ policy: 'snapkv', mode: 'improved', budget: 0.1, session: { snapkvWindow: 8 } }, 4).snapkvWindow, 8);
    assert.deepEqual(settingsOf({ policy: 'h2o', mode: 'improved', budget: 0.2 }, 4).budget, { hhRatio: 0.1, recentRatio: 0.1 });
    assert.throws(() => settingsOf({ policy: 'h2o', mode: 'improved', budget: 0.2, session: { coldTierX: 'int8' } }, 4), /evaluation settings \{"coldTierX":"int8"\} are not session settings of this build: .*coldTierX/);
  });
});

function laterTurnsWithImage() {
  return [{ id: 'x', kind: 'later-image' as const, turns: [{ text: 'What colour?', images: [new Uint8Array(1)], files: [], expected: 'red' }] }];
}
