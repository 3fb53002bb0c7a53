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
import { qwen2vl } from './qwen2vl/index.js';

const ARCHITECTURES = new Map<string, Architecture>([
  ['LlavaForConditionalGeneration', llava],
  ['Idefics3ForConditionalGeneration', idefics3],
  ['Qwen2VLForConditionalGeneration', qwen2vl],
  ['Qwen2_5_VLForConditionalGeneration', qwen2vl],
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
  const architecture = architectureFor(name);
  refusePrequantized(raw);
  return architecture.parseConfig(raw, name as string);
}

/**
 * GPTQ / AWQ / bitsandbytes / FP8 repositories store packed integer weights (`qweight`, `scales`…)
 * that no graph here reads: say so before a weight is looked for, instead of a missing-tensor error.
 */
function refusePrequantized(raw: unknown): void {
  const quantization = (raw as { quantization_config?: unknown } | null)?.quantization_config;
  if (quantization === undefined || quantization === null) return;
  const method = (quantization as { quant_method?: unknown }).quant_method;
  throw new CheckpointError(
    `config.json: quantization_config${method === undefined ? '' : ` (quant_method ${shown(method)})`} is not supported: the weights must be F32, F16 or BF16 safetensors. Use the model's unquantized repository; lookm.weightBits 4 quantizes it when it loads.`,
  );
}
