/**
 * docs/models.md's per-checkpoint table, from the verbatim config.json files of real Hub
 * checkpoints (test/fixtures/configs/hub, provenance in its SOURCES.md) read with the runtime's own
 * parser: parameters, context, weights in memory at float32 and 4-bit, and the KV cache at 4K and
 * 32K tokens, in full and under LOOK-M keeping 20 %. test/runtime/hubConfigs.test.ts checks that
 * docs/models.md holds this output.
 *
 *     npx tsx tools/model/hubTable.ts
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLlavaConfig } from '../../sidecar/src/model/architectures/llava/config.js';
import { tokensPerImage } from '../../sidecar/src/model/architectures/llava/graph.js';
import { anyresTokenRange } from '../../sidecar/src/model/architectures/llavaNext/anyres.js';
import { isLlavaNextConfig } from '../../sidecar/src/model/architectures/llavaNext/config.js';
import { parseModelConfig, supportedArchitectures } from '../../sidecar/src/model/architectures/registry.js';
import type { ModelConfig } from '../../sidecar/src/model/config.js';
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

function row(c: HubCheckpoint): string {
  const config = c.config!;
  const t = config.text;
  const { layerProjections, other } = countParameters(config);
  const name = `${c.repo}${c.variant ? ` (${c.variant})` : ''}`;
  const vision = isLlavaConfig(config) || isLlavaNextConfig(config) ? config.vision : null;
  const model = vision ? `${t.modelType} · ${vision.modelType.replace('_vision_model', '')} ${vision.imageSize}/${vision.patchSize}` : t.modelType;
  const windows = [...new Set(t.layerWindows)].filter((w) => w !== null);
  const context = `${t.maxPositionEmbeddings}${windows.length ? ` · window ${windows.join(', ')}` : ''}`;
  const rope = `${t.ropeTheta}${t.ropeScaling ? ` · ${t.ropeScaling.type} ×${t.ropeScaling.factor}` : ''}`;
  // A cut-short copy lacks vision_feature_select_strategy, which decides whether the first position is dropped.
  const image = isLlavaNextConfig(config) ? anyresImageTokens(config) : !isLlavaConfig(config) ? 'text only' : c.variant === 'prefix' ? '— (strategy cut off)' : String(tokensPerImage(config));
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
  for (const c of checkpoints.filter((x) => !x.config)) lines.push(`| ${c.repo}${c.variant ? ` (${c.variant})` : ''} | ${c.refusal!.replace(/\|/g, '\\|')} |`);
  return lines.join('\n');
}

if (require.main === module) console.log(renderHubTable());
