/** MileBench's JSON format as evaluation items (a small sample written in that format). */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadMileBench, mileBenchPrompt } from '../../tools/eval/milebench.js';

const subset = join(__dirname, '../fixtures/milebench/ToyColours');

describe('MileBench loader', () => {
  it('builds MileBench\'s prompt: instruction, numbered counters, named placeholders, choice list', () => {
    const [first, second] = loadMileBench(subset);
    assert.equal(first.id, 'ToyColours-0');
    assert.equal(first.kind, 'milebench:ToyColours');
    const turn = first.turns[0];
    assert.equal(turn.text, 'Answer about the images. Image 1 is shown first, image 2 second.\n[image 1] [image 2] Which colour is the shape in the second image?\nChoice list: \nA. red\nB. blue\nYour answer is: ');
    assert.equal(turn.expected, 'blue');
    assert.deepEqual(turn.images[1], new Uint8Array(readFileSync(join(subset, 'images/0_b.png'))), 'images in their order');
    assert.equal(second.turns[0].text, 'Say which image is asked about.\nThe table [image 1] shows a square.');
    assert.equal(loadMileBench(join(subset, 'ToyColours.json'), 1).length, 1, 'the JSON path works too, and the limit');
  });

  it('numbers {i} counters in order and leaves no placeholder behind', () => {
    assert.equal(mileBenchPrompt('{i} {i} {i}', '{image#1}{image#2}', 2), '1 2 3\n[image 1][image 2]');
  });

  it('says what is wrong with a file that is not in the format', () => {
    const dir = mkdtempSync(join(tmpdir(), 'milebench-'));
    writeFileSync(join(dir, 'Bad.json'), JSON.stringify({ meta_data: {}, data: [{}] }));
    assert.throws(() => loadMileBench(join(dir, 'Bad.json')), /not in MileBench's format/);
    assert.throws(() => loadMileBench(join(dir, 'Missing')), /no MileBench annotation/);
  });
});
