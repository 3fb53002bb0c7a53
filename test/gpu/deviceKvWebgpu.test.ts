/**
 * The device KV graphs on onnxruntime's WebGPU provider, for real: on a machine without a GPU,
 * over SwiftShader's software Vulkan. The tests run in a child process started with the Vulkan
 * environment (see `swiftshader.ts`); a WebGPU that fails to start FAILS here with the reason,
 * unless LOOKM_SKIP_WEBGPU=1 opts this machine out (test/gpu/README.md).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { resolveDevice } from '../../sidecar/src/runtime/device.js';
import { defineDeviceKvTests } from './deviceKvCases.js';
import { SKIP_ENV, webgpuTestEnv } from './swiftshader.js';

const CHILD_ENV = 'LOOKM_WEBGPU_CHILD';

if (process.env[CHILD_ENV]) {
  it('WebGPU starts (an adapter answers)', async () => {
    const device = await resolveDevice('webgpu');
    console.log(`# ${device.adapter}`);
  });
  defineDeviceKvTests('webgpu');
} else {
  const skip = process.env[SKIP_ENV] === '1' ? `${SKIP_ENV}=1: this machine opted out of the WebGPU tests` : false;
  it('device KV graphs on WebGPU (a child process with the Vulkan environment)', { skip }, () => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...webgpuTestEnv(), [CHILD_ENV]: '1' };
    // The parent's test-runner context would make the child's `--test` skip its file.
    delete env.NODE_TEST_CONTEXT;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', __filename], { env, encoding: 'utf8', timeout: 240_000 });
    const output = `${child.stdout}\n${child.stderr}`;
    if (process.env.LOOKM_DEVICE_TIMINGS) console.log(output);
    assert.equal(child.status, 0, `the WebGPU tests failed (exit ${child.status}${child.signal ? `, signal ${child.signal}` : ''}):\n${output.slice(-6000)}`);
    const passed = Number(/^ℹ pass (\d+)$/m.exec(child.stdout)?.[1] ?? 0);
    assert.ok(passed >= 9, `the child ran ${passed} WebGPU tests, expected 9 or more:\n${output.slice(-6000)}`);
  });
}
