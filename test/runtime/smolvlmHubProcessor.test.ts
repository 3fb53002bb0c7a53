/**
 * SmolVLM-256M-Instruct's own processor files (its verbatim tokenizer, chat template,
 * preprocessor_config.json, processor_config.json and config.json; provenance in
 * test/fixtures/configs/hub/SOURCES.md) through the runtime's Idefics3 processor: the same
 * rendered prompts and expanded input ids as transformers' Idefics3Processor on the same files
 * (tools/model/record_smolvlm_hub.py), for screenshot-sized, tall, wide and tiny images, two images
 * in one message and a second turn. The tiny checkpoints' tests cover the pixels; this covers the
 * real checkpoint's settings and vocabulary.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Idefics3Processor } from '../../sidecar/src/model/architectures/idefics3/processor.js';
import { parseModelConfig } from '../../sidecar/src/model/architectures/registry.js';
import { isIdefics3Config } from '../../sidecar/src/model/architectures/idefics3/config.js';
import type { ChatMessage } from '../../sidecar/src/model/processor.js';

const fixture = join(__dirname, '../fixtures/hub-processors/SmolVLM-256M-Instruct');

interface Case {
  name: string;
  messages: ChatMessage[];
  images: string[];
  prompt: string;
  input_ids: number[];
  frames_per_image: number[];
}

describe("SmolVLM-256M-Instruct's processor files: the same ids as transformers", () => {
  // The checkpoint folder as it is on disk: the tokenizer unzipped beside the other files.
  const dir = mkdtempSync(join(tmpdir(), 'lookm-smolvlm-hub-'));
  cpSync(fixture, dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), gunzipSync(readFileSync(join(fixture, 'tokenizer.json.gz'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const config = parseModelConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
  assert.ok(isIdefics3Config(config));
  const processor = Idefics3Processor.open(dir, { imageSize: config.vision.imageSize, patchSize: config.vision.patchSize, scaleFactor: config.scaleFactor, imageTokenId: config.imageTokenIndex });
  const { cases } = JSON.parse(readFileSync(join(fixture, 'cases.json'), 'utf8')) as { cases: Case[] };

  it('reads 64 tokens per frame and the real image token', () => {
    assert.equal(processor.tokensPerImage, 64);
    assert.equal(processor.imageTokenId, 49190);
    assert.ok(cases.length >= 5);
  });

  for (const c of cases) {
    it(`${c.name}: the verbatim template renders the same prompt, expanded to the same ${c.input_ids.length} ids`, async () => {
      const prompt = processor.text.renderChatTemplate(c.messages);
      assert.equal(prompt.text, c.prompt);
      const grids = await Promise.all(c.images.map((name) => processor.imageGrid(() => readFileSync(join(dir, 'images', `${name}.png`)))));
      assert.deepEqual(
        grids.map((g) => g.frames),
        c.frames_per_image,
      );
      assert.deepEqual(processor.encode(prompt, true, 0, grids), c.input_ids);
    });
  }
});
