/** The vision tower + projector session: pixel values in, image features out. */
import * as ort from 'onnxruntime-node';
import type { Checkpoint } from '../model/checkpoint.js';
import type { LlavaConfig } from '../model/config.js';
import { buildVisionGraph } from '../model/vision/visionGraph.js';
import { WeightPool } from '../model/graph/weightPool.js';
import { createSession, type SessionOptions } from './weights.js';

export class VisionEncoder {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly imageSize: number,
    readonly channels: number,
    readonly tokensPerImage: number,
    readonly featureSize: number,
  ) {}

  /** `config`: the checkpoint's own, narrowed to a LLaVA model's (a text-only model has no encoder). */
  static async create(checkpoint: Checkpoint, config: LlavaConfig, options: SessionOptions): Promise<VisionEncoder> {
    const weights = new WeightPool(checkpoint);
    const graph = buildVisionGraph(config, weights);
    const session = await createSession(graph.model, weights, options);
    return new VisionEncoder(session, config.vision.imageSize, config.vision.numChannels, graph.tokensPerImage, config.text.hiddenSize);
  }

  /** `[images, tokensPerImage, textHidden]` features of `[images, channels, size, size]` pixel values. */
  async encode(pixels: Float32Array, images: number): Promise<Float32Array> {
    const { imageSize: S, channels: C } = this;
    if (pixels.length !== images * C * S * S) throw new RangeError(`pixel_values must be [${images}, ${C}, ${S}, ${S}], got ${pixels.length} values`);
    const out = await this.session.run({ pixel_values: new ort.Tensor('float32', pixels, [images, C, S, S]) });
    return out.image_features.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
