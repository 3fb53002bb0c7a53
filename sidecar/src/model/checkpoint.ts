/**
 * A Hugging Face checkpoint folder: `config.json` plus `model.safetensors` or sharded
 * `model-*.safetensors` with `model.safetensors.index.json`. Tensor names are normalised from
 * both the Hub's legacy LLaVA layout (`language_model.model.*`, `vision_tower.vision_model.*`)
 * and the current transformers one (`model.language_model.*`, `model.vision_tower.*`) to
 * `text.*`, `vision.*` and `projector.*`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { parseLlavaConfig, type LlavaConfig } from './config.js';
import { CheckpointError, readSafetensorsHeader, readTensorBytes, toFloat32, type TensorEntry } from './safetensors.js';

const PREFIXES: [string, string][] = [
  ['language_model.model.', 'text.'],
  ['language_model.lm_head.', 'text.lm_head.'],
  ['model.language_model.', 'text.'],
  ['lm_head.', 'text.lm_head.'],
  ['vision_tower.vision_model.', 'vision.'],
  ['model.vision_tower.vision_model.', 'vision.'],
  ['multi_modal_projector.', 'projector.'],
  ['model.multi_modal_projector.', 'projector.'],
];

export function canonicalName(name: string): string {
  for (const [from, to] of PREFIXES) if (name.startsWith(from)) return to + name.slice(from.length);
  return name;
}

/** A JSON file of the checkpoint folder; `null` when it is optional and absent. */
export function readJsonFile(dir: string, name: string, required: true): Record<string, unknown>;
export function readJsonFile(dir: string, name: string, required: false): Record<string, unknown> | null;
export function readJsonFile(dir: string, name: string, required: boolean): Record<string, unknown> | null {
  const file = join(dir, name);
  if (!existsSync(file)) {
    if (required) throw new CheckpointError(`${name} not found in ${dir}`);
    return null;
  }
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new CheckpointError(`${name} is not valid JSON (${file}): ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Weight files named by an index must be plain names inside the folder. */
function weightFile(dir: string, name: string): string {
  if (isAbsolute(name) || normalize(name).split(/[\\/]/).includes('..') || name.includes('/') || name.includes('\\')) {
    throw new CheckpointError(`model.safetensors.index.json names a file outside the model folder: ${JSON.stringify(name)}`);
  }
  return join(dir, name);
}

export class Checkpoint {
  private constructor(
    readonly dir: string,
    readonly config: LlavaConfig,
    private readonly tensors: Map<string, TensorEntry>,
  ) {}

  static open(dir: string): Checkpoint {
    if (!existsSync(dir)) throw new CheckpointError(`model folder not found: ${dir}`);
    const config = parseLlavaConfig(readJsonFile(dir, 'config.json', true));
    const index = readJsonFile(dir, 'model.safetensors.index.json', false) as { weight_map?: Record<string, string> } | null;
    let files: string[];
    if (index) {
      if (!index.weight_map || typeof index.weight_map !== 'object') throw new CheckpointError('model.safetensors.index.json has no weight_map');
      files = [...new Set(Object.values(index.weight_map))].map((name) => weightFile(dir, name));
    } else {
      files = [join(dir, 'model.safetensors')];
      if (!existsSync(files[0])) throw new CheckpointError(`no weights in ${dir}: expected model.safetensors or model.safetensors.index.json`);
    }
    const tensors = new Map<string, TensorEntry>();
    for (const file of files) {
      for (const [name, entry] of readSafetensorsHeader(file)) tensors.set(canonicalName(name), entry);
    }
    return new Checkpoint(dir, config, tensors);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The tensor's entry, checked against the shape `config.json` implies. */
  entry(name: string, shape: number[]): TensorEntry {
    const entry = this.tensors.get(name);
    if (!entry) throw new CheckpointError(`tensor "${name}" is missing from the checkpoint in ${this.dir}`);
    if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(`tensor "${entry.name}" in ${entry.file} has shape [${entry.shape.join(', ')}], config.json implies [${shape.join(', ')}]`);
    }
    return entry;
  }

  float32(name: string, shape: number[]): Float32Array {
    const entry = this.entry(name, shape);
    return toFloat32(entry, readTensorBytes(entry));
  }
}
