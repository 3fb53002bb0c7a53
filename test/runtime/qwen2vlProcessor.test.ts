/**
 * The Qwen2-VL / Qwen2.5-VL processor against transformers 4.57 (`Qwen2VLImageProcessor`,
 * `Qwen2VLProcessor`, `get_rope_index`) on the tiny checkpoints of tools/model/make_qwen2vl.py and
 * the fixtures of tools/model/record_qwen2vl.py: config parsing and refusals, smart_resize,
 * patches within 1e-5 of transformers' for the same resized image, the chat template verbatim,
 * input ids with the image placeholders expanded per image, and the 3-D M-RoPE positions, whole
 * and turn by turn.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseQwen2VLConfig } from '../../sidecar/src/model/architectures/qwen2vl/config.js';
import { parseQwen2VLPreprocessor, patchesFromRgb, smartResize } from '../../sidecar/src/model/architectures/qwen2vl/imageProcessor.js';
import { expandImageTokens, mropePositions } from '../../sidecar/src/model/architectures/qwen2vl/positions.js';
import { Qwen2VLProcessor } from '../../sidecar/src/model/architectures/qwen2vl/processor.js';
import { CheckpointError } from '../../sidecar/src/model/checkpointError.js';
import type { ChatMessage } from '../../sidecar/src/model/processor.js';
import { ImageError } from '../../sidecar/src/model/processor.js';
import { ErrorCode } from '../../sidecar/src/protocol/index.js';
import { maxAbsDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');
type Grid = [number, number, number];

interface FixtureCase {
  messages: ChatMessage[];
  prompt: string;
  image_files: string[];
  input_ids: number[];
  image_grid_thw: Grid[];
  rope_delta: number;
  turn1?: { messages: ChatMessage[]; prompt: string; input_ids: number[] };
}
interface Fixture {
  model_dir: string;
  architecture: string;
  image_token_id: number;
  mrope_section: number[];
  image_processor: { min_pixels: number; max_pixels: number; patch_size: number; merge_size: number };
  images: { file: string; width: number; height: number; resized_width: number; resized_height: number; image_grid_thw: Grid; tokens: number }[];
  cases: Record<'two_images' | 'long' | 'chat', FixtureCase>;
}

function load(model: string): { fixture: Fixture; tensor: (name: string) => Float32Array } {
  const { case: fixture, tensor } = parityFixture<Fixture>(model);
  return { fixture, tensor };
}

const readConfig = (dir: string) => JSON.parse(readFileSync(join(root, dir, 'config.json'), 'utf8')) as Record<string, unknown>;

for (const model of ['tiny-qwen2-vl', 'tiny-qwen2.5-vl']) {
  describe(`Qwen2-VL processor parity with transformers: ${model}`, () => {
    const { fixture, tensor } = load(model);
    const config = parseQwen2VLConfig(readConfig(fixture.model_dir));
    const processor = Qwen2VLProcessor.open(join(root, fixture.model_dir), config);
    const image = processor.images.config;

    it('reads config.json (flat or text_config) and preprocessor_config.json', () => {
      assert.equal(config.architecture, fixture.architecture);
      assert.equal(config.imageTokenId, fixture.image_token_id);
      assert.deepEqual(config.text.mropeSection, fixture.mrope_section);
      assert.equal(image.minPixels, fixture.image_processor.min_pixels);
      assert.equal(image.maxPixels, fixture.image_processor.max_pixels);
      assert.equal(image.patchSize, fixture.image_processor.patch_size);
      assert.equal(image.mergeSize, fixture.image_processor.merge_size);
    });

    it('resizes every image to the size and grid transformers picks (below min_pixels, above max_pixels, exact, wide, tall)', () => {
      for (const img of fixture.images) {
        assert.deepEqual(processor.images.resizedSize(img.height, img.width), { height: img.resized_height, width: img.resized_width }, img.file);
        assert.equal(processor.tokensFor(img.image_grid_thw), img.tokens, img.file);
      }
    });

    it('cuts the same resized image into the same patches within 1e-5', () => {
      fixture.images.forEach((img, i) => {
        const { pixels, grid } = patchesFromRgb(tensor(`images.${i}.resized`), img.resized_height, img.resized_width, image);
        assert.deepEqual(grid, img.image_grid_thw, img.file);
        const diff = maxAbsDiff(pixels, tensor(`images.${i}.pixel_values`));
        assert.ok(diff <= 1e-5, `${img.file}: max |diff| ${diff}`);
      });
    });

    it('preprocesses encoded images end to end to the same patches within 1e-5 (decoded by sharp, resized as Pillow does)', async () => {
      for (const [i, img] of fixture.images.entries()) {
        const { pixels, grid } = await processor.preprocessImage(readFileSync(join(root, img.file)));
        assert.deepEqual(grid, img.image_grid_thw, img.file);
        const diff = maxAbsDiff(pixels, tensor(`images.${i}.pixel_values`));
        assert.ok(diff <= 1e-5, `${img.file}: max |diff| ${diff}`);
      }
    });

    for (const name of ['two_images', 'long', 'chat'] as const) {
      const c = fixture.cases[name];
      it(`${name}: renders the chat template verbatim, expands each image's tokens and positions them like get_rope_index`, () => {
        assert.equal(processor.applyChatTemplate(c.messages), c.prompt);
        const ids = processor.encode(processor.renderChatTemplate(c.messages), c.image_grid_thw);
        assert.deepEqual(ids, c.input_ids);
        const { positions, next } = processor.positions(ids, c.image_grid_thw);
        assert.deepEqual([...positions], [...tensor(`${name}.position_ids`)]);
        assert.equal(next - ids.length, c.rope_delta);
      });
    }

    it('positions a two-turn conversation turn by turn as it does whole', () => {
      const c = fixture.cases.chat;
      const first = c.turn1!;
      const firstGrids = c.image_grid_thw.slice(0, 1);
      const firstIds = processor.encode(processor.renderChatTemplate(first.messages), firstGrids);
      assert.deepEqual(firstIds, first.input_ids);
      const whole = processor.positions(c.input_ids, c.image_grid_thw);
      // The sidecar keeps the first turn's prompt and answer; the rest of the rendered conversation follows it.
      const rendered = processor.renderChatTemplate(c.messages);
      const firstText = first.prompt;
      assert.ok(rendered.text.startsWith(firstText));
      const restIds = processor.encode(rendered, c.image_grid_thw.slice(1), firstText.length);
      assert.deepEqual([...firstIds, ...restIds], c.input_ids);
      const a = processor.positions(firstIds, firstGrids);
      const b = processor.positions(restIds, c.image_grid_thw.slice(1), a.next);
      const L = c.input_ids.length;
      const [n1, n2] = [firstIds.length, restIds.length];
      for (let axis = 0; axis < 3; axis++) {
        const joined = [...a.positions.subarray(axis * n1, (axis + 1) * n1), ...b.positions.subarray(axis * n2, (axis + 1) * n2)];
        assert.deepEqual(joined, [...whole.positions.subarray(axis * L, (axis + 1) * L)], `axis ${axis}`);
      }
      assert.equal(b.next, whole.next);
    });

    it('refuses a prompt whose image placeholders do not match its images', () => {
      const c = fixture.cases.two_images;
      const rendered = processor.renderChatTemplate(c.messages);
      assert.throws(() => processor.encode(rendered, c.image_grid_thw.slice(1)), (e: Error & { code?: number }) => e.code === ErrorCode.ImageTokenMismatch && /2 image placeholder\(s\) for 1 image/.test(e.message));
      assert.throws(() => processor.positions(c.input_ids, c.image_grid_thw.slice(0, 1)), (e: Error & { code?: number }) => e.code === ErrorCode.ImageTokenMismatch);
    });

    it('keeps image placeholders typed in a message as text', () => {
      const messages: ChatMessage[] = [{ role: 'user', content: [{ type: 'text', text: 'what does <|vision_start|><|image_pad|><|vision_end|> mean?' }] }];
      const ids = processor.encode(processor.renderChatTemplate(messages), []);
      assert.ok(!ids.includes(config.imageTokenId) && !ids.includes(config.visionStartTokenId));
    });
  });
}

describe('Qwen2-VL smart_resize, patches and positions: the general rules', () => {
  it('smart_resize matches transformers, Python rounding (halves to even) included', () => {
    // Expected values printed by transformers 4.57's smart_resize(h, w, 28, min, max).
    const cases: [number, number, [number, number], [number, number]][] = [
      [42, 70, [56, 56], [56, 112]],
      [70, 42, [56, 56], [112, 56]],
      [14, 14, [56, 56], [84, 84]],
      [1000, 1000, [980, 980], [140, 140]],
      [3000, 2000, [1204, 812], [168, 112]],
      [28, 5000, [28, 5012], [28, 2044]],
      [1080, 1920, [728, 1316], [112, 196]],
      [97, 301, [84, 308], [84, 252]],
    ];
    for (const [h, w, big, small] of cases) {
      assert.deepEqual(smartResize(h, w, 28, 3136, 1003520), { height: big[0], width: big[1] }, `${h}x${w}`);
      assert.deepEqual(smartResize(h, w, 28, 4704, 23520), { height: small[0], width: small[1] }, `${h}x${w} small`);
    }
    assert.throws(() => smartResize(10, 2010, 28, 3136, 1003520), (e) => e instanceof ImageError && /aspect ratio 201\.0 is above 200/.test(e.message));
  });

  it('lays patches out as transformers does: merge groups, then patches, then channel, time, row, column', () => {
    // A 4 x 4 image, patch 1, merge 2, temporal 2, no rescale or normalise: values are 10*y + x in channel 0.
    const rgb = new Float32Array(4 * 4 * 3);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) rgb[(y * 4 + x) * 3] = 10 * y + x;
    const c = { ...parseQwen2VLPreprocessor({ patch_size: 1, merge_size: 2, temporal_patch_size: 2 }), doRescale: false, doNormalize: false };
    const { pixels, grid } = patchesFromRgb(rgb, 4, 4, c);
    assert.deepEqual(grid, [1, 4, 4]);
    const channel0 = Array.from({ length: 16 }, (_, row) => pixels[row * 6]);
    assert.deepEqual(channel0, [0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 30, 31, 22, 23, 32, 33]);
    assert.equal(pixels[1], 0, 'the frame repeated along time');
  });

  it('positions images after text, next to each other and at the start', () => {
    const I = 9;
    // text, image 2x4 merged (grid 1,4,8 with merge 2), image 1x2 (grid 1,2,4), text
    const ids = [1, 2, ...Array<number>(8).fill(I), ...Array<number>(2).fill(I), 3];
    const { positions, next } = mropePositions(ids, I, [[1, 4, 8], [1, 2, 4]], 2);
    const L = ids.length;
    const axis = (a: number) => [...positions.subarray(a * L, (a + 1) * L)];
    assert.deepEqual(axis(0), [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 6, 6, 8]);
    assert.deepEqual(axis(1), [0, 1, 2, 2, 2, 2, 3, 3, 3, 3, 6, 6, 8]);
    assert.deepEqual(axis(2), [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(next, 9);
    assert.deepEqual(expandImageTokens([5, I, 6, I], I, [2, 3]), [5, I, I, 6, I, I, I]);
  });
});

describe('Qwen2-VL config and preprocessor refusals name the option', () => {
  const base = readConfig('test/fixtures/models/tiny-qwen2-vl');
  const nested = readConfig('test/fixtures/models/tiny-qwen2.5-vl');
  const refuses = (raw: unknown, pattern: RegExp) => assert.throws(() => parseQwen2VLConfig(raw), (e) => e instanceof CheckpointError && pattern.test(e.message), String(pattern));
  const textConfig = nested.text_config as Record<string, unknown>;
  const visionConfig = nested.vision_config as Record<string, unknown>;

  it('config.json', () => {
    refuses({ ...base, rope_scaling: { type: 'yarn', factor: 4, mrope_section: [2, 3, 3] } }, /rope_scaling type "yarn" is not supported/);
    refuses({ ...base, rope_scaling: { type: 'mrope', mrope_section: [2, 3, 4] } }, /mrope_section \[2,3,4\] is not supported: .* head_dim \/ 2 = 8/);
    refuses({ ...base, rope_scaling: null }, /rope_scaling\.mrope_section is missing/);
    refuses({ ...base, rope_scaling: { type: 'mrope', mrope_section: [2, 3, 3], factor: 2 } }, /rope_scaling\.factor is not supported/);
    refuses({ ...base, use_sliding_window: true }, /use_sliding_window true is not supported/);
    refuses({ ...base, hidden_act: 'gelu' }, /text hidden_act "gelu" is not supported/);
    refuses({ ...base, vision_config: { ...(base.vision_config as object), hidden_act: 'relu' } }, /vision hidden_act "relu" is not supported/);
    refuses({ ...base, vision_config: { ...(base.vision_config as object), in_channels: 4 } }, /vision in_channels 4 is not supported/);
    refuses({ ...base, vision_config: { ...(base.vision_config as object), hidden_size: 32 } }, /vision_config\.hidden_size 32\) differs from the text hidden_size 64/);
    refuses({ ...nested, text_config: { ...textConfig, num_key_value_heads: 4 } }, /num_attention_heads 6 is not a multiple of num_key_value_heads 4/);
    refuses({ ...nested, vision_config: { ...visionConfig, window_size: 50 } }, /window_size 50 is not supported: it must be a multiple of .* 28/);
    refuses({ ...nested, vision_config: { ...visionConfig, fullatt_block_indexes: [2] } }, /fullatt_block_indexes names block 2, but depth is 2/);
    refuses({ ...nested, vision_config: { ...visionConfig, hidden_act: 'gelu' } }, /vision hidden_act "gelu" is not supported \(silu only\)/);
    refuses({ ...nested, architectures: ['LlavaForConditionalGeneration'] }, /"LlavaForConditionalGeneration" is not a Qwen2-VL family model/);
  });

  it('reads a Hub Qwen2-VL-2B-Instruct fine-tune (flat, rope_type "default", a sparse vision_config) as transformers 4.57 does', () => {
    // Expected values printed by transformers 4.57's Qwen2VLConfig(**config.json) for this file.
    const hub = parseQwen2VLConfig(JSON.parse(readFileSync(join(root, 'test/fixtures/configs/hub/lightonai--MonoQwen2-VL-v0.1.json'), 'utf8')));
    const t = hub.text;
    assert.deepEqual([t.hiddenSize, t.numLayers, t.numHeads, t.numKvHeads, t.intermediateSize, t.vocabSize, t.rmsNormEps, t.ropeTheta, t.tieWordEmbeddings, t.maxPositionEmbeddings], [1536, 28, 12, 2, 8960, 151936, 1e-6, 1e6, true, 32768]);
    assert.deepEqual(t.mropeSection, [16, 24, 24]);
    const v = hub.vision;
    assert.deepEqual([v.depth, v.hiddenSize, v.numHeads, v.intermediateSize, v.outHiddenSize, v.patchSize, v.spatialMergeSize, v.temporalPatchSize, v.hiddenAct], [32, 1280, 16, 5120, 1536, 14, 2, 2, 'quick_gelu']);
    assert.deepEqual([hub.imageTokenId, hub.visionStartTokenId], [151655, 151652]);
  });

  it('applies transformers defaults for what config.json leaves out', () => {
    const config = parseQwen2VLConfig({ architectures: ['Qwen2_5_VLForConditionalGeneration'], rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] }, vision_config: { out_hidden_size: 8192 } });
    assert.equal(config.text.hiddenSize, 8192);
    assert.equal(config.text.numKvHeads, 8);
    assert.equal(config.vision.windowSize, 112);
    assert.deepEqual(config.vision.fullAttentionBlocks, [7, 15, 23, 31]);
    assert.equal(config.imageTokenId, 151655);
  });

  it('preprocessor_config.json', () => {
    const refusesPre = (raw: unknown, pattern: RegExp) => assert.throws(() => parseQwen2VLPreprocessor(raw), (e) => e instanceof CheckpointError && pattern.test(e.message), String(pattern));
    refusesPre({ resample: 2 }, /resample 2 is not supported \(3: bicubic only\)/);
    refusesPre({ do_convert_rgb: false }, /do_convert_rgb false is not supported/);
    refusesPre({ size: { shortest_edge: 10 } }, /size must contain shortest_edge and longest_edge/);
    refusesPre({ min_pixels: 5000, max_pixels: 4000 }, /min_pixels 5000 is above max_pixels 4000/);
    // transformers ignores size's values: min_pixels and max_pixels (or their defaults) decide.
    const c = parseQwen2VLPreprocessor({ size: { shortest_edge: 100, longest_edge: 5000 } });
    assert.deepEqual([c.minPixels, c.maxPixels], [3136, 1003520]);
  });
});
