/**
 * The Idefics3 (SmolVLM) processor against transformers' `Idefics3Processor` on the tiny
 * checkpoints of tools/model/make_smolvlm.py: the verbatim chat template, the expanded input ids
 * (tiles, row/column tokens, global image), the tile layout of many image sizes under SmolVLM's
 * real settings, and the frames' pixels (Pillow's resampling reproduced exactly).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { pilResize } from '../../sidecar/src/model/pilResize.js';
import { idefics3PreprocessorSchema, imageLayout, imagePromptText } from '../../sidecar/src/model/architectures/idefics3/imageLayout.js';
import { Idefics3Processor } from '../../sidecar/src/model/architectures/idefics3/processor.js';
import type { ChatMessage } from '../../sidecar/src/model/processor.js';
import { readSafetensorsHeader, readTensorBytes, toFloat32 } from '../../sidecar/src/model/safetensors.js';

const root = join(__dirname, '../..');
const parity = join(root, 'test/fixtures/parity');

interface Case {
  model_dir: string;
  image_files: string[];
  messages: ChatMessage[];
  prompt: string;
  input_ids: number[];
  image_token_id: number;
  frames_per_image: number[];
  image_seq_len: number;
  tensors: Record<string, number[]>;
  prompt2?: string;
  answer1?: string;
  ids2?: number[];
}

const CASES: [model: string, cases: string[]][] = [
  ['tiny-smolvlm', ['two-images', 'small-square', 'long', 'conversation']],
  ['tiny-smolvlm-nosplit', ['two-images', 'long', 'conversation']],
];

function openProcessor(dir: string): Idefics3Processor {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as {
    image_token_id: number;
    scale_factor: number;
    vision_config: { image_size: number; patch_size: number };
  };
  return Idefics3Processor.open(dir, { imageSize: config.vision_config.image_size, patchSize: config.vision_config.patch_size, scaleFactor: config.scale_factor, imageTokenId: config.image_token_id });
}

function fixture(model: string, name: string): { c: Case; tensor: (name: string) => Float32Array } {
  const entries = readSafetensorsHeader(join(parity, model, `${name}.safetensors`));
  return {
    c: JSON.parse(readFileSync(join(parity, model, `${name}.json`), 'utf8')) as Case,
    tensor: (tensorName) => {
      const entry = entries.get(tensorName);
      assert.ok(entry, `fixture tensor ${tensorName}`);
      return entry.dtype === 'U8' ? Float32Array.from(readTensorBytes(entry)) : toFloat32(entry, readTensorBytes(entry));
    },
  };
}

describe('Idefics3 image layout: transformers\' resize and split rules', () => {
  const table = JSON.parse(readFileSync(join(parity, 'idefics3-layouts.json'), 'utf8')) as {
    config: Record<string, unknown>;
    cases: { width: number; height: number; resized: number[]; split: number[]; rows: number; cols: number; frames: number }[];
  }[];
  for (const { config, cases } of table) {
    it(`${JSON.stringify(config)}: ${cases.length} sizes, the same resized and split sizes, grid and frames`, () => {
      const parsed = idefics3PreprocessorSchema.parse(config);
      for (const want of cases) {
        const got = imageLayout(want.width, want.height, parsed);
        const where = `${want.width} x ${want.height}`;
        assert.deepEqual([got.resized.width, got.resized.height], want.resized, `${where}: resized`);
        if (parsed.do_image_splitting) assert.deepEqual([got.split.width, got.split.height], want.split, `${where}: split`);
        assert.deepEqual([got.rows, got.cols, got.frames], [want.rows, want.cols, want.frames], `${where}: grid`);
      }
    });
  }

  it('writes the row/column tokens row by row, a newline after each row and before the global image', () => {
    const t = (n: number) => '<image>'.repeat(n);
    assert.equal(imagePromptText(0, 0, 2), `<fake_token_around_image><global-img>${t(2)}<fake_token_around_image>`);
    assert.equal(
      imagePromptText(1, 2, 1),
      `<fake_token_around_image><row_1_col_1>${t(1)}<fake_token_around_image><row_1_col_2>${t(1)}\n\n<fake_token_around_image><global-img>${t(1)}<fake_token_around_image>`,
    );
  });
});

for (const [model, names] of CASES) {
  describe(`Idefics3 processor parity with transformers: ${model}`, () => {
    const processor = openProcessor(join(root, 'test/fixtures/models', model));

    for (const name of names) {
      const { c, tensor } = fixture(model, name);
      const images = c.image_files.map((file) => readFileSync(join(root, file)));

      it(`${name}: renders the verbatim chat template and expands the images to the same ${c.input_ids.length} ids`, async () => {
        const prompt = processor.text.renderChatTemplate(c.messages);
        assert.equal(prompt.text, c.prompt);
        const layouts = await Promise.all(images.map(async (bytes) => (await processor.preprocessImage(bytes)).layout));
        assert.deepEqual(
          layouts.map((l) => l.frames),
          c.frames_per_image,
        );
        const ids = processor.encode(prompt, true, 0, layouts);
        assert.deepEqual(ids, c.input_ids);
        assert.equal(ids.filter((id) => id === processor.imageTokenId).length, c.frames_per_image.reduce((a, b) => a + b, 0) * processor.imageSeqLen);
        assert.equal(processor.imageSeqLen, c.image_seq_len);
      });

      it(`${name}: the same frames (Pillow's resampling, bit for bit) and pixel values`, async () => {
        const want = tensor('pixel_values');
        const got = await Promise.all(images.map(async (bytes) => (await processor.preprocessImage(bytes)).pixels));
        const flat = new Float32Array(got.reduce((n, p) => n + p.length, 0));
        got.reduce((at, p) => (flat.set(p, at), at + p.length), 0);
        assert.equal(flat.length, want.length);
        let max = 0;
        for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(flat[i] - want[i]));
        // 1e-6: float32 rounding of rescale and normalise; one level of 255 is 0.0078 here.
        assert.ok(max <= 1e-6, `pixel values max |diff| ${max}`);
      });
    }

    it('turn 2 of the conversation: the text after the first answer encodes to the same ids', () => {
      const { c } = fixture(model, 'conversation');
      assert.ok(c.prompt2 !== undefined && c.ids2 !== undefined && c.answer1 !== undefined);
      const messages: ChatMessage[] = [c.messages[0], { role: 'assistant', content: [{ type: 'text', text: c.answer1 }] }, { role: 'user', content: [{ type: 'text', text: 'What color is the square?' }] }];
      const prompt = processor.text.renderChatTemplate(messages);
      assert.equal(prompt.text, c.prompt2);
      // Conversation feeds turn 2 from the end of the first answer's text on.
      const fed = c.prompt2.indexOf(c.answer1, c.prompt.length) + c.answer1.length;
      assert.deepEqual(processor.encode(prompt, false, fed), c.ids2);
    });
  });
}

describe('pilResize: Pillow 13 resampling, bit for bit', () => {
  const entries = readSafetensorsHeader(join(parity, 'pil-resize.safetensors'));
  const bytes = (name: string) => {
    const entry = entries.get(name);
    assert.ok(entry, name);
    return { data: readTensorBytes(entry), shape: entry.shape };
  };
  const input = bytes('input');
  const [height, width] = input.shape;
  for (const filter of ['lanczos', 'bicubic'] as const) {
    it(`${filter}: up, down, one axis and both, either pass order`, () => {
      const names = [...entries.keys()].filter((n) => n.startsWith(`${filter}.`));
      assert.ok(names.length >= 12);
      for (const name of names) {
        const want = bytes(name);
        const got = pilResize(input.data, width, height, want.shape[1], want.shape[0], filter);
        let differ = 0;
        for (let i = 0; i < want.data.length; i++) if (got[i] !== want.data[i]) differ++;
        assert.equal(differ, 0, `${name}: ${differ} of ${want.data.length} values differ`);
      }
    });
  }
});

describe('Idefics3 processor: content and refusals', () => {
  const dir = join(root, 'test/fixtures/models/tiny-smolvlm');
  const processor = openProcessor(dir);

  it('keeps <image> and row/column tokens typed in a message as text: they add no image', () => {
    const messages: ChatMessage[] = [{ role: 'user', content: [{ type: 'text', text: 'see <image> and <row_1_col_1><global-img>' }] }];
    const prompt = processor.text.renderChatTemplate(messages);
    const ids = processor.encode(prompt);
    assert.ok(!ids.includes(processor.imageTokenId));
    assert.throws(() => processor.encode(prompt, true, 0, [imageLayout(10, 10, processor.preprocessor)]), /the prompt has 0 image placeholders but 1 images were given/);
  });

  it('refuses a preprocessor_config.json it does not support, naming the option', () => {
    const copy = mkdtempSync(join(tmpdir(), 'lookm-idefics3-'));
    try {
      cpSync(dir, copy, { recursive: true });
      const file = join(copy, 'preprocessor_config.json');
      const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      const vision = { imageSize: 48, patchSize: 8, scaleFactor: 2, imageTokenId: processor.imageTokenId };
      writeFileSync(file, JSON.stringify({ ...config, resample: 2 }));
      assert.throws(() => Idefics3Processor.open(copy, vision), /resample: only 1 \(LANCZOS/);
      writeFileSync(file, JSON.stringify({ ...config, max_image_size: { longest_edge: 64 } }));
      assert.throws(() => Idefics3Processor.open(copy, vision), /max_image_size\.longest_edge 64 differs from vision_config\.image_size 48/);
      writeFileSync(file, JSON.stringify(config));
      assert.throws(() => Idefics3Processor.open(copy, { ...vision, scaleFactor: 4 }), /scale_factor 4 does not divide/);
      writeFileSync(join(copy, 'processor_config.json'), JSON.stringify({ image_seq_len: 16 }));
      assert.throws(() => Idefics3Processor.open(copy, vision), /image_seq_len 16 differs from the 9 features per frame/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('composites a transparent image onto white, as transformers\' convert_to_rgb', async () => {
    const clear = await sharp({ create: { width: 48, height: 48, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const { pixels, layout } = await processor.preprocessImage(clear);
    assert.equal(layout.frames, 17);
    assert.ok(pixels.every((x) => Math.abs(x - 1) < 1e-6), 'white is 1 after (1 - 0.5) / 0.5');
  });
});
