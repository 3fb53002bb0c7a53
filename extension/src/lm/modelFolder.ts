/**
 * What the model picker declares about the configured model, read from its config.json without
 * starting the sidecar: the context length and whether it reads images. A LLaVA config keeps its
 * text fields under `text_config`; a text-only causal LM (`LlamaForCausalLM`, `Qwen2ForCausalLM`,
 * `MistralForCausalLM`) has them at the top level and no vision tower.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ModelFolderInfo {
  /** Positions the model reads (0: unknown). */
  contextLength: number;
  /** False for a text-only causal LM: the sidecar refuses its images. */
  imageInput: boolean;
}

interface RawConfig {
  architectures?: unknown;
  max_position_embeddings?: unknown;
  text_config?: { max_position_embeddings?: unknown };
}

/** The info of a parsed config.json (anything unreadable: unknown length, images declared). */
export function modelFolderInfo(config: unknown): ModelFolderInfo {
  const c = (config && typeof config === 'object' ? config : {}) as RawConfig;
  const architecture: unknown = Array.isArray(c.architectures) ? (c.architectures as unknown[])[0] : undefined;
  const textOnly = typeof architecture === 'string' && architecture.endsWith('ForCausalLM');
  const positions = textOnly ? c.max_position_embeddings : c.text_config?.max_position_embeddings;
  return { contextLength: typeof positions === 'number' && positions > 0 ? positions : 0, imageInput: !textOnly };
}

export function readModelFolder(modelPath: string): ModelFolderInfo {
  try {
    return modelFolderInfo(JSON.parse(readFileSync(join(modelPath, 'config.json'), 'utf8')));
  } catch {
    return modelFolderInfo(null);
  }
}
