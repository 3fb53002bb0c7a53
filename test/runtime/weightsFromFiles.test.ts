/**
 * onnxruntime reads float32 weights stored as such straight from the checkpoint's files
 * (`SessionOptions.weightsFromFiles`): the same results as handing it our buffer, without the
 * buffer in the load's peak; checkpoints it cannot read that way (half precision, quantized
 * weights) still go through the buffer.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { WeightPool } from '../../sidecar/src/model/graph/weightPool.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { writeScaled, writeTinyAs } from './halfCheckpoints.js';

const scratch = mkdtempSync(join(tmpdir(), 'lookm-files-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => join(scratch, `m${dirs++}`);

async function logits(dir: string, weightsFromFiles: boolean): Promise<Float32Array> {
  const decoder = await TextDecoder.create(Checkpoint.open(dir), { threads: 1, weightsFromFiles });
  try {
    const ids = Array.from({ length: 12 }, (_, i) => 4 + ((i * 37) % 400));
    return (await decoder.forward(decoder.embed(ids), Int32Array.from(ids, (_, i) => i), decoder.emptyPast(), { allLogits: true })).logits;
  } finally {
    await decoder.release();
  }
}

describe('weights read by onnxruntime from the checkpoint files', () => {
  it('an F32 checkpoint: every tensor read from its file, the logits of the buffer exactly', async () => {
    const dir = newDir();
    writeTinyAs(dir, 'F32');
    const ranges = (() => {
      const pool = new WeightPool(Checkpoint.open(dir));
      const decoder = Checkpoint.open(dir);
      pool.use('text.embed_tokens.weight', [decoder.config.text.vocabSize, decoder.config.text.hiddenSize]);
      return pool.fileRanges();
    })();
    assert.equal(ranges?.ranges.get('text.embed_tokens.weight')?.location, 'model.safetensors');
    const [a, b] = [await logits(dir, true), await logits(dir, false)];
    assert.ok(a.length > 0 && a.every((x, i) => Object.is(x, b[i])), 'the same logits read from the files as from the buffer');
  });

  it('files linked into another folder (the Hugging Face cache\'s blobs): read where the links lead', async () => {
    const [dir, blobs] = [newDir(), newDir()];
    writeTinyAs(dir, 'F32');
    const copy = newDir();
    cpSync(dir, copy, { recursive: true });
    mkdirSync(blobs);
    renameSync(join(dir, 'model.safetensors'), join(blobs, 'a1b2c3'));
    symlinkSync(join(blobs, 'a1b2c3'), join(dir, 'model.safetensors'));
    const pool = new WeightPool(Checkpoint.open(dir));
    pool.use('text.norm.weight', [Checkpoint.open(dir).config.text.hiddenSize]);
    assert.deepEqual(pool.fileRanges()?.folder, blobs);
    assert.deepEqual(pool.fileRanges()?.ranges.get('text.norm.weight')?.location, 'a1b2c3');
    const [linked, plain] = [await logits(dir, true), await logits(copy, false)];
    assert.ok(linked.every((x, i) => Object.is(x, plain[i])), 'the same logits as the unlinked copy through the buffer');
  });

  it('half-precision and quantized weights: no file ranges, the buffer as before', () => {
    const dir = newDir();
    writeTinyAs(dir, 'BF16');
    const checkpoint = Checkpoint.open(dir);
    const { hiddenSize: E, intermediateSize: I } = checkpoint.config.text;
    const half = new WeightPool(checkpoint);
    half.use('text.norm.weight', [E]);
    assert.equal(half.fileRanges(), null);
    const f32 = newDir();
    writeTinyAs(f32, 'F32');
    const quantized = new WeightPool(Checkpoint.open(f32));
    quantized.use('text.norm.weight', [E]);
    quantized.useQuantized('text.layers.0.mlp.up_proj.weight', [I, E], 32, 8);
    assert.equal(quantized.fileRanges(), null);
  });

  // The peak is the kernel's high-water mark, reset before the load: Linux only.
  const skip = existsSync('/proc/self/clear_refs') ? false : 'needs /proc/self/clear_refs (Linux)';
  it('an F32 checkpoint\'s load peaks without our buffer of the weights', { skip }, async () => {
    const dir = newDir();
    // About 100 MB of float32 weights, two thirds of them the embedding table (as in Qwen2-0.5B).
    writeScaled(dir, 'F32', { vocab: 262144, intermediate: 8192 });
    const child = join(__dirname, 'sessionPeak.child.ts');
    const run = async (mode: 'files' | 'buffer') => JSON.parse((await promisify(execFile)(process.execPath, ['--import', 'tsx', child, dir, mode], { cwd: join(__dirname, '../..') })).stdout) as { peakRise: number; logits: number[] };
    const [files, buffer] = [await run('files'), await run('buffer')];
    assert.deepEqual(files.logits, buffer.logits);
    // The buffer holds every weight the decoder uses; the embedding table (the LM head's, tied) alone is 64 MiB.
    const { vocabSize: V, hiddenSize: E } = Checkpoint.open(dir).config.text;
    const table = V * E * 4;
    assert.ok(files.peakRise < buffer.peakRise - table / 2, `peak RSS rose ${(files.peakRise / 2 ** 20).toFixed(0)} MiB reading from the files, ${(buffer.peakRise / 2 ** 20).toFixed(0)} MiB through the buffer`);
  });
});
