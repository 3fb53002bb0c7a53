/**
 * Text-only causal LMs (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`): the text
 * fields at the top level of config.json, `model.*` and `lm_head.*` weights, a decoder and no
 * image encoder: every token is text.
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';
import { shown, type ModelConfig } from '../../config.js';
import { minimumTextParameters, parseText, textSchema } from '../../text/textConfig.js';
import type { TextModelType } from '../../text/models/registry.js';
import type { Architecture } from '../architecture.js';
import { decoderSession } from '../decoderSession.js';

/** A text-only causal LM: every token is text; there is no vision tower and no image token. */
export interface TextOnlyConfig extends ModelConfig {
  vision: null;
}

/**
 * A text-only causal LM's `config.json` (`name`: its architecture, whose decoder is `modelType`).
 * A `model_type` other than the architecture's (a Qwen2ForCausalLM with "llama") is refused: the
 * graph follows model_type (biases, windows, defaults), so the two must agree.
 */
export function parseTextOnlyConfig(raw: unknown, name: string, modelType: TextModelType): TextOnlyConfig {
  const given = (raw as { model_type?: unknown }).model_type ?? modelType;
  if (given !== modelType) {
    throw new CheckpointError(`config.json: architecture ${name} has model_type ${shown(given)}; it must be ${JSON.stringify(modelType)} (or left out)`);
  }
  const parsed = textSchema.extend({ architectures: z.array(z.string()).min(1) }).safeParse({ ...(raw as object), model_type: modelType });
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  return { architecture: name, text: parseText(parsed.data, undefined, ''), vision: null };
}

/** The causal LM whose decoder is the text model `modelType`. */
export function causalLm(modelType: TextModelType): Architecture<TextOnlyConfig> {
  return {
    parseConfig: (raw, name) => parseTextOnlyConfig(raw, name, modelType),
    // After `model.language_model.` would be tried, were this a LLaVA checkpoint: here every `model.*` is the decoder.
    weightPrefixes: [
      ['lm_head.', 'text.lm_head.'],
      ['model.', 'text.'],
    ],
    minimumParameters: (config) => minimumTextParameters(config.text),
    imageInput: () => null,
    sessions: (config, options) => [decoderSession(config.text, options)],
  };
}
