/** Hostile images get a clear error; a good one comes out normalised, channels first. */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { ImageError, LlavaProcessor, MAX_TIFF_PAGES } from '../../sidecar/src/model/processor.js';
import { gifWithFrames, imageBombs, svgReadingFile, svgUseBomb, tiffWithPages } from '../../tools/fuzz/imageBombs.js';

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

  /** The time `preprocessImage` takes to refuse `bytes`, after checking the error matches. */
  async function refusalMs(bytes: Buffer, pattern: RegExp): Promise<number> {
    const started = performance.now();
    await assert.rejects(processor.preprocessImage(bytes), (error: Error) => {
      assert.ok(error instanceof ImageError, `${error.name}: ${error.message}`);
      assert.match(error.message, pattern);
      return true;
    });
    return performance.now() - started;
  }

  it('refuses SVG before decoding: a <use> bomb in milliseconds (it cost seconds of CPU)', async () => {
    const ms = await refusalMs(svgUseBomb(), /only PNG, JPEG, WebP, GIF and TIFF are accepted \(this is SVG\)/);
    assert.ok(ms < 100, `${ms.toFixed(1)} ms`);
  });

  it('refuses an SVG that references a local file, so sharp never reads it', async () => {
    await refusalMs(svgReadingFile('/etc/passwd'), /only PNG, JPEG, WebP, GIF and TIFF are accepted \(this is SVG\)/);
  });

  it('refuses formats sharp reads but the documentation does not list (AVIF/HEIF)', async () => {
    const avif = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#ff0000' } }).avif().toBuffer();
    await refusalMs(avif, /only PNG, JPEG, WebP, GIF and TIFF are accepted \(this is HEIF\/AVIF\)/);
  });

  it('refuses every image bomb quickly, before decoding it', async () => {
    for (const { name, bytes } of imageBombs()) {
      const ms = await refusalMs(bytes, /the image cannot be used/);
      assert.ok(ms < 1000, `${name}: ${ms.toFixed(1)} ms`);
    }
  });

  it('refuses a TIFF of more pages than it would walk, before sharp counts them', async () => {
    const ms = await refusalMs(tiffWithPages(MAX_TIFF_PAGES + 1), new RegExp(`a TIFF of more than ${MAX_TIFF_PAGES} pages`));
    assert.ok(ms < 100, `${ms.toFixed(1)} ms`);
  });

  it('decodes only the first frame of a many-frame GIF or TIFF', async () => {
    for (const bytes of [gifWithFrames(100_000), tiffWithPages(MAX_TIFF_PAGES)]) {
      const started = performance.now();
      const { height, width } = await processor.preprocessImage(bytes);
      assert.deepEqual([height, width], [32, 32]);
      assert.ok(performance.now() - started < 2000, `${(performance.now() - started).toFixed(0)} ms`);
    }
  });

  it('refuses a preprocessor_config.json with absurd sizes, naming the field', () => {
    const copy = mkdtempSync(join(tmpdir(), 'lookm-processor-'));
    try {
      cpSync(dir, copy, { recursive: true });
      const file = join(copy, 'preprocessor_config.json');
      const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      writeFileSync(file, JSON.stringify({ ...config, size: { shortest_edge: 1_000_000 } }));
      assert.throws(() => LlavaProcessor.open(copy, 399, 16), /preprocessor_config\.json: .*Too big.*size\.shortest_edge/s);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});
