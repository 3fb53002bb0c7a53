/**
 * LLaVA-NeXT / OneVision: the any-resolution layout against transformers' own arithmetic on many
 * image sizes (tools/model/make_llavanext.py `record_layouts`: llava-v1.6's and llava-onevision's
 * real settings and the tiny checkpoints'), config.json's defaults and refusals, and the
 * processor files' refusals.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { anyresLayout } from '../../sidecar/src/model/architectures/llavaNext/anyres.js';
import { parseLlavaNextConfig } from '../../sidecar/src/model/architectures/llavaNext/config.js';
import { llavaNext } from '../../sidecar/src/model/architectures/llavaNext/index.js';
import { LlavaNextProcessor } from '../../sidecar/src/model/architectures/llavaNext/processor.js';
import { readSafetensorsHeader } from '../../sidecar/src/model/safetensors.js';

const root = join(__dirname, '../..');
const models = join(root, 'test/fixtures/models');

interface Layouts {
  config: { name: string; onevision: boolean; image_size: number; patch_size: number; pinpoints: [number, number][]; aspect?: string };
  cases: { width: number; height: number; best: [number, number]; frames: number; tokens: number }[];
}

describe('LLaVA-NeXT any-resolution layout', () => {
  const recorded = JSON.parse(readFileSync(join(root, 'test/fixtures/parity/llava-next-layouts.json'), 'utf8')) as Layouts[];

  for (const { config, cases } of recorded) {
    it(`${config.name}: transformers' pinpoint, tiles and feature rows for ${cases.length} image sizes`, () => {
      const settings = {
        pinpoints: config.pinpoints,
        tile: config.image_size,
        grid: Math.floor(config.image_size / config.patch_size),
        maxTiles: config.aspect ? Number(config.aspect.slice('anyres_max_'.length)) : null,
      };
      for (const c of cases) {
        const layout = anyresLayout({ width: c.width, height: c.height }, settings);
        assert.deepEqual([layout.best.width, layout.best.height, layout.frames, layout.tokens], [...c.best, c.frames, c.tokens], `${c.width} x ${c.height}`);
      }
    });
  }

  it('cuts the padding\'s columns for an image wider than its pinpoint, its rows for one taller (the fixtures\' images)', () => {
    const settings = { pinpoints: [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]] as [number, number][], tile: 32, grid: 4, maxTiles: null };
    // 150 x 56 at 96 x 32: resized to 86 x 32, 5 columns of padding each side; 12 feature columns, 10 kept.
    const wide = anyresLayout({ width: 150, height: 56 }, settings);
    assert.deepEqual([wide.rows, wide.cols, wide.pad, wide.unpadded], [1, 3, { top: 0, left: 5 }, { rows: 4, cols: 10, firstRow: 0, firstCol: 1 }]);
    // 300 x 220 at 64 x 64: resized to 64 x 47, padding above and below; 8 feature rows, 6 kept.
    const large = anyresLayout({ width: 300, height: 220 }, settings);
    assert.deepEqual([large.rows, large.cols, large.pad, large.unpadded], [2, 2, { top: 8, left: 0 }, { rows: 6, cols: 8, firstRow: 1, firstCol: 0 }]);
  });

  it('downscales OneVision\'s unpadded grid past anyres_max_N by sqrt(area / N tiles), as Python floors it', () => {
    const layout = anyresLayout({ width: 300, height: 220 }, { pinpoints: [[120, 144]], tile: 24, grid: 4, maxTiles: 9 });
    assert.deepEqual([layout.unpadded.rows, layout.unpadded.cols, layout.kept.rows, layout.kept.cols, layout.tokens], [18, 24, 10, 13, 16 + 10 * 14]);
  });
});

describe('LLaVA-NeXT / OneVision config', () => {
  const next = JSON.parse(readFileSync(join(models, 'tiny-llava-next/config.json'), 'utf8')) as Record<string, unknown>;
  const onevision = JSON.parse(readFileSync(join(models, 'tiny-llava-onevision/config.json'), 'utf8')) as Record<string, unknown>;

  it('takes each class\'s defaults for what config.json leaves out', () => {
    const n = parseLlavaNextConfig({ architectures: ['LlavaNextForConditionalGeneration'] });
    assert.deepEqual([n.text.modelType, n.vision.modelType, n.vision.imageSize, n.selectStrategy, n.visionFeatureLayers, n.imageTokenIndex, n.pinpoints.length, n.maxTiles], ['llama', 'clip_vision_model', 336, 'default', [-2], 32000, 5, null]);
    const o = parseLlavaNextConfig({ architectures: ['LlavaOnevisionForConditionalGeneration'] });
    assert.deepEqual([o.text.modelType, o.vision.modelType, o.vision.imageSize, o.vision.hiddenSize, o.selectStrategy, o.visionFeatureLayers, o.imageTokenIndex, o.pinpoints.length, o.maxTiles], ['qwen2', 'siglip_vision_model', 384, 1152, 'full', [-1], 151646, 36, 9]);
    assert.deepEqual(o.pinpoints[7], [768, 768]);
    assert.equal(parseLlavaNextConfig({ ...onevision, vision_aspect_ratio: 'anyres_max_4' }).maxTiles, 4);
    assert.deepEqual(parseLlavaNextConfig({ ...next, vision_feature_layer: [-3, -1] }).visionFeatureLayers, [-3, -1]);
  });

  it('refuses what it does not support, naming the option', () => {
    assert.throws(() => parseLlavaNextConfig({ ...onevision, vision_aspect_ratio: 'anyres' }), /vision_aspect_ratio "anyres" is not supported \(anyres_max_N/);
    assert.throws(() => parseLlavaNextConfig({ ...next, vision_feature_select_strategy: 'full' }), /vision_feature_select_strategy "full" with a clip_vision_model tower gives 17 features per tile, not the 4 x 4 patch grid/);
    assert.throws(() => parseLlavaNextConfig({ ...onevision, vision_feature_select_strategy: 'default' }), /vision_feature_select_strategy "default" with a siglip_vision_model tower gives 15 features per tile/);
    assert.throws(() => parseLlavaNextConfig({ ...next, vision_feature_select_strategy: 'cls' }), /vision_feature_select_strategy "cls" is not supported/);
    assert.throws(() => parseLlavaNextConfig({ ...next, image_grid_pinpoints: [[32, 50]] }), /image_grid_pinpoints \[32, 50\] is not a multiple of the tile side 32/);
    assert.throws(() => parseLlavaNextConfig({ ...next, image_grid_pinpoints: [] }), /image_grid_pinpoints/);
    assert.throws(() => parseLlavaNextConfig({ ...next, vision_feature_layer: 9 }), /vision_feature_layer 9 is outside the vision tower's 4 hidden states/);
    assert.throws(() => parseLlavaNextConfig({ ...next, projector_hidden_act: 'relu6' }), /projector_hidden_act "relu6" is not supported/);
  });

  it('counts the image side\'s parameters as the checkpoint holds them (image_newline included)', () => {
    for (const model of ['tiny-llava-next', 'tiny-llava-onevision', 'tiny-llava-next-siglip', 'tiny-llava-onevision-clip']) {
      const dir = join(models, model);
      const entries = readSafetensorsHeader(join(dir, 'model.safetensors'));
      const held = [...entries].filter(([name]) => !name.startsWith('language_model.')).reduce((n, [, e]) => n + e.shape.reduce((a, b) => a * b, 1), 0);
      const config = parseLlavaNextConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
      const { read, unread } = llavaNext.imageSideParameters!(config);
      assert.equal(read + unread, held, model);
    }
  });
});

describe('LLaVA-NeXT / OneVision processor files', () => {
  /** A copy of a tiny checkpoint's folder with `file` changed by `edit`. */
  const withFile = (model: string, file: string, edit: (json: Record<string, unknown>) => Record<string, unknown>): string => {
    const dir = mkdtempSync(join(tmpdir(), 'llava-next-'));
    cpSync(join(models, model), dir, { recursive: true });
    writeFileSync(join(dir, file), JSON.stringify(edit(JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>)));
    return dir;
  };
  const open = (dir: string) => LlavaNextProcessor.open(dir, parseLlavaNextConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))));
  const cases: [string, string, (j: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
    ['tiny-llava-next', 'preprocessor_config.json', (j) => ({ ...j, crop_size: { height: 30, width: 30 } }), /crop_size.height 30 differs from vision_config.image_size 32/],
    ['tiny-llava-next', 'preprocessor_config.json', (j) => ({ ...j, size: { shortest_edge: 40 } }), /size.shortest_edge 40 differs from vision_config.image_size 32/],
    ['tiny-llava-next', 'preprocessor_config.json', (j) => ({ ...j, resample: 2 }), /resample: only 3/],
    ['tiny-llava-next', 'preprocessor_config.json', (j) => ({ ...j, image_grid_pinpoints: [[32, 64]] }), /image_grid_pinpoints differ from config.json's/],
    ['tiny-llava-next', 'processor_config.json', (j) => ({ ...j, patch_size: 4 }), /processor_config.json: patch_size 4 differs/],
    ['tiny-llava-onevision', 'preprocessor_config.json', (j) => ({ ...j, size: { height: 24, width: 48 } }), /size.width 48 differs from vision_config.image_size 24/],
    ['tiny-llava-onevision', 'processor_config.json', (j) => ({ ...j, num_image_tokens: 729 }), /num_image_tokens 729 differs/],
    ['tiny-llava-onevision', 'processor_config.json', (j) => ({ ...j, vision_aspect_ratio: 'anyres_max_4' }), /vision_aspect_ratio "anyres_max_4" differs/],
  ];
  for (const [model, file, edit, message] of cases) {
    it(`${model}: refuses ${file} ${String(message)}`, () => {
      const dir = withFile(model, file, edit);
      try {
        assert.throws(() => open(dir), message);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
  it('opens the tiny checkpoints\' own files (OneVision on CLIP: num_image_tokens counts the class token "default" drops)', () => {
    const perTile = { 'tiny-llava-next': 16, 'tiny-llava-onevision': 16, 'tiny-llava-next-siglip': 9, 'tiny-llava-onevision-clip': 16 };
    for (const [model, tokens] of Object.entries(perTile)) assert.equal(open(join(models, model)).tokensPerImage, tokens, model);
    const clip = withFile('tiny-llava-onevision-clip', 'processor_config.json', (j) => ({ ...j, num_image_tokens: 16 }));
    try {
      assert.throws(() => open(clip), /num_image_tokens 16 differs from config.json's model \(17\)/);
    } finally {
      rmSync(clip, { recursive: true, force: true });
    }
  });
});
