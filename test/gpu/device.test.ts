/** The execution-provider choice (`--device`), with the machine's answers injected. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import type { ResponseError } from 'vscode-jsonrpc/node';
import { ErrorCode, Methods } from '../../sidecar/src/protocol/index.js';
import { connect, startSidecar, tinyModel } from '../sidecar/harness.js';
import { CUDA_INSTALL_HINT, DeviceError, describeWebGpuAdapter, parseDeviceRequest, providerSessionOptions, resolveDevice, type DeviceProbe } from '../../sidecar/src/runtime/device.js';

/** A machine whose onnxruntime knows `backends` and on which sessions of `usable` providers start. */
function machine(backends: string[], usable: string[]): DeviceProbe & { tried: string[] } {
  const tried: string[] = [];
  return {
    tried,
    backends: () => backends.map((name) => ({ name, bundled: name !== 'cuda' })),
    trySession: (provider) => {
      tried.push(provider);
      return usable.includes(provider) ? Promise.resolve() : Promise.reject(new Error(`no ${provider} here\nsecond line`));
    },
    adapter: (provider) => `adapter of ${provider}`,
  };
}

const ORT_130 = ['cpu', 'webgpu', 'cuda', 'tensorrt'];

describe('--device', () => {
  it('accepts the four choices and names them when refusing anything else', () => {
    for (const value of ['auto', 'cpu', 'webgpu', 'cuda']) assert.equal(parseDeviceRequest(value), value);
    for (const value of ['gpu', 'CPU', '', 'tensorrt']) assert.throws(() => parseDeviceRequest(value), (e: Error) => e instanceof DeviceError && /auto, cpu, webgpu, cuda/.test(e.message) && e.message.includes(`"${value}"`));
  });

  it('auto takes WebGPU when a session starts on it, with its adapter', async () => {
    const probe = machine(ORT_130, ['webgpu']);
    const device = await resolveDevice('auto', probe);
    assert.deepEqual({ provider: device.provider, adapter: device.adapter }, { provider: 'webgpu', adapter: 'adapter of webgpu' });
    assert.deepEqual(probe.tried, ['webgpu']);
  });

  it('auto falls back to the CPU when WebGPU has no adapter, and says why', async () => {
    const device = await resolveDevice('auto', machine(ORT_130, []));
    assert.equal(device.provider, 'cpu');
    assert.match(device.reason, /WebGPU unusable \(no webgpu here\)/);
    assert.doesNotMatch(device.reason, /second line/);
  });

  it('auto takes the CPU without probing when onnxruntime has no WebGPU provider', async () => {
    const probe = machine(['cpu'], ['webgpu']);
    assert.equal((await resolveDevice('auto', probe)).provider, 'cpu');
    assert.deepEqual(probe.tried, []);
  });

  it('cpu never probes a GPU', async () => {
    const probe = machine(ORT_130, ['webgpu', 'cuda']);
    assert.equal((await resolveDevice('cpu', probe)).provider, 'cpu');
    assert.deepEqual(probe.tried, []);
  });

  it('webgpu is a demand: no adapter is an error that says what is needed, not a fallback', async () => {
    await assert.rejects(resolveDevice('webgpu', machine(ORT_130, [])), (e: Error) => e instanceof DeviceError && /no usable adapter \(no webgpu here\)/.test(e.message) && /Vulkan/.test(e.message) && /--device cpu/.test(e.message));
    await assert.rejects(resolveDevice('webgpu', machine(['cpu'], [])), /no WebGPU provider/);
    assert.equal((await resolveDevice('webgpu', machine(ORT_130, ['webgpu']))).provider, 'webgpu');
  });

  it('cuda without its provider libraries fails with how to install them', async () => {
    await assert.rejects(resolveDevice('cuda', machine(ORT_130, ['webgpu'])), (e: Error) => e instanceof DeviceError && e.message.includes(CUDA_INSTALL_HINT) && /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/.test(e.message));
    await assert.rejects(resolveDevice('cuda', machine(['cpu', 'webgpu'], [])), /no CUDA provider/);
    assert.equal((await resolveDevice('cuda', machine(ORT_130, ['cuda']))).provider, 'cuda');
  });

  it("cuda on this machine's onnxruntime (no provider libraries in the npm package) is refused cleanly", async () => {
    await assert.rejects(resolveDevice('cuda'), (e: Error) => e instanceof DeviceError && e.message.includes(CUDA_INSTALL_HINT));
  });

  it('session options put the session on the provider, the CPU catching what a GPU provider lacks', () => {
    assert.deepEqual(providerSessionOptions({ provider: 'cpu' }, 2).executionProviders, ['cpu']);
    assert.deepEqual(providerSessionOptions({ provider: 'webgpu' }, 2).executionProviders, ['webgpu', 'cpu']);
    assert.equal(providerSessionOptions({ provider: 'cuda' }, 3).intraOpNumThreads, 3);
  });

  it('names the WebGPU backend of each platform, and SwiftShader when that is the Vulkan driver', () => {
    assert.equal(describeWebGpuAdapter('win32', {}), 'WebGPU on D3D12');
    assert.equal(describeWebGpuAdapter('darwin', {}), 'WebGPU on Metal');
    assert.equal(describeWebGpuAdapter('linux', {}), 'WebGPU on Vulkan');
    assert.match(describeWebGpuAdapter('linux', { VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json' }), /SwiftShader/);
  });

  it('the sidecar parses the flag: an unknown device is refused by name, a GPU one is taken', async () => {
    await assert.rejects(startSidecar(['--device', 'gpu']), /--device must be one of auto, cpu, webgpu, cuda, got \\?"gpu/);
    for (const device of ['cpu', 'webgpu', 'auto']) {
      const sidecar = await startSidecar(['--device', device]);
      sidecar.process.kill();
    }
  });

  it('--device cuda without the CUDA provider libraries fails the model load with how to get them', { skip: ort.listSupportedBackends().some((b) => b.name === 'cuda' && b.bundled) ? 'onnxruntime-node bundles CUDA here' : false }, async () => {
    const sidecar = await startSidecar(['--device', 'cuda']);
    try {
      const { connection } = await connect(sidecar);
      await connection.sendRequest(Methods.initialize, { capabilities: {} });
      await assert.rejects(connection.sendRequest(Methods.modelLoad, { path: tinyModel }), (error: ResponseError<unknown>) => {
        assert.equal(error.code, ErrorCode.ModelLoadFailed);
        assert.match(error.message, /--device cuda/);
        assert.ok(error.message.includes('ONNXRUNTIME_NODE_INSTALL=cuda12'), error.message);
        return true;
      });
    } finally {
      sidecar.process.kill();
    }
  });
});
