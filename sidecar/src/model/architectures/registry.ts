/**
 * The architectures this runtime loads, keyed by config.json's `architectures[0]` (transformers'
 * class name): one line each. A test or an embedder adds one with `registerArchitecture`.
 */
import { CheckpointError } from '../checkpointError.js';
import { shown, type ModelConfig } from '../config.js';
import type { Architecture } from './architecture.js';
import { causalLm } from './causalLm/index.js';
import { idefics3 } from './idefics3/index.js';
import { llava } from './llava/index.js';
import { llavaNext } from './llavaNext/index.js';

const ARCHITECTURES = new Map<string, Architecture>([
  ['LlavaForConditionalGeneration', llava],
  ['Idefics3ForConditionalGeneration', idefics3],
  ['LlavaNextForConditionalGeneration', llavaNext],
  ['LlavaOnevisionForConditionalGeneration', llavaNext],
  ['LlamaForCausalLM', causalLm('llama')],
  ['MistralForCausalLM', causalLm('mistral')],
  ['Qwen2ForCausalLM', causalLm('qwen2')],
]);

/** The architecture names loaded, in the order listed. */
export function supportedArchitectures(): string[] {
  return [...ARCHITECTURES.keys()];
}

/**
 * Adds an architecture under `name` (transformers' class name); returns what removes it again.
 * A name already taken is refused: an entry replaces no other.
 */
export function registerArchitecture<C extends ModelConfig>(name: string, architecture: Architecture<C>): () => void {
  if (ARCHITECTURES.has(name)) throw new RangeError(`architecture ${name} is already registered`);
  ARCHITECTURES.set(name, architecture);
  // Undoes this registration once: a later registration under the same name stays.
  let undone = false;
  return () => {
    if (!undone && ARCHITECTURES.get(name) === architecture) ARCHITECTURES.delete(name);
    undone = true;
  };
}

/** The entry for `name` (config.json's `architectures[0]`), or a CheckpointError listing the supported ones. */
export function architectureFor(name: unknown): Architecture {
  const found = typeof name === 'string' ? ARCHITECTURES.get(name) : undefined;
  if (!found) throw new CheckpointError(`config.json: architecture ${shown(name)} is not supported (supported: ${supportedArchitectures().join(', ')})`);
  return found;
}

/** Validates and normalises a `config.json` object with its architecture's own schema. */
export function parseModelConfig(raw: unknown): ModelConfig {
  const name = (raw as { architectures?: unknown[] } | null)?.architectures?.[0];
  return architectureFor(name).parseConfig(raw, name as string);
}
