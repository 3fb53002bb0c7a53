/** onnxruntime sessions for the graphs the model code builds, with their weights handed over. */
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import type { WeightPool } from '../model/graph/weightPool.js';
import { providerSessionOptions, type ExecutionProvider } from './device.js';
import type { PackedWeightsCache } from './packedWeights.js';

export interface SessionOptions {
  /** onnxruntime intra-op threads; unset, onnxruntime ran several times slower on 2 cores. */
  threads: number;
  /** The execution provider every session of the model runs on (`resolveDevice`'s choice); default the CPU. */
  provider?: ExecutionProvider;
  /**
   * On the CPU, let onnxruntime read float32 weights stored as such straight from the checkpoint's
   * files (`WeightPool.fileRanges`), so no buffer of ours is alive while the session is created.
   * Only for checkpoints read as they are (a test that serves altered weights through
   * `readFloat32Into` must leave it off: onnxruntime would read the file's).
   */
  weightsFromFiles?: boolean;
  /** Where weights read from the files keep their prepacked form between loads (`PackedWeightsCache`); unset: packed at every load. */
  packedWeights?: PackedWeightsCache;
}

/**
 * The session options of the model's sessions on `options.provider`: the one place that puts a
 * session on a device. `deviceOutputs`: outputs that stay in the device's memory (`gpu-buffer`)
 * under WebGPU, to be fed to the next run without a copy; every other output comes back to the
 * host. On the CPU the options are the CPU's alone.
 */
export function modelSessionOptions(options: SessionOptions, deviceOutputs: readonly string[] = []): ort.InferenceSession.SessionOptions {
  const provider = options.provider ?? 'cpu';
  const base = providerSessionOptions({ provider }, options.threads);
  if (provider !== 'webgpu' || deviceOutputs.length === 0) return base;
  return { ...base, preferredOutputLocation: Object.fromEntries(deviceOutputs.map((name) => [name, 'gpu-buffer' as const])) };
}

/**
 * A session for a graph built against `weights`: the pool is read into its external-data buffer
 * here, once, after every tensor the graph uses has been registered. onnxruntime copies external
 * data given in memory into its own tensors (measured with onnxruntime-node 1.30: overwriting the
 * buffer after creation leaves the results unchanged), so no reference to the buffer outlives
 * this call: the one float32 copy the session keeps is onnxruntime's. The peak of a load is
 * therefore our buffer plus onnxruntime's copy, while `create` runs.
 */
export function createSession(model: Uint8Array, weights: WeightPool, options: SessionOptions, deviceOutputs: readonly string[] = []): Promise<ort.InferenceSession> {
  const sessionOptions = modelSessionOptions(options, deviceOutputs);
  const onCpu = (options.provider ?? 'cpu') === 'cpu';
  const files = options.weightsFromFiles && onCpu ? weights.fileRanges() : null;
  // onnxruntime reads each tensor from its file (measured on the 8-layer benchmark checkpoint: the
  // create peak loses our buffer, bench/results/load.txt); relative names inside `folder` only.
  // It keeps parts of the file mapped (private copy-on-write, about 75 MB of 978 there) while the
  // session lives: on Windows the file cannot be deleted until the model is unloaded.
  const graph = files ? retarget(model, files.ranges) : model;
  const withWeights = (config: Record<string, string> = {}): ort.InferenceSession.SessionOptions =>
    files
      ? { ...sessionOptions, extra: { session: { ...config, model_external_initializers_file_folder_path: files.folder } } }
      : { ...sessionOptions, externalData: [weights.load()], extra: { session: config } };
  // A load from a kept entry reads no weights at all: `withWeights` is called only to pack them.
  if (options.packedWeights && onCpu) return options.packedWeights.createSession({ model: graph, sources: weights.sourceFiles(), weightBytes: weights.bytes, withWeights }, sessionOptions);
  return ort.InferenceSession.create(graph, withWeights());
}

/** The model with each external initializer named in `ranges` pointing at its place in a file instead of the pool's buffer. */
function retarget(bytes: Uint8Array, ranges: Map<string, { location: string; offset: number }>): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  for (const tensor of model.graph!.initializer!) {
    const range = ranges.get(tensor.name!);
    if (!range) continue;
    for (const entry of tensor.externalData!) {
      if (entry.key === 'location') entry.value = range.location;
      if (entry.key === 'offset') entry.value = String(range.offset);
    }
  }
  return onnx.ModelProto.encode(model).finish();
}
