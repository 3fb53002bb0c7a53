/**
 * The execution-provider seam: which onnxruntime provider the sidecar's sessions run on, chosen
 * once from `--device auto|cpu|webgpu|cuda`, and the session options that put a session there.
 *
 * `auto` takes WebGPU when a tiny session can actually be created on it (onnxruntime-node ships
 * the WebGPU provider in its npm package: Vulkan on Linux, D3D12 on Windows, Metal on macOS) and
 * the CPU otherwise. `webgpu` and `cuda` are demands: they fail with a message that says what is
 * missing instead of falling back. The probe is injectable so the choice is testable without a GPU.
 */
import * as ort from 'onnxruntime-node';
import { buildModel } from '../model/graph/onnxBuilder.js';
import type { DecoderGraphOptions, WeightBits } from '../model/text/decoderGraph.js';
import { DeviceError, type DeviceRequest, type ExecutionProvider } from './deviceRequest.js';

export { DEVICE_REQUESTS, DeviceError, parseDeviceRequest, type DeviceRequest, type ExecutionProvider } from './deviceRequest.js';

/** Where the sessions run, and why. */
export interface ResolvedDevice {
  requested: DeviceRequest;
  provider: ExecutionProvider;
  /** What is known of the device: onnxruntime-node 1.30 does not expose the adapter's name. */
  adapter: string;
  /** One line for the log: why this provider (e.g. why `auto` fell back to the CPU). */
  reason: string;
}

/** What the choice needs to know about this machine (onnxruntime's answers, or a test's). */
export interface DeviceProbe {
  /** `ort.listSupportedBackends()`: the providers this build of onnxruntime-node knows. */
  backends(): readonly { name: string; bundled: boolean }[];
  /** Creates (and releases) a tiny session on `provider`; rejects with onnxruntime's reason. */
  trySession(provider: Exclude<ExecutionProvider, 'cpu'>): Promise<void>;
  /** What is known of the adapter `provider` runs on (for the log, `model/info`, the status bar). */
  adapter(provider: ExecutionProvider): string;
}

/** How to get the CUDA provider's libraries, which onnxruntime-node's npm package does not ship. */
export const CUDA_INSTALL_HINT =
  "onnxruntime's CUDA provider libraries (libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so, " +
  'Linux x64 and Windows x64 only) are not in the onnxruntime-node npm package, and this repository\'s .npmrc skips the install script that downloads them. ' +
  'Install them with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (needs network access, CUDA 12 and cuDNN 9 on the library path), ' +
  'or use --device webgpu (bundled, no download) or --device cpu.';

/** onnxruntime's reason in one line, without the source location of the check that failed. */
function firstLine(error: unknown): string {
  const line = (error instanceof Error ? error.message : String(error)).split('\n')[0].trim();
  const check = line.lastIndexOf(' was false. ');
  return check >= 0 ? line.slice(check + ' was false. '.length) : line;
}

/** Chooses the provider for `request`; throws `DeviceError` when a demanded one is unusable. */
export async function resolveDevice(request: DeviceRequest, probe: DeviceProbe = onnxruntimeProbe()): Promise<ResolvedDevice> {
  const cpu = (reason: string): ResolvedDevice => ({ requested: request, provider: 'cpu', adapter: probe.adapter('cpu'), reason });
  if (request === 'cpu') return cpu('--device cpu');
  const known = (name: string) => probe.backends().some((b) => b.name === name);
  if (request === 'cuda') {
    if (!known('cuda')) throw new DeviceError(`--device cuda: this build of onnxruntime-node has no CUDA provider on ${process.platform}/${process.arch}; use --device webgpu or --device cpu`);
    try {
      await probe.trySession('cuda');
    } catch (error) {
      throw new DeviceError(`--device cuda: onnxruntime could not start its CUDA provider (${firstLine(error)}). ${CUDA_INSTALL_HINT}`);
    }
    return { requested: request, provider: 'cuda', adapter: probe.adapter('cuda'), reason: '--device cuda' };
  }
  if (!known('webgpu')) {
    if (request === 'webgpu') throw new DeviceError(`--device webgpu: this build of onnxruntime-node has no WebGPU provider on ${process.platform}/${process.arch}; use --device cpu`);
    return cpu('auto: this onnxruntime-node has no WebGPU provider');
  }
  try {
    await probe.trySession('webgpu');
  } catch (error) {
    const why = firstLine(error);
    if (request === 'webgpu') {
      throw new DeviceError(
        `--device webgpu: onnxruntime's WebGPU provider found no usable adapter (${why}). It needs a GPU driver with Vulkan (Linux), D3D12 (Windows) or Metal (macOS); ` +
          'without a GPU, a software Vulkan such as SwiftShader works (see test/gpu/README.md). Or use --device cpu.',
      );
    }
    return cpu(`auto: WebGPU unusable (${why})`);
  }
  return { requested: request, provider: 'webgpu', adapter: probe.adapter('webgpu'), reason: request === 'auto' ? 'auto: a WebGPU adapter answered' : '--device webgpu' };
}

/** Options that put a session on `device` (threads matter on the CPU and for the CPU fallback of unsupported nodes). */
export function providerSessionOptions(device: Pick<ResolvedDevice, 'provider'>, threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: device.provider === 'cpu' ? ['cpu'] : [device.provider, 'cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  };
}

/**
 * How the model's graphs are built for `provider`: under WebGPU the cache stays on the device (the
 * present K/V are outputs) and attention uses only ops the provider has kernels for.
 */
export function graphOptionsFor(provider: ExecutionProvider, weightBits: WeightBits = 32): DecoderGraphOptions {
  const device = provider === 'webgpu';
  return { weightBits, presentOutputs: device, scores: device ? 'plain' : 'fused' };
}

/** The smallest graph that makes a provider initialise its device. */
function probeModel(): Uint8Array {
  return buildModel({
    name: 'device_probe',
    inputs: [{ name: 'x', type: 'float32', dims: [1, 4] }],
    outputs: [{ name: 'y', type: 'float32', dims: [1, 4] }],
    nodes: [{ op: 'Add', inputs: ['x', 'x'], outputs: ['y'] }],
  });
}

/** What this platform's WebGPU runs on; onnxruntime-node gives no adapter name, so say what is known. */
export function describeWebGpuAdapter(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  const api = platform === 'win32' ? 'D3D12' : platform === 'darwin' ? 'Metal' : 'Vulkan';
  const icd = api === 'Vulkan' ? env.VK_ICD_FILENAMES : undefined;
  if (icd && /swiftshader/i.test(icd)) return 'WebGPU on SwiftShader (software Vulkan, no GPU)';
  return `WebGPU on ${api}${icd ? ` (Vulkan driver ${icd})` : ''}`;
}

export function onnxruntimeProbe(): DeviceProbe {
  return {
    backends: () => ort.listSupportedBackends(),
    trySession: async (provider) => {
      // Fatal-only logging: a failed probe is an answer, not an error worth onnxruntime's stderr lines.
      const session = await ort.InferenceSession.create(probeModel(), { executionProviders: [provider], logSeverityLevel: 4 });
      try {
        await session.run({ x: new ort.Tensor('float32', new Float32Array(4), [1, 4]) });
      } finally {
        await session.release();
      }
    },
    adapter: (provider) => (provider === 'webgpu' ? describeWebGpuAdapter() : provider === 'cuda' ? 'CUDA (NVIDIA GPU)' : 'CPU'),
  };
}
