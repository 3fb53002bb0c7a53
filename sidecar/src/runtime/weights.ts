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
  /**
   * Where weights that cannot be read from the checkpoint's files as they are (widened, quantized,
   * laid out for one-row kernels) are prepared once and mapped by later loads (`PackedWeightsCache`);
   * unset: prepared in memory at every load.
   */
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
 * A session for a graph built against `weights`, once every tensor the graph uses is registered.
 * The weights reach onnxruntime in one of three ways, cheapest first: read by onnxruntime from the
 * checkpoint's files (float32 stored as the graph reads it); mapped from an entry of the packed
 * weights cache, written at the first load (`PackedWeightsCache`); or the pool read into one
 * buffer here. onnxruntime copies external data given in memory into its own tensors (measured
 * with onnxruntime-node 1.30: overwriting the buffer after creation leaves the results unchanged),
 * so no reference to the buffer outlives this call, and that load's peak is our buffer plus
 * onnxruntime's copy while `create` runs.
 */
export function createSession(model: Uint8Array, weights: WeightPool, options: SessionOptions, deviceOutputs: readonly string[] = []): Promise<ort.InferenceSession> {
  const base = modelSessionOptions(options, deviceOutputs);
  const onCpu = (options.provider ?? 'cpu') === 'cpu';
  // A graph laid out for the one-row kernels runs them unpacked (MatMulNBits always needs its packing).
  const sessionOptions = onCpu && weights.transposes && !weights.quantizes ? withSessionConfig(base, { disable_prepacking: '1' }) : base;
  const files = options.weightsFromFiles && onCpu ? weights.fileRanges() : null;
  if (files) {
    // onnxruntime reads each tensor from its file (measured on the 8-layer benchmark checkpoint: the
    // create peak loses our buffer, bench/results/load.txt); relative names inside `folder` only.
    // It keeps parts of the file mapped (private copy-on-write, about 75 MB of 978 there) while the
    // session lives: on Windows the file cannot be deleted until the model is unloaded.
    return ort.InferenceSession.create(retarget(model, files.ranges), withSessionConfig(sessionOptions, { model_external_initializers_file_folder_path: files.folder }));
  }
  const inMemory = () => ({ externalData: [weights.load()] });
  if (options.packedWeights && onCpu) {
    return options.packedWeights.createSession({ model, weightsFile: weights.location, sources: weights.sourceFiles(), weightBytes: weights.bytes, writeWeights: (path) => weights.writeTo(path), inMemory }, sessionOptions);
  }
  return ort.InferenceSession.create(model, { ...sessionOptions, ...inMemory() });
}

/** `options` with `config` added to its session entries. */
function withSessionConfig(options: ort.InferenceSession.SessionOptions, config: Record<string, string>): ort.InferenceSession.SessionOptions {
  const extra = (options.extra ?? {}) as { session?: Record<string, string> };
  return { ...options, extra: { ...extra, session: { ...extra.session, ...config } } };
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
