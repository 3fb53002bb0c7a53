/** The image encoder session (a vision tower and projector): pixel values in, image features out, named by its graph's manifest. */
import * as ort from 'onnxruntime-node';
import type { ImageEncoderFeeds, SessionSpec } from '../model/architectures/architecture.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { PreprocessedImage } from '../model/imageGrid.js';
import { fixedDim, valueOf, type ManifestValue } from '../model/graph/manifest.js';
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
    /** Images read at their own sizes (Qwen2-VL): their feeds, and the graph's inputs they go to. */
    private readonly own: { feeds: (images: readonly PreprocessedImage[]) => ImageEncoderFeeds; inputs: readonly ManifestValue[] } | null = null,
  ) {}

  /** The encoder `spec` builds (an architecture's `imageEncoder` session). */
  static async create(checkpoint: Checkpoint, spec: Extract<SessionSpec, { role: 'imageEncoder' }>, options: SessionOptions): Promise<VisionEncoder> {
    const weights = new WeightPool(checkpoint);
    const { model, manifest } = spec.build(weights);
    const session = await createSession(model, weights, options);
    const pixels = valueOf(manifest.inputs, 'pixels');
    const features = valueOf(manifest.outputs, 'imageFeatures');
    const names = { pixels: pixels.name, features: features.name };
    if (spec.feeds) return new VisionEncoder(session, names, 0, 0, 0, fixedDim(features, 1), { feeds: (images) => spec.feeds!(images), inputs: manifest.inputs });
    return new VisionEncoder(session, names, fixedDim(pixels, 2), fixedDim(pixels, 1), fixedDim(features, 1), fixedDim(features, 2));
  }

  /** Whether images are read at their own sizes (`encodePreprocessed`) rather than as `[frames, channels, size, size]`. */
  get readsOwnSizes(): boolean {
    return this.own !== null;
  }

  /** `[images, tokensPerImage, textHidden]` features of `[images, channels, size, size]` pixel values. */
  async encode(pixels: Float32Array, images: number): Promise<Float32Array> {
    const { imageSize: S, channels: C } = this;
    if (this.own) throw new Error('this image encoder reads images at their own sizes: use encodePreprocessed');
    if (pixels.length !== images * C * S * S) throw new RangeError(`${this.names.pixels} must be [${images}, ${C}, ${S}, ${S}], got ${pixels.length} values`);
    const out = await this.session.run({ [this.names.pixels]: new ort.Tensor('float32', pixels, [images, C, S, S]) });
    return out[this.names.features].data as Float32Array;
  }

  /** Features of preprocessed images read at their own sizes, image after image (each image's tokens in its raster order). */
  async encodePreprocessed(images: readonly PreprocessedImage[]): Promise<Float32Array> {
    if (!this.own) throw new Error('this image encoder reads fixed-size frames: use encode');
    const run = this.own.feeds(images);
    const feeds: Record<string, ort.Tensor> = { [this.names.pixels]: new ort.Tensor('float32', run.pixels.data, run.pixels.dims) };
    for (const [role, value] of Object.entries(run.inputs)) {
      const input = this.own.inputs.find((v) => v.role === role);
      if (!input) throw new RangeError(`the image encoder graph has no ${role} input`);
      feeds[input.name] = value.data instanceof BigInt64Array ? new ort.Tensor('int64', value.data, value.dims) : new ort.Tensor('float32', value.data, value.dims);
    }
    const out = await this.session.run(feeds);
    return run.features(out[this.names.features].data as Float32Array);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
