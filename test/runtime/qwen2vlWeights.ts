/** Test helper: a Qwen2-VL checkpoint's vision weights for `buildQwen2VLVisionGraph`, until the family is registered and `WeightPool` reads them. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Qwen2VLVisionConfig } from '../../sidecar/src/model/architectures/qwen2vl/config.js';
import { buildQwen2VLVisionGraph, type VisionWeights } from '../../sidecar/src/model/architectures/qwen2vl/visionGraph.js';
import { unpermuteMerged, visionInputs, type Grid } from '../../sidecar/src/model/architectures/qwen2vl/visionInputs.js';
import { externalBytes, type ExternalTensor } from '../../sidecar/src/model/graph/onnxBuilder.js';
import { readSafetensorsHeader, readTensorBytes, toFloat32, type TensorEntry } from '../../sidecar/src/model/safetensors.js';

/** The checkpoint's `visual.*` tensors as `vision.*`, in one external-data buffer (what WeightPool does for a Checkpoint). */
export class CheckpointVisionWeights implements VisionWeights {
  readonly initializers: ExternalTensor[] = [];
  private readonly entries = new Map<string, TensorEntry>();
  private size = 0;

  constructor(dir: string) {
    const index = join(dir, 'model.safetensors.index.json');
    const files = existsSync(index) ? [...new Set(Object.values((JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map))] : ['model.safetensors'];
    for (const file of files) for (const [name, entry] of readSafetensorsHeader(join(dir, file))) if (name.startsWith('visual.')) this.entries.set(`vision.${name.slice(7)}`, entry);
  }

  use(canonical: string, shape: number[]): string {
    const entry = this.entries.get(canonical);
    assert.ok(entry, `tensor ${canonical}`);
    assert.deepEqual(entry.shape, shape, canonical);
    if (!this.initializers.some((t) => t.name === canonical)) {
      const offset = Math.ceil(this.size / 64) * 64;
      this.initializers.push({ name: canonical, dims: shape, location: 'weights.bin', offset });
      this.size = offset + externalBytes({ dims: shape });
    }
    return canonical;
  }

  load(): { path: string; data: Uint8Array } {
    const buffer = new ArrayBuffer(Math.ceil(this.size / 64) * 64);
    for (const t of this.initializers) {
      const entry = this.entries.get(t.name)!;
      new Float32Array(buffer, t.offset, t.dims.reduce((a, b) => a * b, 1)).set(toFloat32(entry, readTensorBytes(entry)));
    }
    return { path: 'weights.bin', data: new Uint8Array(buffer) };
  }
}


/** The vision tower of a Qwen2-VL checkpoint on onnxruntime: patches and grids in, each image's merged features out. */
export async function visionEncoder(dir: string, vision: Qwen2VLVisionConfig, textHidden: number): Promise<{ encode(pixels: Float32Array[], grids: Grid[]): Promise<Float32Array>; release(): Promise<void> }> {
  const weights = new CheckpointVisionWeights(dir);
  const session = await ort.InferenceSession.create(buildQwen2VLVisionGraph(vision, weights), { externalData: [weights.load()], intraOpNumThreads: 1, interOpNumThreads: 1 });
  return {
    async encode(pixels, grids) {
      const inputs = visionInputs(vision, pixels, grids);
      const hd = vision.hiddenSize / vision.numHeads;
      const feeds: Record<string, ort.Tensor> = {
        pixel_values: new ort.Tensor('float32', inputs.pixels, [inputs.rows, inputs.pixels.length / inputs.rows]),
        rotary_cos: new ort.Tensor('float32', inputs.cos, [inputs.rows, hd]),
        rotary_sin: new ort.Tensor('float32', inputs.sin, [inputs.rows, hd]),
        image_segment: new ort.Tensor('int64', inputs.imageSegment, [inputs.rows]),
      };
      if (vision.windowSize !== null) feeds.window_segment = new ort.Tensor('int64', inputs.windowSegment, [inputs.rows]);
      const out = await session.run(feeds);
      return unpermuteMerged(out.image_features.data as Float32Array, inputs.mergedOrder, textHidden);
    },
    release: () => session.release(),
  };
}
