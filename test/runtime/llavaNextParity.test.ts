/**
 * Parity of LLaVA-NeXT (`LlavaNextForConditionalGeneration`) and LLaVA-OneVision
 * (`LlavaOnevisionForConditionalGeneration`) with transformers (float32, eager attention) on the
 * tiny checkpoints of tools/model/make_llavanext.py: the verbatim chat template and the expanded
 * input ids (each image's feature rows), the tiles' pixel values, the projector's features per
 * tile, the packed image features (unpadded, image_newline per row, OneVision's downscale), the
 * merged embeddings, logits, keys, values and column sums (1e-4), chunked prefill equal to one
 * pass, 32 greedy tokens, and a two-turn greedy conversation on one cache.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isLlavaNextConfig, type LlavaNextConfig } from '../../sidecar/src/model/architectures/llavaNext/config.js';
import { llavaNext } from '../../sidecar/src/model/architectures/llavaNext/index.js';
import { LlavaNextProcessor } from '../../sidecar/src/model/architectures/llavaNext/processor.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import type { ChatMessage } from '../../sidecar/src/model/processor.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { VisionEncoder } from '../../sidecar/src/runtime/visionEncoder.js';
import { decoderParityTests, openEncoderAndDecoder, type DecoderCase } from './decoderParity.js';
import { maxAbsDiff, maxRelDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');
const TOLERANCE = 1e-4;

interface Case extends DecoderCase {
  image_files: string[];
  image_sizes: [number, number][];
  frames_per_image: number[];
  feature_rows_per_image: number[];
  messages: ChatMessage[];
  prompt: string;
  input_ids: number[];
  image_token_id: number;
  greedy_tokens: number[];
  turns?: string[];
  answer1?: string;
  prompt2?: string;
  ids2?: number[];
  generated2?: number[];
}

const CASES: [model: string, names: string[]][] = [
  ['tiny-llava-next', ['two-images', 'small-square', 'long', 'conversation']],
  ['tiny-llava-onevision', ['two-images', 'small-square', 'long', 'conversation']],
  // Other shapes: NeXT on SigLIP 30 / 8 (a floored 3 x 3 grid, "full", two feature layers, Qwen2);
  // OneVision on CLIP ("default", the processor counting the class token), Llama, anyres_max_2.
  ['tiny-llava-next-siglip', ['two-images', 'long']],
  ['tiny-llava-onevision-clip', ['two-images', 'long']],
];

for (const [model, names] of CASES) {
  describe(`LLaVA-NeXT parity with transformers: ${model}`, () => {
    const dir = join(root, 'test/fixtures/models', model);
    let checkpoint: Checkpoint;
    let config: LlavaNextConfig;
    let processor: LlavaNextProcessor;
    let vision: VisionEncoder;
    let decoder: TextDecoder;
    before(async () => {
      checkpoint = Checkpoint.open(dir);
      assert.ok(isLlavaNextConfig(checkpoint.config), 'the registry parses it as LLaVA-NeXT / OneVision');
      config = checkpoint.config;
      processor = LlavaNextProcessor.open(dir, config);
      ({ vision, decoder } = await openEncoderAndDecoder(checkpoint, llavaNext.sessions(config, { weightBits: 32 })));
    });
    after(async () => {
      await vision.release();
      await decoder.release();
    });

    for (const name of names) {
      const { case: c, has, tensor } = parityFixture<Case>(model, name);
      const images = () => c.image_files.map((file) => new Uint8Array(readFileSync(join(root, file))));

      it(`${name}: the template's prompt and the input ids, each image expanded to its feature rows (${c.feature_rows_per_image.join(', ')})`, async () => {
        const prompt = processor.renderChatTemplate(c.messages);
        assert.equal(prompt.text, c.prompt);
        const grids = await Promise.all(images().map((bytes) => processor.imageGrid(() => bytes)));
        assert.deepEqual(grids.map((g) => [g.original.height, g.original.width]), c.image_sizes);
        assert.deepEqual(grids.map((g) => g.frames), c.frames_per_image);
        assert.deepEqual(grids.map((g) => g.tokens), c.feature_rows_per_image);
        assert.deepEqual(processor.encode(prompt, true, 0, grids), c.input_ids);
        if (c.prompt2 !== undefined && c.answer1 !== undefined && c.ids2 !== undefined && c.turns) {
          const messages: ChatMessage[] = [...c.messages, { role: 'assistant', content: [{ type: 'text', text: c.answer1 }] }, { role: 'user', content: [{ type: 'text', text: c.turns[1] }] }];
          const second = processor.renderChatTemplate(messages);
          assert.equal(second.text, c.prompt2);
          const fed = c.prompt2.indexOf(c.answer1, c.prompt.length) + c.answer1.length;
          assert.deepEqual(processor.encode(second, false, fed), c.ids2, "turn 2: the text after the first answer (no images there)");
        }
      });

      it(`${name}: the tiles' pixel values (base image first), the projector's features per tile, the packed image features`, async () => {
        const processed = await Promise.all(images().map((bytes) => processor.preprocessImage(bytes)));
        const pixels = Float32Array.from(processed.flatMap((p) => [...p.pixels]));
        assert.ok(maxAbsDiff(pixels, tensor('pixel_values')) <= 1e-5, `pixel values ${maxAbsDiff(pixels, tensor('pixel_values'))}`);
        const frames = pixels.length / (3 * vision.imageSize ** 2);
        const encoded = await vision.encode(tensor('pixel_values'), frames);
        const E = vision.featureSize;
        const perFrame = vision.tokensPerImage;
        assert.equal(perFrame, Math.floor(config.vision.imageSize / config.vision.patchSize) ** 2 + 1, 'each frame\'s rows, then image_newline');
        const withoutNewline = Float32Array.from({ length: frames * (perFrame - 1) * E }, (_, k) => encoded[(Math.floor(k / ((perFrame - 1) * E)) * perFrame) * E + (k % ((perFrame - 1) * E))]);
        assert.ok(maxRelDiff(withoutNewline, tensor('frame_features')) <= TOLERANCE, `frame features ${maxRelDiff(withoutNewline, tensor('frame_features'))}`);
        assert.ok(maxAbsDiff(encoded.subarray((perFrame - 1) * E, perFrame * E), tensor('image_newline')) === 0, 'image_newline row');
        let at = 0;
        const packed = processed.map((p) => processor.arrangeFeatures(encoded.subarray(at, (at += p.grid.frames * perFrame * E)), p.grid, E));
        const all = Float32Array.from(packed.flatMap((p) => [...p]));
        assert.deepEqual(packed.map((p) => p.length / E), c.feature_rows_per_image);
        assert.ok(maxRelDiff(all, tensor('image_features')) <= TOLERANCE, `image features ${maxRelDiff(all, tensor('image_features'))}`);
      });

      decoderParityTests(name, c, { has, tensor }, () => decoder);
    }

    it('the runtime encodes an image into its packed feature rows (encodeImages arranges them)', async () => {
      const { case: c, tensor } = parityFixture<Case>(model, 'two-images');
      const runtime = await OnnxModelRuntime.load(dir, { threads: 1 });
      try {
        const rows = await Promise.all(c.image_files.map((file) => runtime.encodeImages([new Uint8Array(readFileSync(join(root, file)))])));
        assert.deepEqual(rows.map((r) => r.length / runtime.info.hiddenSize), c.feature_rows_per_image);
        const all = Float32Array.from(rows.flatMap((r) => [...r]));
        assert.ok(maxRelDiff(all, tensor('image_features')) <= TOLERANCE, `image features ${maxRelDiff(all, tensor('image_features'))}`);
      } finally {
        await runtime.release();
      }
    });
  });
}
