/**
 * `npm run bench:gpu [-- --model DIR[,DIR] --lengths 2048,8192,32768 --devices webgpu,cpu --steps 16 --quick]`:
 * decode tokens/s and KV bytes, full cache vs LOOK-M 20% (`text_prior_pivot_merge`, compressed
 * after the prefill), for each checkpoint x device x length. Not part of `npm test`.
 *
 * Each device runs in its own child process, so WebGPU's Vulkan environment applies from the
 * start. On a machine with no GPU (no /dev/nvidia0 nor /dev/dri render node) and no
 * VK_ICD_FILENAMES, `webgpu` runs on SwiftShader (software Vulkan): its figures are not GPU figures,
 * and the report says so. Per length: one real prefill of random text ids, 80% of them tagged as
 * one image (the LLaVA layout LOOK-M's text prior acts on; their embeddings are text embeddings),
 * `steps` timed decode steps on the full cache (after two untimed), then LOOK-M compression of
 * that same cache and `steps` timed decode steps on it. Ratios are against the CPU/full figure of
 * the same checkpoint and length, measured in the same run. Writes bench/results/gpu.{json,md}.
 * Default checkpoints: the Qwen2-0.5B shape and the LLaVA-1.5-like MHA Llama of
 * tools/model/bench_model.py, generated into bench/.models/ on first use (Python, as bench:runtime).
 * `--quick`: test/fixtures/models/tiny-llava-llama (MHA, 512-token context), lengths 128,384.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { observedRows, planCompression, POLICIES, TEXT, type CompressOptions } from '../sidecar/src/kv/index.js';
import { parseDeviceRequest, resolveDevice } from '../sidecar/src/runtime/device.js';
import { OnnxModelRuntime } from '../sidecar/src/runtime/onnxModelRuntime.js';
import { argmax } from '../sidecar/src/runtime/sampling.js';
import { webgpuTestEnv } from '../test/gpu/swiftshader.js';

const root = join(__dirname, '..');
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    lengths: { type: 'string' },
    devices: { type: 'string', default: 'webgpu,cpu' },
    steps: { type: 'string' },
    threads: { type: 'string', default: String(Math.max(1, cpus().length)) },
    quick: { type: 'boolean', default: false },
    child: { type: 'string' }, // internal: run one device in this process, print JSON lines
    out: { type: 'string', default: process.env.BENCH_RESULTS_DIR ?? join(root, 'bench/results') },
  },
});
const quick = values.quick;
const lengths = (values.lengths ?? (quick ? '128,384' : '2048,8192,32768')).split(',').map(Number);
const steps = Number(values.steps ?? 16);
const threads = Number(values.threads);
const BUDGET = { hhRatio: 0.1, recentRatio: 0.1 }; // LOOK-M 20%: half heavy hitters, half recent
const POLICY = 'text_prior_pivot_merge' as const;

interface Row {
  model: string;
  device: string;
  provider: string;
  kvOnDevice: boolean;
  length: number;
  requestedLength: number;
  mode: 'full' | 'lookm20';
  decodeTokensPerS: number;
  kvAllocatedBytes: number;
  cacheLength: number;
}

function checkOptions(): void {
  for (const [name, n] of [['--lengths', lengths], ['--steps', [steps]], ['--threads', [threads]]] as const) {
    if (n.some((v) => !(Number.isInteger(v) && v >= 1))) throw new Error(`${name} must be positive integers, got ${n.join(',')}`);
  }
}

/** One device: every length, full then LOOK-M on the same prefilled cache. */
async function runChild(dir: string, deviceName: string): Promise<void> {
  const device = await resolveDevice(parseDeviceRequest(deviceName));
  const runtime = await OnnxModelRuntime.load(dir, { device, threads });
  const kvOnDevice = runtime.info.device?.kvOnDevice ?? false;
  const room = runtime.contextLength - (steps + 2) * 2;
  for (const requested of lengths) {
    const L = Math.min(requested, room);
    if (L < 8) throw new Error(`the model's context (${runtime.contextLength}) leaves no room for a prompt and ${(steps + 2) * 2} decode steps`);
    const ids = Array.from({ length: L }, (_, i) => 4 + ((i * 7919) % 300));
    const modality = new Int32Array(L).fill(TEXT);
    modality.fill(0, Math.min(4, L), Math.min(L, 4 + Math.floor(L * 0.8))); // one image after a short text prefix
    const options: CompressOptions = { policy: POLICY, budget: BUDGET, numQueryHeads: runtime.info.heads, matcher: runtime.matcher };
    const cache = runtime.createCache();
    const windowRows = observedRows(options, L, L);
    const prefilled = await runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), modality, { windowRows });
    let token = argmax(prefilled.logits);
    let position = L;
    const decode = async (): Promise<number> => {
      for (let s = 0; s < 2; s++) token = argmax(await runtime.decodeStep(cache, token, position++)); // warm-up, untimed
      const started = performance.now();
      for (let s = 0; s < steps; s++) token = argmax(await runtime.decodeStep(cache, token, position++));
      return steps / ((performance.now() - started) / 1000);
    };
    const row = (mode: Row['mode'], decodeTokensPerS: number): Row => ({ model: basename(dir), device: deviceName, provider: device.provider, kvOnDevice, length: L, requestedLength: requested, mode, decodeTokensPerS, kvAllocatedBytes: cache.allocatedBytes, cacheLength: cache.length });
    const fullBytes = cache.allocatedBytes;
    const fullLength = cache.length;
    const full = await decode();
    console.log(JSON.stringify({ ...row('full', full), kvAllocatedBytes: fullBytes, cacheLength: fullLength }));
    // As a conversation compresses (session/conversation.ts): rows on the device are merged there.
    const rows = cache.external;
    for (const [i, layer] of cache.layers.entries()) {
      const layerOptions = { ...options, windowScores: prefilled.windowScores?.[i], ...(rows ? { matcher: rows.matcher(i), rowsElsewhere: true } : {}) };
      const plan = await planCompression(layer, layerOptions);
      if (!plan) continue;
      const rule = POLICIES[POLICY].merge;
      if (rows) await rows.compact(i, plan, rule ? { rule, mode: 'improved' } : null);
      cache.compact(i, plan);
    }
    const compressedBytes = cache.allocatedBytes;
    const compressedLength = cache.length;
    const lookm = await decode();
    console.log(JSON.stringify({ ...row('lookm20', lookm), kvAllocatedBytes: compressedBytes, cacheLength: compressedLength }));
    cache.release();
  }
  await runtime.release();
}

/** True when this machine shows a GPU to Vulkan (NVIDIA's device node or a DRM render node). */
function hasGpu(): boolean {
  if (existsSync('/dev/nvidia0')) return true;
  try {
    return readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  } catch {
    return false;
  }
}

function ensureModel(dir: string, how: 'make' | 'make-mha'): string {
  if (!existsSync(join(dir, 'config.json'))) {
    process.stderr.write(`generating the benchmark checkpoint in ${dir} (tools/model/bench_model.py ${how}) ...\n`);
    execFileSync(process.env.PYTHON ?? 'python3', [join(root, 'tools/model/bench_model.py'), how, dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return dir;
}

function models(): string[] {
  if (values.model) return values.model.split(',').map((d) => resolve(d));
  if (quick) return [join(root, 'test/fixtures/models/tiny-llava-llama')];
  return [ensureModel(join(root, 'bench/.models/qwen2-0.5b'), 'make'), ensureModel(join(root, 'bench/.models/llava-mha'), 'make-mha')];
}

async function main(): Promise<void> {
  checkOptions();
  if (values.model === undefined && values.child) throw new Error('--child needs --model');
  if (values.child) return runChild(String(values.model), values.child);
  const devices = values.devices.split(',').map((d) => d.trim());
  for (const d of devices) {
    try {
      parseDeviceRequest(d);
    } catch (error) {
      throw new Error(`--devices takes a comma-separated list: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const gpu = hasGpu();
  const swiftshader = !gpu && !process.env.VK_ICD_FILENAMES && process.platform === 'linux';
  const rows: Row[] = [];
  const failures: string[] = [];
  for (const dir of models()) {
    for (const device of devices) {
      const env = device === 'webgpu' && swiftshader ? { ...process.env, ...webgpuTestEnv() } : process.env;
      const args = ['--import', 'tsx', __filename, '--child', device, '--model', dir, '--lengths', lengths.join(','), '--steps', String(steps), '--threads', String(threads)];
      process.stderr.write(`${basename(dir)} on ${device}${device === 'webgpu' && swiftshader ? ' (SwiftShader, no GPU)' : ''} ...\n`);
      const child = spawnSync(process.execPath, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
      const mine = child.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Row);
      rows.push(...mine);
      if (child.status !== 0) failures.push(`${basename(dir)} on ${device}: exit ${child.status ?? child.signal}${mine.length ? ` after ${mine.length} rows` : ''}`);
    }
  }
  const baseline = (r: Row) => rows.find((b) => b.model === r.model && b.device === 'cpu' && b.mode === 'full' && b.requestedLength === r.requestedLength);
  const withRatios = rows.map((r) => {
    const b = baseline(r);
    return { ...r, speedVsCpuFull: b ? +(r.decodeTokensPerS / b.decodeTokensPerS).toFixed(3) : null, kvVsCpuFull: b ? +(r.kvAllocatedBytes / b.kvAllocatedBytes).toFixed(3) : null };
  });
  const webgpuNote = swiftshader
    ? 'webgpu ran on SwiftShader (software Vulkan on the CPU): NOT a GPU figure; no GPU was present'
    : gpu
      ? 'webgpu ran on the GPU the system Vulkan loader found'
      : `webgpu ran on VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? ''}`;
  const machine = `${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, Node ${process.version}, ${threads} threads`;
  const results = { date: new Date().toISOString(), machine, quick, steps, policy: POLICY, budget: BUDGET, webgpu: webgpuNote, failures, rows: withRatios };
  mkdirSync(values.out, { recursive: true });
  const name = 'gpu';
  writeFileSync(join(values.out, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const mib = (b: number) => (b / 2 ** 20).toFixed(2);
  const ratio = (v: number | null) => (v === null ? '-' : v.toFixed(2));
  const md = [
    `# Decode speed and KV bytes by device, full vs LOOK-M 20% (${quick ? '--quick' : 'full run'})`,
    '',
    `${results.date} · ${machine}`,
    '',
    `**${webgpuNote}.**`,
    '',
    ...(quick ? ['`--quick`: a tiny model at short lengths, where a step is mostly fixed overhead and the machine\'s load; its tokens/s say nothing of long contexts (only the KV ratios carry over). Use the full run for figures.', ''] : []),
    `Per length: a real prefill (80% of its tokens tagged as one image), ${steps} timed decode steps on the full cache (after 2 untimed), then \`${POLICY}\` at 20% (10% heavy hitters + 10% recent) on that cache and ${steps} timed steps on it. Ratios: against CPU/full of the same model and length in this run. KV bytes: the cache's \`allocatedBytes\` (host rows, plus device rows under WebGPU).`,
    '',
    '| model | device | tokens | cache | decode tok/s | vs CPU full | KV MiB | vs CPU full |',
    '|---|---|---|---|---|---|---|---|',
    ...withRatios.map((r) => `| ${r.model} | ${r.device}${r.kvOnDevice ? ' (KV on device)' : ''} | ${r.length}${r.length !== r.requestedLength ? ` (asked ${r.requestedLength}, context-limited)` : ''} | ${r.mode} (${r.cacheLength} slots) | ${r.decodeTokensPerS.toFixed(2)} | ${ratio(r.speedVsCpuFull)} | ${mib(r.kvAllocatedBytes)} | ${ratio(r.kvVsCpuFull)} |`),
    '',
    ...(failures.length ? ['Failures:', '', ...failures.map((f) => `* ${f}`), ''] : []),
  ].join('\n');
  writeFileSync(join(values.out, `${name}.md`), md);
  process.stdout.write(md);
  if (failures.length) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
