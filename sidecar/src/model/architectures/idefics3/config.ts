/**
 * `Idefics3ForConditionalGeneration`'s (SmolVLM's) config.json: a Llama text model
 * (`text_config`), an Idefics3 vision tower (`vision_config`, SigLIP-shaped) and the connector's
 * pixel shuffle (`scale_factor`), with transformers' `Idefics3Config` defaults.
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';
import { shown, type ModelConfig, type TextConfig, type VisionConfig } from '../../config.js';
import { parseText, textSchema } from '../../text/textConfig.js';
import { patchGrid } from '../../vision/patches.js';
import { parseVision, visionSchema } from '../../vision/visionConfig.js';

export interface Idefics3Config extends ModelConfig {
  architecture: 'Idefics3ForConditionalGeneration';
  text: TextConfig;
  vision: VisionConfig;
  imageTokenIndex: number;
  /** The pixel shuffle's factor: scale_factor x scale_factor neighbouring patches become one feature row. */
  scaleFactor: number;
}

export function isIdefics3Config(config: ModelConfig): config is Idefics3Config {
  return config.architecture === 'Idefics3ForConditionalGeneration';
}

/** Idefics3VisionConfig's fields whatever model_type the file gives it (transformers builds that class from the dict). */
const idefics3VisionSchema = visionSchema.extend({ model_type: z.unknown().optional() }).transform((v) => ({ ...v, model_type: 'idefics3_vision' as const }));

const idefics3Schema = z
  .object({
    architectures: z.array(z.string()).min(1),
    // Idefics3Config builds a text_config without model_type as Llama's, and a missing one as LlamaConfig(rms_norm_eps=1e-5).
    text_config: textSchema
      .extend({ model_type: z.literal('llama', { error: (i) => `text_config model_type ${shown(i.input)} is not supported (llama only: SmolVLM's)` }).default('llama') })
      .prefault({ rms_norm_eps: 1e-5 }),
    vision_config: idefics3VisionSchema.prefault({}),
    image_token_id: z.number().int().nonnegative().default(128257),
    scale_factor: z.number({ error: (i) => `scale_factor ${shown(i.input)} is not supported (a positive integer)` }).int().positive().default(2),
    tie_word_embeddings: z.boolean().default(false),
  })
  .loose();

/** Validates and normalises an Idefics3 `config.json` object. */
export function parseIdefics3Config(raw: unknown): Idefics3Config {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  if (architecture !== 'Idefics3ForConditionalGeneration') throw new CheckpointError(`config.json: architecture ${shown(architecture)} is not Idefics3ForConditionalGeneration`);
  const parsed = idefics3Schema.safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data;
  const text = parseText(c.text_config, c.tie_word_embeddings, 'text_config.');
  const vision = parseVision(c.vision_config);
  const grid = patchGrid(vision);
  if (grid % c.scale_factor !== 0) {
    throw new CheckpointError(`config.json: scale_factor ${c.scale_factor} does not divide the vision tower's ${grid} x ${grid} patch grid (vision_config image_size ${vision.imageSize} / patch_size ${vision.patchSize}): the pixel shuffle needs whole blocks`);
  }
  return { architecture, text, vision, imageTokenIndex: c.image_token_id, scaleFactor: c.scale_factor };
}

/** Feature rows (hence image tokens) per frame: `(image_size / patch_size)^2 / scale_factor^2` (the processor's image_seq_len). */
export function tokensPerFrame(config: Pick<Idefics3Config, 'vision' | 'scaleFactor'>): number {
  return (patchGrid(config.vision) / config.scaleFactor) ** 2;
}
