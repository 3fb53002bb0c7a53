/**
 * The environment in which onnxruntime's WebGPU provider finds a Vulkan device on a machine
 * without a GPU: SwiftShader, the software Vulkan shipped in Debian's `chromium` package (which
 * `tools/host/setup.sh` installs). The loader and driver are read when the process starts and
 * when WebGPU first initialises, so the WebGPU tests run in a child process started with it.
 * See test/gpu/README.md.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Set to 1 to skip the WebGPU tests on a machine that has neither a GPU nor SwiftShader. */
export const SKIP_ENV = 'LOOKM_SKIP_WEBGPU';
/** Folder holding `vk_swiftshader_icd.json` and a `libvulkan.so.1` (default: Debian chromium's). */
export const SWIFTSHADER_DIR_ENV = 'LOOKM_SWIFTSHADER_DIR';

/**
 * Variables for the child: the user's own `VK_ICD_FILENAMES` if set (a real GPU's driver), else
 * SwiftShader's. Throws a message that says what to install, or how to opt out, when it is missing.
 */
export function webgpuTestEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const extra: Record<string, string> = {};
  if (!env.XDG_RUNTIME_DIR) extra.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'lookm-webgpu-'));
  if (env.VK_ICD_FILENAMES) return extra;
  if (process.platform !== 'linux') return extra; // D3D12 / Metal: the machine's own GPU or its software adapter
  const dir = env[SWIFTSHADER_DIR_ENV] ?? '/usr/lib/chromium';
  const icd = join(dir, 'vk_swiftshader_icd.json');
  if (!existsSync(icd)) {
    throw new Error(
      `SwiftShader's Vulkan driver (${icd}) is missing, so onnxruntime's WebGPU provider has no device to run the GPU tests on. ` +
        `Install Debian's chromium package (tools/host/setup.sh does), point ${SWIFTSHADER_DIR_ENV} at a folder with vk_swiftshader_icd.json and libvulkan.so.1, ` +
        `set VK_ICD_FILENAMES to a GPU's Vulkan driver, or set ${SKIP_ENV}=1 to skip these tests on this machine.`,
    );
  }
  extra.VK_ICD_FILENAMES = icd;
  // Chromium ships its own Vulkan loader; the system may have none (Debian's libvulkan1).
  extra.LD_LIBRARY_PATH = [dir, env.LD_LIBRARY_PATH].filter(Boolean).join(delimiter);
  return extra;
}
