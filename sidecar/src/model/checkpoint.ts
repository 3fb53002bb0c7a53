/**
 * A Hugging Face checkpoint folder: `config.json` plus `model.safetensors` or sharded
 * `model-*.safetensors` with `model.safetensors.index.json`. config.json is read by the
 * architecture its `architectures[0]` names (`architectures/registry.ts`), and tensor names are
 * normalised by that architecture's prefixes to the canonical `text.*`, `vision.*`, `projector.*`
 * the graphs use (LLaVA's legacy `language_model.model.*` and current `model.language_model.*`
 * alike; a causal LM's `model.*` and `lm_head.*`).
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import type { Architecture } from './architectures/architecture.js';
import { architectureFor, parseModelConfig } from './architectures/registry.js';
import type { ModelConfig } from './config.js';
import { CheckpointError, readFloat32Into, readSafetensorsHeader, type TensorEntry } from './safetensors.js';
import { TensorRows } from './tensorRows.js';

/** `name` with the first of `prefixes` it starts with replaced (the architecture's weight-name mapping). */
export function canonicalName(name: string, prefixes: Architecture['weightPrefixes']): string {
  for (const [from, to] of prefixes) if (name.startsWith(from)) return to + name.slice(from.length);
  return name;
}

// readJsonFile lives apart so that processors can read JSON without importing the registry (an import cycle).
import { readJsonFile } from './jsonFile.js';

export { MAX_JSON_BYTES, MAX_OTHER_JSON_BYTES, readJsonFile } from './jsonFile.js';

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
    readonly config: ModelConfig,
    private readonly tensors: Map<string, TensorEntry>,
  ) {}

  static open(dir: string): Checkpoint {
    if (!existsSync(dir)) throw new CheckpointError(`model folder not found: ${dir}`);
    const raw = readJsonFile(dir, 'config.json', true);
    const config = parseModelConfig(raw);
    const architecture = architectureFor(config.architecture);
    const index = readJsonFile(dir, 'model.safetensors.index.json', false) as { weight_map?: Record<string, string> } | null;
    let files: string[];
    if (index) {
      const map = index.weight_map;
      if (!map || typeof map !== 'object' || Array.isArray(map)) throw new CheckpointError('model.safetensors.index.json has no weight_map');
      const names = Object.values(map);
      if (!names.every((name) => typeof name === 'string')) throw new CheckpointError('model.safetensors.index.json: weight_map values must be file names');
      files = [...new Set(names)].map((name) => weightFile(dir, name));
    } else {
      files = [join(dir, 'model.safetensors')];
      if (!existsSync(files[0])) throw new CheckpointError(`no weights in ${dir}: expected model.safetensors or model.safetensors.index.json`);
    }
    const tensors = new Map<string, TensorEntry>();
    let tensorBytes = 0;
    for (const file of files) {
      for (const [name, entry] of readSafetensorsHeader(file)) {
        const canonical = canonicalName(name, architecture.weightPrefixes);
        const other = tensors.get(canonical);
        if (other) throw new CheckpointError(`tensor "${canonical}" appears twice: as "${other.name}" in ${other.file} and as "${name}" in ${file}`);
        tensors.set(canonical, entry);
        tensorBytes += entry.length;
      }
    }
    // Before any graph is built or tensor read: weights too small for config.json's sizes mean
    // the two do not belong together (or config.json is inflated).
    const parameters = architecture.minimumParameters(config);
    if (parameters * 2 > tensorBytes) {
      throw new CheckpointError(
        `config.json implies at least ${parameters} parameters (${((parameters * 2) / 1e9).toFixed(2)} GB as 16-bit floats), but the weights in ${dir} hold ${tensorBytes} bytes: config.json does not describe these weights`,
      );
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

  /** The tensor as float32, read straight into the one array returned (F16/BF16 widened in slices). */
  float32(name: string, shape: number[]): Float32Array {
    const into = new Float32Array(shape.reduce((a, b) => a * b, 1));
    this.readFloat32Into(name, shape, into);
    return into;
  }

  /** Elements `[first, first + into.length)` of the tensor, as float32, read from its file into `into`. */
  readFloat32Into(name: string, shape: number[], into: Float32Array, first = 0): void {
    readFloat32Into(this.entry(name, shape), into, first);
  }

  /**
   * Rows of a 2-D tensor read from its file on demand (an embedding table looked up token by
   * token), so no copy of the table is held: see `TensorRows`.
   */
  rows(name: string, shape: [number, number]): TensorRows {
    return new TensorRows(this.entry(name, shape), shape[1]);
  }
}
