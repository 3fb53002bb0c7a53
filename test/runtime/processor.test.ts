/** Hostile images get a clear error; a good one comes out normalised, channels first. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { LlavaProcessor } from '../../sidecar/src/model/processor.js';

const dir = join(__dirname, '../fixtures/models/tiny-llava-llama');
const processor = LlavaProcessor.open(dir, 399, 16);

describe('image preprocessing', () => {
  it('gives [3, 32, 32] CLIP-normalised pixels for a PNG', async () => {
    const { pixels, height, width } = await processor.preprocessImage(readFileSync(join(__dirname, '../fixtures/images/red-square.png')));
    assert.deepEqual([height, width, pixels.length], [32, 32, 3 * 32 * 32]);
    assert.ok(pixels.every((x) => x > -2.2 && x < 2.7));
  });

  it('refuses bytes that are not an image', async () => {
    await assert.rejects(processor.preprocessImage(Buffer.from('definitely not a PNG')), /the image cannot be used/);
  });

  it('refuses a truncated PNG', async () => {
    const png = readFileSync(join(__dirname, '../fixtures/images/blue-circle.png'));
    await assert.rejects(processor.preprocessImage(png.subarray(0, png.length - 40)), /the image cannot be used/);
  });

  it('refuses a decompression bomb by its declared size', async () => {
    // 8000 x 8000 of one colour: a small file that would decode to 192 MB.
    const bomb = await sharp({ create: { width: 8000, height: 8000, channels: 3, background: '#808080' } }).png().toBuffer();
    assert.ok(bomb.length < 1_000_000);
    await assert.rejects(processor.preprocessImage(bomb), /the image cannot be used .*exceeds pixel limit/);
  });
});
