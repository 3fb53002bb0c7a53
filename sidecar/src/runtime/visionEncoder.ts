/** The image encoder session (a vision tower and projector): pixel values in, image features out, named by its graph's manifest. */
import * as ort from 'onnxruntime-node';
import type { SessionSpec } from '../model/architectures/architecture.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { fixedDim, valueOf } from '../model/graph/manifest.js';
import { WeightPool } from '../model/graph/weightPool.js';
import { createSession, type SessionOptions } from './weights.js';

export class VisionEncoder {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly names: { pixels: string; features: string },
    readonly imageSize: number,
    readonly channels: number,
    readonly tokensPerImage: number,
    readonly featureSize: number,
  ) {}

  /** The encoder `spec` builds (an architecture's `imageEncoder` session). */
  static async create(checkpoint: Checkpoint, spec: Extract<SessionSpec, { role: 'imageEncoder' }>, options: SessionOptions): Promise<VisionEncoder> {
    const weights = new WeightPool(checkpoint);
    const { model, manifest } = spec.build(weights);
    const session = await createSession(model, weights, options);
    const pixels = valueOf(manifest.inputs, 'pixels');
    const features = valueOf(manifest.outputs, 'imageFeatures');
    return new VisionEncoder(session, { pixels: pixels.name, features: features.name }, fixedDim(pixels, 2), fixedDim(pixels, 1), fixedDim(features, 1), fixedDim(features, 2));
  }

  /** `[images, tokensPerImage, textHidden]` features of `[images, channels, size, size]` pixel values. */
  async encode(pixels: Float32Array, images: number): Promise<Float32Array> {
    const { imageSize: S, channels: C } = this;
    if (pixels.length !== images * C * S * S) throw new RangeError(`${this.names.pixels} must be [${images}, ${C}, ${S}, ${S}], got ${pixels.length} values`);
    const out = await this.session.run({ [this.names.pixels]: new ort.Tensor('float32', pixels, [images, C, S, S]) });
    return out[this.names.features].data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
