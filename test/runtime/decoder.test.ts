/** Decoder outputs beyond transformers' (SnapKV's window sums), the sampler, and the runtime's own error codes. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { argmax, createSampler } from '../../sidecar/src/runtime/sampling.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { ErrorCode } from '../../sidecar/src/protocol/index.js';
import { SidecarError } from '../../sidecar/src/protocol/errors.js';
import { groupSums } from './parityFixture.js';

const SNAPKV_WINDOW = 64;

describe('window column sums', () => {
  let decoder: TextDecoder;
  before(async () => {
    decoder = await TextDecoder.create(Checkpoint.open(join(__dirname, '../fixtures/models/tiny-llava-qwen2')), { threads: 1 });
  });
  after(async () => decoder.release());

  it(`sum the attention of the last ${SNAPKV_WINDOW} query rows: all rows minus the earlier ones`, async () => {
    const L = SNAPKV_WINDOW + 16;
    const ids = Array.from({ length: L }, (_, i) => 10 + ((i * 37) % 300));
    const positions = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
    const windowed = await decoder.forward(decoder.embed(ids), positions(L), decoder.emptyPast(), { windowRows: SNAPKV_WINDOW });
    // Every row's sums per query head: a window as long as the chunk.
    const full = await decoder.forward(decoder.embed(ids), positions(L), decoder.emptyPast(), { windowRows: L });
    // Causal attention: the first 16 rows attend exactly as in a 16-token pass.
    const head = await decoder.forward(decoder.embed(ids.slice(0, 16)), positions(16), decoder.emptyPast(), { windowRows: 16 });
    const H = decoder.config.numHeads;
    for (let layer = 0; layer < decoder.config.numLayers; layer++) {
      const window = windowed.windowColsums![layer];
      for (let h = 0; h < H; h++) {
        for (let j = 0; j < L; j++) {
          const early = j < 16 ? head.windowColsums![layer][h * 16 + j] : 0;
          assert.ok(Math.abs(window[h * L + j] - (full.windowColsums![layer][h * L + j] - early)) < 1e-4, `layer ${layer} head ${h} key ${j}`);
        }
      }
    }
  });

  it('sum none of the rows for a window of 0, all of them for a window as long as the chunk, and refuse more', async () => {
    const S = 12;
    const ids = Array.from({ length: S }, (_, i) => 20 + i);
    const positions = Int32Array.from({ length: S }, (_, i) => i);
    const none = await decoder.forward(decoder.embed(ids), positions, decoder.emptyPast());
    assert.equal(none.windowColsums, null);
    const all = await decoder.forward(decoder.embed(ids), positions, decoder.emptyPast(), { windowRows: S });
    assert.deepEqual(Array.from(none.logits), Array.from(all.logits), 'the window does not change the forward pass');
    // The column sums are the window's of every row, summed over each KV head's query heads.
    all.colsums.forEach((colsum, layer) => {
      const perKvHead = groupSums(all.windowColsums![layer], decoder.config.numHeads, decoder.config.numKvHeads);
      assert.equal(colsum.length, perKvHead.length);
      colsum.forEach((x, k) => assert.ok(Math.abs(perKvHead[k] - x) < 1e-5, `layer ${layer} column ${k}`));
    });
    await assert.rejects(decoder.forward(decoder.embed(ids), positions, decoder.emptyPast(), { windowRows: S + 1 }), /windowRows must be an integer in 0\.\.12/);
  });
});

describe('sampler', () => {
  const logits = Float32Array.from([0.1, 2, 1.9, -1, 0.5]);

  it('is greedy at temperature 0', () => {
    assert.equal(createSampler()(logits), 1);
    assert.equal(argmax(logits), 1);
  });

  it('is deterministic for a seed and spreads over the likely tokens', () => {
    const draw = (seed: number) => {
      const sample = createSampler({ temperature: 1, seed });
      return Array.from({ length: 200 }, () => sample(logits));
    };
    assert.deepEqual(draw(3), draw(3));
    const counts = new Map<number, number>();
    for (const t of draw(3)) counts.set(t, (counts.get(t) ?? 0) + 1);
    assert.ok((counts.get(1) ?? 0) > 40 && (counts.get(2) ?? 0) > 40, JSON.stringify([...counts]));
  });

  it('keeps only the top-k, and the nucleus of top-p', () => {
    const topK = createSampler({ temperature: 5, topK: 2, seed: 1 });
    const topP = createSampler({ temperature: 1, topP: 0.4, seed: 1 });
    for (let i = 0; i < 100; i++) {
      assert.ok([1, 2].includes(topK(logits)));
      assert.equal(topP(logits), 1); // token 1 alone holds 43% of the mass
    }
  });

  it('refuses nonsense settings', () => {
    assert.throws(() => createSampler({ temperature: -1 }), /temperature >= 0/);
    assert.throws(() => createSampler({ topP: 0 }), /topP <= 1/);
  });
});

describe('failures with their own codes', () => {
  let runtime: OnnxModelRuntime;
  before(async () => {
    runtime = await OnnxModelRuntime.load(join(__dirname, '../fixtures/models/tiny-llava-llama'), { threads: 1 });
  });
  after(async () => runtime.release());

  const withCode = (code: number) => (error: unknown) => error instanceof SidecarError && error.code === code;

  it('image tokens that do not match the image features: ImageTokenMismatch', () => {
    const ids = [1, runtime.processor.imageTokenId!, 5];
    assert.throws(() => runtime.embedPrompt(ids, new Float32Array(0)), withCode(ErrorCode.ImageTokenMismatch));
  });

  it('a token id outside the vocabulary: TokenOutOfRange', () => {
    assert.throws(() => runtime.decoder.embed([1, runtime.config.text.vocabSize]), withCode(ErrorCode.TokenOutOfRange));
    assert.throws(() => runtime.decoder.embed([-1]), withCode(ErrorCode.TokenOutOfRange));
  });
});
