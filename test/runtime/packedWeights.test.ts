/**
 * onnxruntime's prepacked weights kept between loads (`PackedWeightsCache`): a later load maps
 * them and computes exactly what a load that packs computes; a damaged entry is packed again; the
 * budget bounds the folder; graphs packed by kernels that cannot restore their saved packing are
 * never served from an entry.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { TEXT } from '../../sidecar/src/kv/index.js';
import { OnnxModelRuntime, type LoadOptions } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { PackedWeightsCache, type PackedWeightsEvent } from '../../sidecar/src/runtime/packedWeights.js';

const fixture = join(__dirname, '../fixtures/models/tiny-qwen2-text');
const scratch = mkdtempSync(join(tmpdir(), 'lookm-packed-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => join(scratch, `d${dirs++}`);
const IDS = [5, 17, 42, 8, 99, 3];

/** The last row's logits after `IDS`, and two greedy steps' logits, from a fresh load. */
async function logitsOf(model: string, options: LoadOptions = {}): Promise<Float32Array[]> {
  const runtime = await OnnxModelRuntime.load(model, { threads: 1, ...options });
  try {
    const cache = runtime.createCache();
    const first = await runtime.prefill(cache, runtime.decoder.embed(IDS), Int32Array.from(IDS, (_, i) => i), new Int32Array(IDS.length).fill(TEXT));
    const out = [Float32Array.from(first.logits)];
    for (const [s, token] of [7, 11].entries()) out.push(Float32Array.from(await runtime.decodeStep(cache, token, IDS.length + s)));
    return out;
  } finally {
    await runtime.release();
  }
}

function recording(dir: string, budgetBytes = 2 ** 30): { cache: PackedWeightsCache; events: PackedWeightsEvent[] } {
  const events: PackedWeightsEvent[] = [];
  return { cache: new PackedWeightsCache(dir, budgetBytes, (e) => events.push(e)), events };
}

const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

describe('packed weights kept between loads', () => {
  it('saves an entry at the first load and maps it at the next, computing exactly what packing at load computes', async () => {
    const dir = newDir();
    const reference = await logitsOf(fixture);
    const first = recording(dir);
    assert.deepEqual(await logitsOf(fixture, { packedWeights: first.cache }), reference);
    assert.deepEqual(first.events.map((e) => e.event), ['saving', 'saved']);
    assert.equal(entries(dir).length, 1);
    assert.ok(existsSync(join(dir, entries(dir)[0], 'complete')));

    const second = recording(dir);
    assert.deepEqual(await logitsOf(fixture, { packedWeights: second.cache }), reference);
    assert.deepEqual(second.events.map((e) => e.event), ['hit']);
  });

  it('keys an entry on the weight files: a changed file is packed again, never served from the old entry', async () => {
    const dir = newDir();
    const model = join(scratch, 'changed');
    cpSync(fixture, model, { recursive: true });
    await logitsOf(model, { packedWeights: recording(dir).cache });
    // Same size, new contents: the modification time changes with them.
    const { events, cache } = recording(dir);
    const weights = join(model, 'model.safetensors');
    const bytes = (await import('node:fs')).readFileSync(weights);
    bytes[bytes.length - 1] ^= 0x40; // the last weight's top bits
    await new Promise((resolve) => setTimeout(resolve, 20));
    writeFileSync(weights, bytes);
    assert.deepEqual(await logitsOf(model, { packedWeights: cache }), await logitsOf(model));
    assert.deepEqual(events.map((e) => e.event), ['saving', 'saved']);
  });

  it('packs again when an entry cannot be read, replacing it, and the answer is unchanged', async () => {
    const dir = newDir();
    const reference = await logitsOf(fixture);
    await logitsOf(fixture, { packedWeights: recording(dir).cache });
    const [entry] = entries(dir);
    truncateSync(join(dir, entry, 'model.data'), 100);
    const { cache, events } = recording(dir);
    assert.deepEqual(await logitsOf(fixture, { packedWeights: cache }), reference);
    assert.deepEqual(events.map((e) => e.event), ['discarded', 'saving', 'saved']);
    assert.match((events[0] as { reason: string }).reason, /could not load it/);
    assert.deepEqual(await logitsOf(fixture, { packedWeights: recording(dir).cache }), reference, 'the replacement entry serves');
  });

  it('keeps the folder within its budget: the least recently used entry goes, and a model too large for it is never saved', async () => {
    const dir = newDir();
    await logitsOf(fixture, { packedWeights: recording(dir).cache });
    const [older] = entries(dir);
    // The same weights handed over in a buffer make another graph, so another entry; room for one only.
    const { cache, events } = recording(dir, 1.5 * 2 ** 20);
    await logitsOf(fixture, { packedWeights: cache, weightsFromFiles: false });
    assert.deepEqual(events.map((e) => e.event), ['saving', 'discarded', 'saved']);
    assert.equal(entries(dir).length, 1);
    assert.notEqual(entries(dir)[0], older);

    const tiny = recording(newDir(), 1000);
    await logitsOf(fixture, { packedWeights: tiny.cache });
    assert.deepEqual(tiny.events.map((e) => e.event), ['skipped']);
    assert.match((tiny.events[0] as { reason: string }).reason, /over the cache's/);
    assert.deepEqual(entries(tiny.cache.dir), []);
  });

  it('never serves 8-bit weights from an entry (onnxruntime 1.30 restored MatMulNBits packing as NaN), and stops trying', async () => {
    const dir = newDir();
    const reference = await logitsOf(fixture, { weightBits: 8 });
    const first = recording(dir);
    assert.deepEqual(await logitsOf(fixture, { weightBits: 8, packedWeights: first.cache }), reference);
    assert.deepEqual(first.events.map((e) => e.event), ['saving', 'skipped']);
    assert.match((first.events[1] as { reason: string }).reason, /MatMulNBits/);
    const second = recording(dir);
    assert.deepEqual(await logitsOf(fixture, { weightBits: 8, packedWeights: second.cache }), reference);
    assert.deepEqual(second.events, [], 'packed at load, with no second attempt to save');
    assert.ok(entries(dir).every((name) => name.endsWith('.refused')));
  });

  it('a budget of 0 keeps nothing', async () => {
    const { cache, events } = recording(newDir(), 0);
    await logitsOf(fixture, { packedWeights: cache });
    assert.deepEqual(events, []);
    assert.deepEqual(entries(cache.dir), []);
  });
});
