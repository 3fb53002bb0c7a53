/**
 * Weights prepared once and mapped by later loads (`PackedWeightsCache`): the decoder laid out for
 * onnxruntime's one-row kernels and read from an entry computes what a load that packs the
 * checkpoint's weights computes; a damaged entry is prepared again; the budget bounds the folder;
 * quantized weights are kept quantized; a folder that cannot be written loads from memory.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
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

/** Same logits to float32 rounding (relative to their size): the unpacked and the packed kernels may sum in another order. */
function assertSameLogits(actual: Float32Array[], expected: Float32Array[]): void {
  assert.equal(actual.length, expected.length);
  for (const [i, row] of actual.entries()) {
    let largest = 0;
    for (let j = 0; j < row.length; j++) largest = Math.max(largest, Math.abs(row[j] - expected[i][j]) / Math.max(1, Math.abs(expected[i][j])));
    assert.ok(largest <= 1e-5, `step ${i}: logits differ by up to ${largest} of their size`);
  }
}

describe('packed weights kept between loads', () => {
  it('writes the decoder laid out for one-row kernels at the first load and maps it at the next, computing what packing at load computes', async () => {
    const dir = newDir();
    const reference = await logitsOf(fixture);
    const first = recording(dir);
    assertSameLogits(await logitsOf(fixture, { packedWeights: first.cache }), reference);
    assert.deepEqual(first.events.map((e) => e.event), ['saving', 'saved']);
    assert.equal(entries(dir).length, 1);
    const entry = join(dir, entries(dir)[0]);
    assert.deepEqual(readdirSync(entry).sort(), ['complete', 'model.onnx', 'weights.bin']);
    // The MLP's up projection is held transposed ([in, out]), the down projection as stored.
    const graph = readFileSync(join(entry, 'model.onnx')).toString('latin1');
    assert.ok(graph.includes('mlp.up_proj.weight.T') && !graph.includes('mlp.down_proj.weight.T'));

    const second = recording(dir);
    assertSameLogits(await logitsOf(fixture, { packedWeights: second.cache }), reference);
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
    assertSameLogits(await logitsOf(model, { packedWeights: cache }), await logitsOf(model));
    assert.deepEqual(events.map((e) => e.event), ['saving', 'saved']);
  });

  it('prepares the weights again when an entry cannot be read, replacing it, and the answer is unchanged', async () => {
    const dir = newDir();
    const reference = await logitsOf(fixture);
    await logitsOf(fixture, { packedWeights: recording(dir).cache });
    const [entry] = entries(dir);
    truncateSync(join(dir, entry, 'weights.bin'), 100);
    const { cache, events } = recording(dir);
    assertSameLogits(await logitsOf(fixture, { packedWeights: cache }), reference);
    assert.deepEqual(events.map((e) => e.event), ['discarded', 'saving', 'saved']);
    assert.match((events[0] as { reason: string }).reason, /could not load it/);
    const again = recording(dir);
    assertSameLogits(await logitsOf(fixture, { packedWeights: again.cache }), reference);
    assert.deepEqual(again.events.map((e) => e.event), ['hit'], 'the replacement entry serves');
  });

  it('loads from memory, with the same answer, when the folder cannot be written', async () => {
    const blocked = join(scratch, 'a-file');
    writeFileSync(blocked, '');
    const { cache, events } = recording(join(blocked, 'packed'));
    assertSameLogits(await logitsOf(fixture, { packedWeights: cache }), await logitsOf(fixture));
    assert.deepEqual(events.map((e) => e.event), ['saving', 'skipped']);
    assert.match((events[1] as { reason: string }).reason, /could not keep the prepared weights/);
  });

  it('keeps the folder within its budget: the least recently used entry goes, and a model too large for it is never saved', async () => {
    const dir = newDir();
    await logitsOf(fixture, { packedWeights: recording(dir).cache });
    const [older] = entries(dir);
    const olderBytes = readdirSync(join(dir, older)).reduce((sum, f) => sum + statSync(join(dir, older, f)).size, 0);
    // The same weights at 8 bits make another, smaller entry; room for one only.
    const { cache, events } = recording(dir, 1.2 * olderBytes);
    await logitsOf(fixture, { packedWeights: cache, weightBits: 8 });
    assert.deepEqual(events.map((e) => e.event), ['saving', 'discarded', 'saved']);
    assert.equal(entries(dir).length, 1);
    assert.notEqual(entries(dir)[0], older);

    const tiny = recording(newDir(), 1000);
    await logitsOf(fixture, { packedWeights: tiny.cache });
    assert.deepEqual(tiny.events.map((e) => e.event), ['skipped']);
    assert.match((tiny.events[0] as { reason: string }).reason, /over the cache's/);
    assert.deepEqual(entries(tiny.cache.dir), []);
  });

  it('keeps 8-bit weights quantized in the entry, so later loads do not quantize, computing what quantizing at load computes', async () => {
    const dir = newDir();
    const reference = await logitsOf(fixture, { weightBits: 8 });
    const first = recording(dir);
    assert.deepEqual(await logitsOf(fixture, { weightBits: 8, packedWeights: first.cache }), reference);
    assert.deepEqual(first.events.map((e) => e.event), ['saving', 'saved']);
    const second = recording(dir);
    assert.deepEqual(await logitsOf(fixture, { weightBits: 8, packedWeights: second.cache }), reference);
    assert.deepEqual(second.events.map((e) => e.event), ['hit']);
  });

  it("removes an older version's entries and a dead load's half-written folder when it writes an entry", async () => {
    const dir = newDir();
    const old = join(dir, '0123456789abcdef0123456789abcdef');
    mkdirSync(old, { recursive: true });
    for (const f of ['model.onnx', 'model.data', 'complete']) writeFileSync(join(old, f), '');
    writeFileSync(join(dir, 'fedcba9876543210fedcba9876543210.refused'), 'packs with MatMulNBits\n');
    // No process has a pid this large (Linux's limit is 2^22).
    mkdirSync(join(dir, `aaaa.partial-${2 ** 30}`));
    const live = join(dir, `bbbb.partial-${process.pid}`);
    mkdirSync(live);
    const { cache, events } = recording(dir);
    await logitsOf(fixture, { packedWeights: cache });
    assert.deepEqual(events.map((e) => e.event), ['saving', 'discarded', 'saved']);
    assert.match((events[1] as { reason: string }).reason, /older version/);
    assert.deepEqual(entries(dir), [basename(live), basename((events[2] as { entry: string }).entry)].sort(), 'a folder being written by a live process stays');
  });

  it('a budget of 0 keeps nothing', async () => {
    const { cache, events } = recording(newDir(), 0);
    await logitsOf(fixture, { packedWeights: cache });
    assert.deepEqual(events, []);
    assert.deepEqual(entries(cache.dir), []);
  });
});
