/**
 * The config.json files of real Hub checkpoints (verbatim, test/fixtures/configs/hub, provenance in
 * SOURCES.md) through the runtime's own parser: the supported ones parse to what transformers reads
 * from the same file (transformers-reference.json, written by tools/model/hub_config_reference.py
 * with transformers' config classes and models built on the meta device), and the others are
 * refused with a message naming the architecture.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isIdefics3Config, tokensPerFrame } from '../../sidecar/src/model/architectures/idefics3/config.js';
import { isLlavaConfig } from '../../sidecar/src/model/architectures/llava/config.js';
import { tokensPerImage } from '../../sidecar/src/model/architectures/llava/graph.js';
import { isLlavaNextConfig } from '../../sidecar/src/model/architectures/llavaNext/config.js';
import type { Qwen2VLModelConfig } from '../../sidecar/src/model/architectures/qwen2vl/index.js';
import { parseModelConfig, supportedArchitectures } from '../../sidecar/src/model/architectures/registry.js';
import type { RopeScaling } from '../../sidecar/src/model/config.js';
import { countParameters, kvBytesPerToken, weightBytes } from '../../sidecar/src/model/footprint.js';
import { renderHubTable, renderReadmeModels } from '../../tools/model/hubTable.js';
import { checkpointErrorOf } from './checkpointError.js';

const hub = join(__dirname, '../fixtures/configs/hub');
const REFERENCE = 'transformers-reference.json';

interface TextReference {
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  ropeTheta: number;
  ropeScaling: Record<string, number | string> | null;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  layerWindows: (number | null)[];
}
interface Reference {
  architecture: string;
  supported?: false;
  text?: TextReference;
  vision?: { modelType: string; hiddenSize: number; numLayers: number; numHeads: number; intermediateSize: number; imageSize: number; patchSize: number };
  imageTokenIndex?: number;
  scaleFactor?: number;
  visionFeatureLayer?: number | number[];
  selectStrategy?: string;
  imageTokens?: number;
  imageGridPinpoints?: [number, number][];
  visionAspectRatio?: string | null;
  parameters?: number;
  /** Qwen2-VL / Qwen2.5-VL: the M-RoPE sections, the image token and the vision tower. */
  qwen?: { mropeSection: number[]; imageTokenId: number; vision: Record<string, unknown> };
}

const reference = (JSON.parse(readFileSync(join(hub, REFERENCE), 'utf8')) as { configs: Record<string, Reference> }).configs;
const fixtures = readdirSync(hub).filter((f) => f.endsWith('.json') && f !== REFERENCE).sort();
const raw = (file: string) => JSON.parse(readFileSync(join(hub, file), 'utf8')) as Record<string, unknown>;
const supported = fixtures.filter((f) => reference[f]?.supported !== false);
const refused = fixtures.filter((f) => reference[f]?.supported === false);

/** transformers' rope_scaling dict in the parser's form. */
function ropeScaling(r: TextReference['ropeScaling']): RopeScaling | null {
  if (!r) return null;
  const type = r.rope_type ?? r.type;
  if (type === 'linear') return { type, factor: Number(r.factor) };
  assert.equal(type, 'llama3', `a reference rope_scaling the test does not know: ${JSON.stringify(r)}`);
  return { type: 'llama3', factor: Number(r.factor), lowFreqFactor: Number(r.low_freq_factor), highFreqFactor: Number(r.high_freq_factor), originalMaxPositions: Number(r.original_max_position_embeddings) };
}

/**
 * The RoPE base a file means. A config.json saved by transformers 5 keeps it in `rope_parameters`,
 * which transformers 4.57 (the reference) does not read and silently replaces by 10000; the
 * checkpoint was trained with the value in the file.
 */
function ropeTheta(file: string, r: TextReference): number {
  const params = raw(file).rope_parameters as { rope_theta?: number } | undefined;
  return params?.rope_theta ?? r.ropeTheta;
}

describe('config.json of real Hub checkpoints', () => {
  it('every fixture has its provenance in SOURCES.md and a transformers reference', () => {
    const sources = readFileSync(join(hub, 'SOURCES.md'), 'utf8');
    for (const file of fixtures) {
      assert.ok(sources.includes(`\`${file}\``), `${file} is not in SOURCES.md`);
      assert.ok(reference[file], `${file} is not in ${REFERENCE}: run tools/model/hub_config_reference.py`);
    }
    assert.ok(supported.length >= 30 && refused.length >= 2, `${supported.length} supported, ${refused.length} refused`);
  });

  it('every supported family has a real Hub checkpoint here that loads (its memory in the README, its entry possible in Download Model)', () => {
    const loaded = new Set(supported.map((file) => parseModelConfig(raw(file)).architecture));
    const missing = supportedArchitectures().filter((architecture) => !loaded.has(architecture));
    assert.deepEqual(missing, [], `no verbatim config.json of a Hub checkpoint for ${missing.join(', ')}`);
  });

  for (const file of supported) {
    it(`${file} parses to the sizes transformers reads`, () => {
      const ref = reference[file];
      const config = parseModelConfig(raw(file));
      assert.equal(config.architecture, ref.architecture);
      const r = ref.text!;
      const t = config.text;
      if (ref.qwen) {
        // The Qwen2-VL text model is Qwen2's decoder with M-RoPE: the sections are its rope_scaling (no frequency scaling).
        const q = (config as Qwen2VLModelConfig).qwen;
        assert.equal(t.modelType, 'qwen2');
        assert.match(r.modelType, /^qwen2(_5)?_vl_text$/);
        assert.deepEqual(q.text.mropeSection, ref.qwen.mropeSection);
        assert.equal(t.ropeScaling, null);
        assert.equal(q.imageTokenId, ref.qwen.imageTokenId);
        const v = q.vision;
        const vision = { depth: v.depth, hiddenSize: v.hiddenSize, numHeads: v.numHeads, intermediateSize: v.intermediateSize, patchSize: v.patchSize, temporalPatchSize: v.temporalPatchSize, spatialMergeSize: v.spatialMergeSize, outHiddenSize: v.outHiddenSize, windowSize: v.windowSize, fullAttentionBlocks: v.fullAttentionBlocks };
        assert.deepEqual(vision, ref.qwen.vision);
      }
      assert.deepEqual(
        {
          modelType: ref.qwen ? r.modelType : t.modelType, hiddenSize: t.hiddenSize, numLayers: t.numLayers, numHeads: t.numHeads, numKvHeads: t.numKvHeads, headDim: t.headDim,
          intermediateSize: t.intermediateSize, vocabSize: t.vocabSize, maxPositionEmbeddings: t.maxPositionEmbeddings, rmsNormEps: t.rmsNormEps,
          tieWordEmbeddings: t.tieWordEmbeddings, layerWindows: t.layerWindows, ropeTheta: t.ropeTheta, ropeScaling: ref.qwen ? r.ropeScaling : t.ropeScaling,
        },
        {
          modelType: r.modelType, hiddenSize: r.hiddenSize, numLayers: r.numLayers, numHeads: r.numHeads, numKvHeads: r.numKvHeads, headDim: r.headDim,
          intermediateSize: r.intermediateSize, vocabSize: r.vocabSize, maxPositionEmbeddings: r.maxPositionEmbeddings, rmsNormEps: r.rmsNormEps,
          tieWordEmbeddings: r.tieWordEmbeddings, layerWindows: r.layerWindows, ropeTheta: ropeTheta(file, r), ropeScaling: ref.qwen ? r.ropeScaling : ropeScaling(r.ropeScaling),
        },
      );
      assert.equal(isLlavaConfig(config) || isLlavaNextConfig(config) || isIdefics3Config(config), ref.vision !== undefined);
      if (isIdefics3Config(config)) {
        // Sizes only: transformers keeps the file's vision model_type ("idefics3"); the parser names the tower it builds.
        const { hiddenSize, numLayers, numHeads, intermediateSize, imageSize, patchSize } = config.vision;
        assert.deepEqual({ modelType: ref.vision!.modelType, hiddenSize, numLayers, numHeads, intermediateSize, imageSize, patchSize }, ref.vision);
        assert.equal(config.imageTokenIndex, ref.imageTokenIndex);
        assert.equal(config.scaleFactor, ref.scaleFactor);
        assert.equal(tokensPerFrame(config), ref.imageTokens, 'image tokens per frame');
      }
      if (isLlavaNextConfig(config)) {
        // Any resolution: the pinpoints and OneVision's anyres_max_N as transformers reads them; imageTokens per tile.
        assert.deepEqual(config.pinpoints, ref.imageGridPinpoints);
        assert.equal(config.maxTiles === null ? null : `anyres_max_${config.maxTiles}`, ref.visionAspectRatio ?? null);
      }
      if (isLlavaConfig(config) || isLlavaNextConfig(config)) {
        const { modelType, hiddenSize, numLayers, numHeads, intermediateSize, imageSize, patchSize } = config.vision;
        assert.deepEqual({ modelType, hiddenSize, numLayers, numHeads, intermediateSize, imageSize, patchSize }, ref.vision);
        assert.equal(config.imageTokenIndex, ref.imageTokenIndex);
        assert.deepEqual(config.visionFeatureLayers, [ref.visionFeatureLayer].flat());
        assert.equal(config.selectStrategy, ref.selectStrategy);
        assert.equal(tokensPerImage(config), ref.imageTokens, 'image tokens per image');
      }
    });

    it(`${file} has exactly the parameters of transformers' model`, () => {
      const counts = countParameters(parseModelConfig(raw(file)));
      assert.equal(counts.layerProjections + counts.other, reference[file].parameters);
    });
  }

  for (const file of refused) {
    it(`${file} is refused by its architecture's name`, () => {
      const architecture = reference[file].architecture;
      assert.ok(!supportedArchitectures().includes(architecture));
      const message = checkpointErrorOf(() => parseModelConfig(raw(file)));
      assert.ok(message.includes(`architecture "${architecture}" is not supported`), message);
      for (const name of supportedArchitectures()) assert.ok(message.includes(name), `the message lists what is supported: ${message}`);
    });
  }

  it("transformers 5's rope_parameters carries the same RoPE as rope_theta + rope_scaling (Llama 3.2's llama3 scaling)", () => {
    const { rope_theta, rope_scaling, ...rest } = raw('meta-llama--Llama-3.2-1B-Instruct.json') as { rope_theta: number; rope_scaling: object };
    const saved = parseModelConfig({ ...rest, rope_parameters: { ...rope_scaling, rope_theta } });
    const original = parseModelConfig(raw('meta-llama--Llama-3.2-1B-Instruct.json'));
    assert.deepEqual([saved.text.ropeTheta, saved.text.ropeScaling], [original.text.ropeTheta, original.text.ropeScaling]);
    const message = checkpointErrorOf(() => parseModelConfig({ ...rest, rope_parameters: { rope_type: 'linear', rope_theta } }));
    assert.match(message, /rope_parameters rope_type "linear" has no factor/);
  });

  it('parameter counts agree with the ones the model cards publish', () => {
    // As the cards state them (Qwen2.5 cards: "Number of Parameters"; SmolLM2 and TinyLlama by name).
    const published: Record<string, string> = {
      'Qwen--Qwen2.5-0.5B-Instruct.json': '0.49B',
      'Qwen--Qwen2.5-1.5B-Instruct.transformers5.json': '1.54B',
      'Qwen--Qwen2.5-3B.json': '3.09B',
      'Qwen--Qwen2.5-7B.json': '7.61B',
      'HuggingFaceTB--SmolLM2-135M.json': '135M',
      'HuggingFaceTB--SmolLM2-1.7B-Instruct.json': '1.7B',
      'TinyLlama--TinyLlama-1.1B-Chat-v1.0.json': '1.1B',
    };
    for (const [file, stated] of Object.entries(published)) {
      const { layerProjections, other } = countParameters(parseModelConfig(raw(file)));
      const total = layerProjections + other;
      // Within one unit of the last digit stated (the cards round some and truncate others).
      const decimals = stated.slice(0, -1).split('.')[1]?.length ?? 0;
      const inUnits = total / (stated.endsWith('M') ? 1e6 : 1e9);
      assert.ok(Math.abs(inUnits - Number(stated.slice(0, -1))) <= 10 ** -decimals, `${file}: ${total} parameters, the card says ${stated}`);
    }
  });

  it("docs/models.md holds tools/model/hubTable.ts's current table", () => {
    const doc = readFileSync(join(__dirname, '../../docs/models.md'), 'utf8');
    const block = /<!-- hubTable:start -->\n([\s\S]*?)\n<!-- hubTable:end -->/.exec(doc)?.[1];
    assert.equal(block, renderHubTable(), 'regenerate the table: npx tsx tools/model/hubTable.ts');
  });

  it("the README's model table is tools/model/hubTable.ts --readme's current one, every family listed", () => {
    const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
    const block = /<!-- readmeModels:start -->\n([\s\S]*?)\n<!-- readmeModels:end -->/.exec(readme)?.[1];
    assert.equal(block, renderReadmeModels(), 'regenerate the table: npx tsx tools/model/hubTable.ts --readme');
    for (const family of supportedArchitectures()) assert.ok(block.includes(`| ${family} |`), `${family} is missing from the README's model table`);
  });

  it('memory figures follow from the counts (4-bit projections: 4 bits + a float32 scale per 32)', () => {
    const config = parseModelConfig(raw('Qwen--Qwen2.5-0.5B-Instruct.json'));
    const { layerProjections, other, unread } = countParameters(config);
    assert.equal(unread, 0);
    // Tied embeddings: the LM head's matrix is the only copy held (lookups read rows from the file).
    assert.equal(weightBytes(config, 32), (layerProjections + other) * 4);
    // 8 bits: the LM head (the tied embedding table) quantized like the projections.
    const head = 151936 * 896;
    assert.equal(weightBytes(config, 8), (layerProjections + head) * 1.125 + (other - head) * 4);
    assert.equal(weightBytes(config, 4), layerProjections * 0.625 + other * 4);
    assert.equal(kvBytesPerToken(config), 24 * 2 * 64 * 2 * 4);
    const llava = parseModelConfig(raw('llava-hf--llava-1.5-7b-hf.json'));
    // vision_feature_layer -2: the last of CLIP's 24 layers and its post-layernorm are never read.
    assert.equal(countParameters(llava).unread, 12_596_224 + 2 * 1024);
  });
});
