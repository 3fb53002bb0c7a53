/**
 * docs/models.md's per-checkpoint table, from the verbatim config.json files of real Hub
 * checkpoints (test/fixtures/configs/hub, provenance in its SOURCES.md) read with the runtime's own
 * parser: parameters, context, weights in memory at float32 and 4-bit, and the KV cache at 4K and
 * 32K tokens, in full and under LOOK-M keeping 20 %. test/runtime/hubConfigs.test.ts checks that
 * docs/models.md holds this output.
 *
 *     npx tsx tools/model/hubTable.ts            (docs/models.md's table)
 *     npx tsx tools/model/hubTable.ts --readme   (the README's model table)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { anyresTokenRange } from '../../sidecar/src/model/architectures/llavaNext/anyres.js';
import { isLlavaNextConfig } from '../../sidecar/src/model/architectures/llavaNext/config.js';
import type { Qwen2VLModelConfig } from '../../sidecar/src/model/architectures/qwen2vl/index.js';
import { architectureFor, parseModelConfig, supportedArchitectures } from '../../sidecar/src/model/architectures/registry.js';
import type { ModelConfig, VisionConfig } from '../../sidecar/src/model/config.js';
import { countParameters, kvBytesPerToken, weightBytes } from '../../sidecar/src/model/footprint.js';
import { CheckpointError } from '../../sidecar/src/model/safetensors.js';

export const HUB_CONFIGS = join(__dirname, '../../test/fixtures/configs/hub');
const REFERENCE = 'transformers-reference.json';
/** A stored copy that was cut short: its text up to the first key whose value is missing. */
const PREFIX = '.prefix.txt';

export interface HubCheckpoint {
  file: string;
  /** `org/name`, from the file name `org--name[.variant].json`. */
  repo: string;
  /** What the file name says besides the repository (`transformers5`, `first-upload`, `prefix`). */
  variant: string | undefined;
  /** The parsed config, or null when the runtime refuses it. */
  config: ModelConfig | null;
  refusal: string | undefined;
  architecture: string;
}

/** The raw config.json of a fixture; a cut-short copy ends at its last complete key. */
export function readHubConfig(file: string): Record<string, unknown> {
  const text = readFileSync(join(HUB_CONFIGS, file), 'utf8');
  if (!file.endsWith(PREFIX)) return JSON.parse(text) as Record<string, unknown>;
  const complete = text.trimEnd().replace(/,\s*"[^"]*":$/, '');
  return JSON.parse(`${complete}\n}`) as Record<string, unknown>;
}

export function hubCheckpoints(): HubCheckpoint[] {
  const files = readdirSync(HUB_CONFIGS).filter((f) => (f.endsWith('.json') && f !== REFERENCE) || f.endsWith(PREFIX));
  return files.sort().map((file) => {
    const [org, rest] = file.split('--');
    const [name, ...variants] = rest.replace(/\.json$|\.txt$/, '').split(/\.(?=[a-z])/);
    const raw = readHubConfig(file);
    const architecture = String((raw.architectures as unknown[])[0]);
    try {
      return { file, repo: `${org}/${name}`, variant: variants.join('.') || undefined, config: parseModelConfig(raw), refusal: undefined, architecture };
    } catch (error) {
      if (!(error instanceof CheckpointError)) throw error;
      return { file, repo: `${org}/${name}`, variant: variants.join('.') || undefined, config: null, refusal: error.message, architecture };
    }
  });
}

const GB = 1e9;
const gb = (bytes: number) => (bytes >= 10 * GB ? (bytes / GB).toFixed(1) : (bytes / GB).toFixed(2));
const billions = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : `${(n / 1e6).toFixed(0)}M`);

/** KV cache at `tokens`: full, and with LOOK-M keeping 20 % of the tokens; a dash past the context. */
function kv(config: ModelConfig, tokens: number): string {
  if (tokens > config.text.maxPositionEmbeddings) return '—';
  const full = kvBytesPerToken(config) * tokens;
  return `${gb(full)} / ${gb(full * 0.2)}`;
}

/** Qwen2-VL: an image's tokens follow its size, between Qwen2VLImageProcessor's default min_pixels and max_pixels (preprocessor_config.json may narrow them). */
function qwenImageTokens(qwen: Qwen2VLModelConfig['qwen']): string {
  const side = qwen.vision.patchSize * qwen.vision.spatialMergeSize;
  return `${Math.ceil((56 * 56) / side ** 2)}–${Math.floor((28 * 28 * 1280) / side ** 2)} by size`;
}

/** The repository, and which copy of its config.json when not the plain one. */
const checkpointName = (c: HubCheckpoint) => `${c.repo}${c.variant ? ` (${c.variant})` : ''}`;

function row(c: HubCheckpoint): string {
  const config = c.config!;
  const t = config.text;
  const { layerProjections, other } = countParameters(config);
  const name = checkpointName(c);
  const images = architectureFor(config.architecture).imageInput(config);
  const qwen = 'qwen' in config ? (config as Qwen2VLModelConfig).qwen : null;
  // Every tower so far has square patches; the config's shape is the architecture's own.
  const patch = (config.vision as Partial<VisionConfig> | null)?.patchSize;
  const side = qwen ? 'any size' : String(images?.imageSize);
  const vision = images ? ` · ${images.visionModel.replace(/_vision(_model)?$/, '')} ${side}${patch ? `/${patch}` : ''}` : '';
  const model = `${t.modelType}${vision}`;
  const windows = [...new Set(t.layerWindows)].filter((w) => w !== null);
  const context = `${t.maxPositionEmbeddings}${windows.length ? ` · window ${windows.join(', ')}` : ''}`;
  const rope = `${t.ropeTheta}${t.ropeScaling ? ` · ${t.ropeScaling.type} ×${t.ropeScaling.factor}` : ''}`;
  // Idefics3 splits an image into frames (tiles + a global image), each this many tokens.
  const perFrame = config.architecture === 'Idefics3ForConditionalGeneration' ? ' per frame' : '';
  const image = qwen
    ? qwenImageTokens(qwen)
    : isLlavaNextConfig(config)
      ? anyresImageTokens(config)
      : !images
        ? 'text only'
        : // A cut-short copy lacks vision_feature_select_strategy, which decides whether the first position is dropped.
          c.variant === 'prefix'
          ? '— (strategy cut off)'
          : `${images.tokensPerImage}${perFrame}`;
  const kvToken = `${(kvBytesPerToken(config) / 1e6).toFixed(2)} MB`;
  return `| ${name} | ${model} | ${billions(layerProjections + other)} (${billions(layerProjections)}) | ${context} | ${rope} | ${image} | ${gb(weightBytes(config, 32))} | ${gb(weightBytes(config, 4))} | ${kvToken} | ${kv(config, 4096)} | ${kv(config, 32768)} |`;
}

/** LLaVA-NeXT / OneVision: an image's tokens depend on its size: its base image's, and up to the most its tiles add. */
function anyresImageTokens(config: Parameters<typeof anyresTokenRange>[0]): string {
  const { base, max } = anyresTokenRange(config);
  return `${base} + up to ${max - base} (any resolution)`;
}

export function renderHubTable(checkpoints = hubCheckpoints()): string {
  const loaded = checkpoints.filter((c) => c.config);
  const architectures = supportedArchitectures().filter((a) => loaded.some((c) => c.architecture === a));
  const lines: string[] = [];
  for (const architecture of architectures) {
    lines.push(`### ${architecture}`, '');
    lines.push('| Checkpoint | Text · vision | Parameters (in layer projections) | Context · sliding window | RoPE θ · scaling | Image tokens | Weights f32 GB | Weights 4-bit GB | KV per token | KV 4K GB: full / 20 % | KV 32K GB: full / 20 % |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const c of loaded.filter((x) => x.architecture === architecture)) lines.push(row(c));
    lines.push('');
  }
  lines.push('### Refused', '', '| Checkpoint | Why |', '| --- | --- |');
  for (const c of checkpoints.filter((x) => !x.config)) lines.push(`| ${checkpointName(c)} | ${c.refusal!.replace(/\|/g, '\\|')} |`);
  return lines.join('\n');
}

/**
 * What each family reads, for the README's model table (the full list of options, and what is
 * refused, is docs/models.md's "Config options"). Every loaded architecture needs an entry.
 */
const FAMILY_OPTIONS: Record<string, string> = {
  LlavaForConditionalGeneration: 'LLaVA 1.5 / interleave: CLIP or SigLIP tower, any `vision_feature_layer` (int or list), `default` / `full` strategy; Llama, Mistral (sliding window) or Qwen2 text',
  Idefics3ForConditionalGeneration: 'SmolVLM: images split into 512-pixel tiles + a global image (`preprocessor_config.json`), pixel-shuffle `scale_factor`, Llama text',
  LlavaNextForConditionalGeneration:
    'LLaVA-NeXT (1.6): any resolution, tiles of `image_grid_pinpoints` + the base image, unpadded, `image_newline` per row; towers, feature layers, strategies and text models as LLaVA',
  LlavaOnevisionForConditionalGeneration: "LLaVA-OneVision: as LLaVA-NeXT, with `vision_aspect_ratio` anyres_max_N's downscale of too many tiles' features; video refused",
  Qwen2VLForConditionalGeneration:
    'Qwen2-VL: images at their own size between `min_pixels` / `max_pixels` (`preprocessor_config.json`), 2x2 patch merger, M-RoPE (`mrope_section`), flat or nested `text_config`; refused: `use_sliding_window` true, RoPE frequency scaling, video',
  Qwen2_5_VLForConditionalGeneration: 'Qwen2.5-VL: as Qwen2-VL, with the windowed tower (`window_size`, `fullatt_block_indexes`), RMSNorm and SwiGLU',
  LlamaForCausalLM: 'text only; RoPE `linear` / `llama3` scaling, `attention_bias`, `mlp_bias`, tied or untied head',
  MistralForCausalLM: 'text only; sliding window',
  Qwen2ForCausalLM: 'text only; q/k/v biases, `use_sliding_window` / `layer_types`',
};

/** The README's table: one row per family, the Hub checkpoints that load with the memory each needs. */
export function renderReadmeModels(checkpoints = hubCheckpoints()): string {
  // One copy per repository: its plain config.json when there is one (else a re-save or a cut-short copy).
  const loaded = checkpoints.filter((c) => c.config && (c.variant === undefined || !checkpoints.some((o) => o.repo === c.repo && o.config && o.variant === undefined)));
  const lines = [
    '| Family (`architectures[0]`) | Config options supported | Hub checkpoints: weights f32 / 4-bit GB · KV at 4K tokens, full / LOOK-M 20 % GB |',
    '| --- | --- | --- |',
  ];
  for (const architecture of supportedArchitectures()) {
    const family = loaded.filter((c) => c.architecture === architecture);
    const options = FAMILY_OPTIONS[architecture];
    // An architecture registered at run time (a test's, an embedder's) is not the README's to list.
    if (!options) {
      if (family.length) throw new Error(`FAMILY_OPTIONS has no entry for ${architecture}`);
      continue;
    }
    const checkpointsText = family.length
      ? family.map((c) => `${c.repo} ${gb(weightBytes(c.config!, 32))} / ${gb(weightBytes(c.config!, 4))} · ${kv(c.config!, 4096)}`).join('<br>')
      : 'no verbatim config.json of a Hub checkpoint stored here yet: checked on tiny checkpoints only';
    lines.push(`| ${architecture} | ${options} | ${checkpointsText} |`);
  }
  return lines.join('\n');
}

if (require.main === module) console.log(process.argv.includes('--readme') ? renderReadmeModels() : renderHubTable());
