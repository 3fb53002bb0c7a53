/** Broken checkpoints give clear errors that name the file and the tensor; nothing crashes. */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { parseLlavaConfig } from '../../sidecar/src/model/config.js';
import { CheckpointError, readSafetensorsHeader } from '../../sidecar/src/model/safetensors.js';
import { LlavaRuntime } from '../../sidecar/src/runtime/llava.js';

const source = join(__dirname, '../fixtures/models/tiny-llava-llama');
const scratch = mkdtempSync(join(tmpdir(), 'lookm-checkpoint-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

let copies = 0;
function brokenCopy(breakIt: (dir: string) => void): string {
  const dir = join(scratch, String(copies++));
  cpSync(source, dir, { recursive: true });
  breakIt(dir);
  return dir;
}

function editJson(file: string, edit: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(json);
  writeFileSync(file, JSON.stringify(json));
}

/** Rewrites one header entry of model.safetensors, keeping the header length. */
function editHeader(file: string, edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): void {
  const bytes = readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
  edit(header);
  const text = Buffer.from(JSON.stringify(header).padEnd(length, ' '));
  assert.equal(text.length, length, 'edited header must keep its length');
  text.copy(bytes, 8);
  writeFileSync(file, bytes);
}

async function expectLoadError(dir: string, pattern: RegExp): Promise<void> {
  await assert.rejects(LlavaRuntime.load(dir, { threads: 1 }), (error: Error) => {
    assert.ok(error instanceof CheckpointError, `${error.name}: ${error.message}`);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('broken checkpoints', () => {
  it('a missing folder', async () => expectLoadError(join(scratch, 'nope'), /model folder not found/));

  it('an unknown architecture', async () => {
    const dir = brokenCopy((d) => editJson(join(d, 'config.json'), (c) => (c.architectures = ['Blip2ForConditionalGeneration'])));
    await expectLoadError(dir, /architecture "Blip2ForConditionalGeneration" is not supported/);
  });

  it('an unsupported text model', async () => {
    const dir = brokenCopy((d) => editJson(join(d, 'config.json'), (c) => ((c.text_config as Record<string, unknown>).model_type = 'gpt2')));
    await expectLoadError(dir, /text model_type "gpt2" is not supported/);
  });

  it('a config field of the wrong type', async () => {
    const dir = brokenCopy((d) => editJson(join(d, 'config.json'), (c) => ((c.text_config as Record<string, unknown>).hidden_size = 'large')));
    await expectLoadError(dir, /config\.json: .*hidden_size/s);
  });

  it('a missing tensor', async () => {
    const dir = brokenCopy((d) =>
      editHeader(join(d, 'model.safetensors'), (h) => {
        h['language_model.model.layers.1.mlp.up_proj.wrong'] = h['language_model.model.layers.1.mlp.up_proj.weight'];
        delete h['language_model.model.layers.1.mlp.up_proj.weight'];
      }),
    );
    await expectLoadError(dir, /tensor "text\.layers\.1\.mlp\.up_proj\.weight" is missing/);
  });

  it('a shape that disagrees with config.json', async () => {
    const dir = brokenCopy((d) => editJson(join(d, 'config.json'), (c) => ((c.text_config as Record<string, unknown>).intermediate_size = 96)));
    await expectLoadError(dir, /tensor "language_model\.model\.layers\.0\.mlp\.gate_proj\.weight" in .*model\.safetensors has shape \[128, 64\], config\.json implies \[96, 64\]/);
  });

  it('a truncated weights file', async () => {
    let size = 0;
    const dir = brokenCopy((d) => {
      const file = join(d, 'model.safetensors');
      size = 8 + Number(readFileSync(file).readBigUInt64LE(0)) + 1000; // the header and 1000 bytes of data
      truncateSync(file, size);
    });
    await expectLoadError(dir, new RegExp(`model\\.safetensors: truncated: tensor ".+" ends at byte \\d+ of a ${size}-byte file`));
  });

  it('a corrupt header', async () => {
    const dir = brokenCopy((d) => {
      const file = join(d, 'model.safetensors');
      const bytes = readFileSync(file);
      bytes.writeBigUInt64LE(1n << 40n, 0);
      writeFileSync(file, bytes);
    });
    await expectLoadError(dir, /model\.safetensors: corrupt header: declares \d+ header bytes/);
  });

  it('offsets that disagree with the dtype and shape', async () => {
    const dir = brokenCopy((d) => editHeader(join(d, 'model.safetensors'), (h) => (h['language_model.model.norm.weight'].data_offsets[1] -= 4)));
    await expectLoadError(dir, /tensor "language_model\.model\.norm\.weight": F32\[64\] needs 256 bytes, data_offsets span 252/);
  });

  it('a missing tokenizer', async () => {
    const dir = brokenCopy((d) => rmSync(join(d, 'tokenizer.json')));
    await expectLoadError(dir, /tokenizer\.json not found/);
  });

  it('an index naming a file outside the folder', () => {
    const dir = brokenCopy((d) => writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../../etc/passwd' } })));
    assert.throws(() => Checkpoint.open(dir), /names a file outside the model folder/);
  });

  it('parses both tiny configs', () => {
    for (const model of ['tiny-llava-llama', 'tiny-llava-qwen2']) {
      const config = parseLlavaConfig(JSON.parse(readFileSync(join(__dirname, '../fixtures/models', model, 'config.json'), 'utf8')));
      assert.equal(config.text.numLayers, 2);
    }
    assert.ok(readSafetensorsHeader(join(source, 'model.safetensors')).size > 0);
  });

  it('reads the context length, or takes transformers\' default for the model type', () => {
    const raw = JSON.parse(readFileSync(join(__dirname, '../fixtures/models/tiny-llava-llama/config.json'), 'utf8')) as { text_config: Record<string, unknown> };
    assert.equal(parseLlavaConfig(raw).text.maxPositionEmbeddings, 512);
    delete raw.text_config.max_position_embeddings;
    const defaults = { llama: 2048, mistral: 131072, qwen2: 32768 };
    for (const [modelType, positions] of Object.entries(defaults)) {
      assert.equal(parseLlavaConfig({ ...raw, text_config: { ...raw.text_config, model_type: modelType } }).text.maxPositionEmbeddings, positions, modelType);
    }
  });
});
