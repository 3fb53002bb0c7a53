/**
 * The model on onnxruntime's WebGPU provider with its KV cache on the device, for real: on a
 * machine without a GPU, over SwiftShader's software Vulkan. Parity with the CPU (`modelCases.ts`)
 * and a multi-turn conversation through the real sidecar started with `--device webgpu`, all in a
 * child process started with the Vulkan environment (see `swiftshader.ts`); a WebGPU that fails to
 * start FAILS here, unless LOOKM_SKIP_WEBGPU=1 opts this machine out (test/gpu/README.md).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { defineModelTests } from './modelCases.js';
import { defineSidecarTests } from './sidecarCases.js';
import { SKIP_ENV, webgpuTestEnv } from './swiftshader.js';

const CHILD_ENV = 'LOOKM_WEBGPU_MODEL_CHILD';

if (process.env[CHILD_ENV]) {
  defineModelTests();
  defineSidecarTests();
} else {
  const skip = process.env[SKIP_ENV] === '1' ? `${SKIP_ENV}=1: this machine opted out of the WebGPU tests` : false;
  it('the model on WebGPU, its KV cache on the device (a child process with the Vulkan environment)', { skip }, () => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...webgpuTestEnv(), [CHILD_ENV]: '1' };
    // The parent's test-runner context would make the child's `--test` skip its file.
    delete env.NODE_TEST_CONTEXT;
    const started = performance.now();
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', __filename], { env, encoding: 'utf8', timeout: 400_000 });
    const output = `${child.stdout}\n${child.stderr}`;
    if (process.env.LOOKM_DEVICE_TIMINGS) console.log(`${output}\n# child: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(child.status, 0, `the WebGPU model tests failed (exit ${child.status}${child.signal ? `, signal ${child.signal}` : ''}):\n${output.slice(-8000)}`);
    const passed = Number(/^ℹ pass (\d+)$/m.exec(child.stdout)?.[1] ?? 0);
    assert.ok(passed >= 7, `the child ran ${passed} WebGPU model tests, expected 7 or more:\n${output.slice(-8000)}`);
  });
}
