/** Broken checkpoints give clear errors that name the file and the tensor; nothing crashes. */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { parseLlavaConfig } from '../../sidecar/src/model/architectures/llava/config.js';
import { CheckpointError, readSafetensorsHeader } from '../../sidecar/src/model/safetensors.js';
import { checkpointErrorOf } from './checkpointError.js';
import { tokensPerImage } from '../../sidecar/src/model/architectures/llava/graph.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { hostileModels, SECRET, writeSafetensors } from '../../tools/fuzz/hostileModels.js';

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
  await assert.rejects(OnnxModelRuntime.load(dir, { threads: 1 }), (error: Error) => {
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

  it('a pre-quantized checkpoint (AWQ, GPTQ, bitsandbytes), named before any weight is looked for', async () => {
    const dir = brokenCopy((d) => editJson(join(d, 'config.json'), (c) => (c.quantization_config = { quant_method: 'awq', bits: 4, group_size: 128 })));
    await expectLoadError(dir, /quantization_config \(quant_method "awq"\) is not supported: the weights must be F32, F16 or BF16/);
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

const tinyConfig = (): Record<string, Record<string, unknown>> => JSON.parse(readFileSync(join(source, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;

/** parseLlavaConfig's error for the tiny config with `edit` applied. */
function configError(edit: (c: Record<string, Record<string, unknown>>) => void): string {
  const config = tinyConfig();
  edit(config);
  return checkpointErrorOf(() => parseLlavaConfig(config));
}

describe('config.json sizes', () => {
  it('refuses a head_dim of 1e9 at once, naming the field (it once took 280 s and 3.6 GB to fail)', () => {
    const started = performance.now();
    assert.match(configError((c) => (c.text_config.head_dim = 1e9)), /config\.json: .*head_dim/s);
    assert.ok(performance.now() - started < 100);
  });

  it('bounds every size field, naming it', () => {
    const fields: [string, string][] = [
      ['text_config', 'hidden_size'],
      ['text_config', 'num_hidden_layers'],
      ['text_config', 'num_attention_heads'],
      ['text_config', 'num_key_value_heads'],
      ['text_config', 'intermediate_size'],
      ['text_config', 'vocab_size'],
      ['text_config', 'max_position_embeddings'],
      ['vision_config', 'hidden_size'],
      ['vision_config', 'num_hidden_layers'],
      ['vision_config', 'num_attention_heads'],
      ['vision_config', 'intermediate_size'],
      ['vision_config', 'image_size'],
      ['vision_config', 'patch_size'],
    ];
    for (const [section, field] of fields) {
      const message = configError((c) => (c[section][field] = 2 ** 40));
      assert.match(message, new RegExp(`config\\.json: .*Too big.*${section}\\.${field}`, 's'), `${section}.${field}: ${message}`);
    }
  });

  it('needs hidden_size / heads to divide evenly when no head_dim is given', () => {
    const message = configError((c) => {
      delete c.text_config.head_dim;
      c.text_config.hidden_size = 66;
    });
    assert.match(message, /text_config\.hidden_size 66 is not divisible by num_attention_heads 4, and no head_dim is given/);
  });

  it('needs an even head size for rotary embeddings', () => {
    assert.match(configError((c) => (c.text_config.head_dim = 15)), /head size 15 is odd/);
  });

  it('takes an explicit head_dim other than hidden_size / heads, as Llama, Mistral and Qwen2 do', () => {
    const config = tinyConfig();
    config.text_config.head_dim = 32;
    assert.equal(parseLlavaConfig(config).text.headDim, 32);
  });

  it('checks the vision sizes fit together', () => {
    assert.match(configError((c) => (c.vision_config.num_attention_heads = 3)), /vision_config\.hidden_size 32 is not divisible by num_attention_heads 3/);
    assert.match(configError((c) => (c.vision_config.patch_size = 64)), /patch_size 64 is larger than image_size 32/);
    assert.match(configError((c) => (c.vision_config.num_channels = 4)), /num_channels 4 is not supported/);
    assert.match(configError((c) => Object.assign(c.vision_config, { image_size: 4096, patch_size: 4 })), /makes 1048576 patches per image/);
  });

  it('counts whole patches only when the patch size does not divide the image size (SigLIP 384 / 14)', () => {
    const config = tinyConfig();
    Object.assign(config.vision_config, { image_size: 384, patch_size: 14 });
    assert.equal(tokensPerImage(parseLlavaConfig(config)), 27 * 27);
  });

  it('quotes short names from config.json, never long values', () => {
    const message = configError((c) => (c.text_config.model_type = `${SECRET} ${'x'.repeat(100)}`));
    assert.doesNotMatch(message, new RegExp(SECRET));
    assert.match(message, /text model_type a \d+-character string is not supported/);
  });

  it('refuses a config whose sizes the weight files cannot hold, before building anything', () => {
    const dir = brokenCopy((d) => editJson(join(d, 'config.json'), (c) => ((c.text_config as Record<string, unknown>).vocab_size = 4_000_000)));
    assert.throws(() => Checkpoint.open(dir), /config\.json implies at least \d+ parameters \(\d+\.\d+ GB as 16-bit floats\), but the weights in .* hold \d+ bytes/);
  });
});

describe('JSON files of the model folder', () => {
  it('a config.json linked to another file: the error names the file, never its contents', async () => {
    const dir = brokenCopy((d) => {
      writeFileSync(join(d, 'secret.txt'), `${SECRET}\nsecond line\n`);
      rmSync(join(d, 'config.json'));
      symlinkSync(join(d, 'secret.txt'), join(d, 'config.json'));
    });
    await assert.rejects(OnnxModelRuntime.load(dir, { threads: 1 }), (error: Error) => {
      assert.match(error.message, /config\.json is not valid JSON/);
      assert.ok(!error.message.includes(SECRET), error.message);
      return true;
    });
  });

  it('says where JSON stops being valid, without quoting it', () => {
    const dir = brokenCopy((d) => writeFileSync(join(d, 'config.json'), `{"architectures": ["x"],\n  "secret": ${SECRET}}`));
    assert.throws(
      () => Checkpoint.open(dir),
      (error: Error) => !error.message.includes(SECRET) && /config\.json is not valid JSON( at line 2, column \d+)? \(/.test(error.message),
    );
  });

  it('refuses a tokenizer.json over 64 MiB before reading it', async () => {
    const dir = brokenCopy((d) => truncateSync(join(d, 'tokenizer.json'), 65 * 2 ** 20));
    const started = performance.now();
    await expectLoadError(dir, /tokenizer\.json is 68157440 bytes, over the 67108864-byte limit/);
    assert.ok(performance.now() - started < 2000);
  });

  it('refuses a JSON file that is not an object', () => {
    const dir = brokenCopy((d) => writeFileSync(join(d, 'config.json'), '[1, 2]'));
    assert.throws(() => Checkpoint.open(dir), /config\.json is not a JSON object/);
  });

  it('refuses an index whose weight_map names something other than files', () => {
    const dir = brokenCopy((d) => writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 7 } })));
    assert.throws(() => Checkpoint.open(dir), /weight_map values must be file names/);
  });

  it('refuses a tensor given by two shards', () => {
    const dir = brokenCopy((d) => {
      cpSync(join(d, 'model.safetensors'), join(d, 'copy.safetensors'));
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model.safetensors', b: 'copy.safetensors' } }));
    });
    assert.throws(() => Checkpoint.open(dir), /tensor ".+" appears twice: as ".+" in .*model\.safetensors and as ".+" in .*copy\.safetensors/);
  });
});

describe('crafted safetensors files', () => {
  const F32x64 = (begin: number) => ({ dtype: 'F32', shape: [64], data_offsets: [begin, begin + 256] as [number, number] });
  let files = 0;
  /** Writes a crafted file and returns readSafetensorsHeader's error. */
  function headerError(header: Parameters<typeof writeSafetensors>[1], data: Buffer): string {
    const file = join(scratch, `crafted-${files++}.safetensors`);
    writeSafetensors(file, header, data);
    const started = performance.now();
    try {
      readSafetensorsHeader(file);
    } catch (error) {
      assert.ok(error instanceof CheckpointError, String(error));
      assert.ok(performance.now() - started < 500, `${performance.now() - started} ms`);
      return error.message;
    }
    return assert.fail('the header was accepted');
  }

  it('accepts tensors laid end to end over the whole data section', () => {
    const file = join(scratch, 'good.safetensors');
    writeSafetensors(file, { a: F32x64(0), b: F32x64(256), empty: { dtype: 'F32', shape: [0], data_offsets: [512, 512] } }, Buffer.alloc(512));
    assert.deepEqual([...readSafetensorsHeader(file).keys()], ['a', 'b', 'empty']);
  });

  it('refuses overlapping offsets', () => {
    assert.match(headerError({ a: F32x64(0), b: F32x64(128) }, Buffer.alloc(384)), /corrupt header: tensor "b" overlaps tensor "a"/);
    // The probe's case: every tensor at the same bytes, a file loading as many times its size.
    assert.match(headerError({ a: F32x64(0), b: F32x64(0), c: F32x64(0) }, Buffer.alloc(256)), /overlaps/);
  });

  it('refuses a hole between tensors and bytes after the last one', () => {
    assert.match(headerError({ a: F32x64(0), b: F32x64(512) }, Buffer.alloc(768)), /corrupt header: 256 bytes before tensor "b" belong to no tensor/);
    assert.match(headerError({ a: F32x64(0) }, Buffer.alloc(300)), /corrupt header: the last 44 bytes of the file belong to no tensor/);
  });

  it('refuses offsets past the end of the file', () => {
    assert.match(headerError({ a: F32x64(0), b: F32x64(256) }, Buffer.alloc(300)), /truncated: tensor "b" ends at byte \d+ of a \d+-byte file/);
  });

  it('refuses a tensor of 2^40 elements, and one whose byte count overflows a double', () => {
    assert.match(headerError({ a: { dtype: 'F32', shape: [2 ** 20, 2 ** 20], data_offsets: [0, 2 ** 42] } }, Buffer.alloc(16)), /truncated: tensor "a" ends at byte/);
    assert.match(headerError({ a: { dtype: 'U8', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 16] } }, Buffer.alloc(16)), /tensor "a": U8\[1073741824, 1073741824, 1073741824\] needs 1237940039285380274899124224 bytes, data_offsets span 16/);
  });

  it('refuses a header length of 2^60', () => {
    const file = join(scratch, 'huge-header.safetensors');
    const bytes = Buffer.alloc(64);
    bytes.writeBigUInt64LE(2n ** 60n, 0);
    writeFileSync(file, bytes);
    assert.throws(() => readSafetensorsHeader(file), /corrupt header: declares 1152921504606846976 header bytes in a 64-byte file/);
  });

  it('refuses a header that is not JSON, without quoting it', () => {
    const message = headerError(`{${SECRET}`, Buffer.alloc(0));
    assert.match(message, /corrupt header: not JSON/);
    assert.ok(!message.includes(SECRET));
    assert.match(headerError(` {"a": ${JSON.stringify(F32x64(0))}}`, Buffer.alloc(256)), /corrupt header: does not start with "\{"/);
  });

  it('refuses duplicate tensor names (JSON.parse would keep the last one silently)', () => {
    const entry = JSON.stringify(F32x64(0));
    assert.match(headerError(`{"a": ${entry}, "a": ${entry}}`, Buffer.alloc(256)), /corrupt header: tensor "a" is named twice/);
    // The same name inside an entry, or as a string value, is no duplicate.
    const file = join(scratch, 'nested.safetensors');
    writeSafetensors(file, `{"__metadata__": {"a": "a"}, "a": ${entry}}`, Buffer.alloc(256));
    assert.equal(readSafetensorsHeader(file).size, 1);
  });
});

describe('hostile model folders fail at once, quoting no file contents', () => {
  for (const model of hostileModels()) {
    it(model.name, async () => {
      const dir = brokenCopy(model.breakIt);
      const started = performance.now();
      await assert.rejects(OnnxModelRuntime.load(dir, { threads: 1 }), (error: Error) => {
        assert.ok(error instanceof CheckpointError, `${error.name}: ${error.message}`);
        assert.match(error.message, model.error);
        assert.ok(!error.message.includes(SECRET), error.message);
        return true;
      });
      assert.ok(performance.now() - started < 2000, `${(performance.now() - started).toFixed(0)} ms`);
    });
  }
});
