/**
 * The model on WebGPU against the same model on the CPU (the reference), with the KV cache on the
 * device: logits, greedy tokens, a LOOK-M compression's kept slots and merged rows, a multi-turn
 * conversation with images, and the proof that no run copies the cache to the host. Run in the
 * WebGPU child of `modelWebgpu.test.ts` (SwiftShader without a GPU).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as ort from 'onnxruntime-node';
import { planCompression, POLICIES, type CompressionPlan, type KvCache } from '../../sidecar/src/kv/index.js';
import { SessionSettings } from '../../sidecar/src/protocol/index.js';
import { resolveDevice } from '../../sidecar/src/runtime/device.js';
import { DeviceRows } from '../../sidecar/src/runtime/deviceRows.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache } from '../../sidecar/src/session/conversation.js';

const root = join(__dirname, '../..');
export const TINY_LLAVA = join(root, 'test/fixtures/models/tiny-llava-llama');
const image = (name: string) => new Uint8Array(readFileSync(join(root, 'test/fixtures/images', name)));

/**
 * WebGPU's float32 kernels sum in another order than the CPU's (and fuse differently): last-token
 * logits were measured up to 5.3e-4 apart on the test checkpoints, with the same argmax. The
 * bound leaves room for that, far below the logits' spread (greedy tokens are compared exactly).
 */
export const LOGITS_TOLERANCE = 2e-3;
/** K/V rows (and merged rows) computed on the two providers: the same rounding differences, one layer deep. */
const ROWS_TOLERANCE = 1e-3;

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'same number of values');
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** A prompt with one image, its embeddings ready for `prefill`. */
async function imagePrompt(runtime: OnnxModelRuntime) {
  const { processor } = runtime;
  const features = await runtime.encodeImages([image('red-square.png')]);
  const ids = processor.encode(processor.applyChatTemplate([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in the picture? Describe the colours and the shape.' }] }]));
  return runtime.embedPrompt(ids, features);
}

/** Every decoder run's outputs: where each came back, and how many bytes reached the host. */
interface RunRecord {
  deviceOutputs: string[];
  locations: Record<string, string>;
  hostBytes: number;
}

/** Records the decoder session's runs (the proof that the K/V stay on the device). */
function recordRuns(runtime: OnnxModelRuntime): RunRecord[] {
  const runs: RunRecord[] = [];
  const session = (runtime.decoder as unknown as { session: ort.InferenceSession }).session;
  const run = session.run.bind(session) as (...args: unknown[]) => Promise<ort.InferenceSession.OnnxValueMapType>;
  (session as { run: unknown }).run = async (...args: unknown[]) => {
    const out = await run(...args);
    const record: RunRecord = { deviceOutputs: [], locations: {}, hostBytes: 0 };
    for (const [name, t] of Object.entries(out)) {
      record.locations[name] = t.location;
      if (t.location === 'gpu-buffer') record.deviceOutputs.push(name);
      else record.hostBytes += (t.data as Float32Array).byteLength;
    }
    runs.push(record);
    return out;
  };
  return runs;
}

export function defineModelTests(): void {
  describe('tiny-llava-llama on WebGPU against the CPU', () => {
    let cpu: OnnxModelRuntime;
    let gpu: OnnxModelRuntime;
    before(async () => {
      const device = await resolveDevice('webgpu');
      console.log(`# ${device.adapter}`);
      cpu = await OnnxModelRuntime.load(TINY_LLAVA, { threads: 1 });
      gpu = await OnnxModelRuntime.load(TINY_LLAVA, { threads: 1, device });
    });
    after(async () => Promise.all([cpu?.release(), gpu?.release()]));

    it('runs every session on WebGPU and says so, its KV cache on the device', () => {
      assert.equal(gpu.info.device?.provider, 'webgpu');
      assert.equal(gpu.info.device?.kvOnDevice, true);
      assert.equal(cpu.info.device?.provider, 'cpu');
      assert.equal(cpu.info.device?.kvOnDevice, false);
      assert.ok(gpu.createCache().external instanceof DeviceRows);
      assert.equal(cpu.createCache().external, null);
    });

    it(`gives the CPU's logits (within ${LOGITS_TOLERANCE}) and the same 32 greedy tokens, with no full-cache copy in any step`, async () => {
      const [cpuPrompt, gpuPrompt] = await Promise.all([imagePrompt(cpu), imagePrompt(gpu)]);
      assert.ok(maxDifference(cpuPrompt.embeds, gpuPrompt.embeds) <= 1e-4, 'the image features match');
      const caches = [cpu.createCache(), gpu.createCache()];
      const runs = recordRuns(gpu);
      const prefills = await Promise.all([cpu, gpu].map((runtime, i) => runtime.prefill(caches[i], cpuPrompt.embeds, cpuPrompt.positions, cpuPrompt.modality)));
      const prefillDiff = maxDifference(prefills[0].logits, prefills[1].logits);
      assert.ok(prefillDiff <= LOGITS_TOLERANCE, `prefill logits differ by ${prefillDiff}`);
      const tokens: number[][] = [[], []];
      let logits = prefills.map((p) => p.logits);
      let worst = prefillDiff;
      for (let step = 0; step < 32; step++) {
        const next = logits.map(argmax);
        assert.equal(next[1], next[0], `greedy token ${step}`);
        next.forEach((t, i) => tokens[i].push(t));
        logits = await Promise.all([cpu, gpu].map((runtime, i) => runtime.decodeStep(caches[i], next[i], caches[i].tokensSeen)));
        worst = Math.max(worst, maxDifference(logits[0], logits[1]));
        assert.ok(worst <= LOGITS_TOLERANCE, `step ${step}: logits differ by ${worst}`);
      }
      console.log(`# 32 greedy tokens identical; logits differ by at most ${worst.toExponential(2)}`);
      assert.deepEqual(tokens[1], tokens[0]);
      // The K/V never left the device: every run returned its present K/V as gpu-buffer tensors
      // and brought back only the logits row and the column sums, far less than the cache.
      const rows = caches[1].external as DeviceRows;
      const { numLayers } = gpu.decoderShape;
      assert.equal(runs.length, 1 + 32);
      for (const [i, run] of runs.entries()) {
        assert.equal(run.deviceOutputs.length, 2 * numLayers, `run ${i}: every layer's present K and V stay on the device (${JSON.stringify(run.locations)})`);
        assert.ok(run.deviceOutputs.every((name) => name.startsWith('present_')), `run ${i}: only the K/V stay on the device`);
      }
      const decodeHost = Math.max(...runs.slice(1).map((r) => r.hostBytes));
      assert.ok(decodeHost < rows.allocatedBytes / 4, `a decode step brought ${decodeHost} bytes to the host; the cache holds ${rows.allocatedBytes}`);
      assert.deepEqual(new Set(rows.locations()), new Set(['gpu-buffer']));
      // The device cache holds exactly the tokens seen, as the CPU's (which keeps spare capacity).
      const { numKvHeads: H, headDim: D } = gpu.decoderShape;
      assert.equal(rows.allocatedBytes, numLayers * 2 * H * caches[1].tokensSeen * D * 4);
      // And its rows are the CPU's rows.
      const downloaded = await rows.download();
      const kvDiff = Math.max(...downloaded.flatMap((layer, i) => [maxDifference(layer.keys, caches[0].layers[i].keys), maxDifference(layer.values, caches[0].layers[i].values)]));
      assert.ok(kvDiff <= ROWS_TOLERANCE, `device K/V differ from the CPU's by ${kvDiff}`);
      caches.forEach((c) => c.release());
    });

    it('a LOOK-M compression keeps the same slots and merges the same rows on the device', async () => {
      const prompt = await imagePrompt(cpu);
      const caches = [cpu.createCache(), gpu.createCache()];
      await Promise.all([cpu, gpu].map((runtime, i) => runtime.prefill(caches[i], prompt.embeds, prompt.positions, prompt.modality)));
      const rows = caches[1].external as DeviceRows;
      for (const policy of ['text_prior_pivot_merge', 'text_prior_avg_merge', 'h2o'] as const) {
        const cpuCache = policy === 'text_prior_pivot_merge' ? caches[0] : await fresh(cpu, prompt);
        const gpuCache = policy === 'text_prior_pivot_merge' ? caches[1] : await fresh(gpu, prompt);
        const gpuRows = gpuCache.external as DeviceRows;
        const options = { policy, budget: { hhRatio: 0.15, recentRatio: 0.15 }, numQueryHeads: cpu.info.heads } as const;
        const rule = POLICIES[policy].merge;
        for (let i = 0; i < cpuCache.layers.length; i++) {
          const plans: (CompressionPlan | null)[] = [
            await planCompression(cpuCache.layers[i], options),
            await planCompression(gpuCache.layers[i], { ...options, matcher: gpuRows.matcher(i), rowsElsewhere: true }),
          ];
          assert.ok(plans[0] && plans[1], `${policy}: layer ${i} is compressed`);
          assert.deepEqual(plans[1].kept, plans[0].kept, `${policy}: layer ${i} keeps the same slots`);
          if (rule) assert.deepEqual(plans[1].matches!.target, plans[0].matches!.target, `${policy}: layer ${i} merges into the same slots`);
          cpuCache.compact(i, plans[0]);
          await gpuRows.compact(i, plans[1], rule ? { rule, mode: 'improved' } : null);
          gpuCache.compact(i, plans[1]);
        }
        const downloaded = await gpuRows.download();
        const diff = Math.max(...downloaded.flatMap((layer, i) => [maxDifference(layer.keys, cpuCache.layers[i].keys), maxDifference(layer.values, cpuCache.layers[i].values)]));
        assert.ok(diff <= ROWS_TOLERANCE, `${policy}: kept and merged rows differ by ${diff}`);
        assert.deepEqual(gpuCache.layers.map((l) => l.positions), cpuCache.layers.map((l) => l.positions), `${policy}: the same positions`);
        assert.equal(gpuRows.allocatedBytes, cpuCache.layers.reduce((n, l) => n + 2 * l.keys.byteLength, 0), `${policy}: the device holds exactly the kept rows`);
        if (gpuCache !== caches[1]) [cpuCache, gpuCache].forEach((c) => c.release());
      }
      assert.ok(rows.length > 0);
      caches.forEach((c) => c.release());
    });

    it('undoing a prefill (a turn that is not kept) drops its rows on the device, as on the CPU', async () => {
      const prompt = await imagePrompt(cpu);
      const split = prompt.positions.length - 5;
      const caches = [cpu.createCache(), gpu.createCache()];
      const logits = await Promise.all(
        [cpu, gpu].map(async (runtime, i) => {
          const cache = caches[i];
          await runtime.prefill(cache, prompt.embeds.subarray(0, split * cpu.decoderShape.hiddenSize), prompt.positions.subarray(0, split), prompt.modality.subarray(0, split));
          const undo = cache.mark();
          await runtime.prefill(cache, prompt.embeds.subarray(split * cpu.decoderShape.hiddenSize), prompt.positions.subarray(split), prompt.modality.subarray(split));
          undo();
          return runtime.decodeStep(cache, 7, split);
        }),
      );
      const rows = caches[1].external as DeviceRows;
      assert.equal(rows.length, split + 1, 'the undone rows are gone, the new token appended');
      const diff = maxDifference(logits[0], logits[1]);
      assert.ok(diff <= LOGITS_TOLERANCE, `logits after the undo differ by ${diff}`);
      assert.equal(argmax(logits[1]), argmax(logits[0]));
      caches.forEach((c) => c.release());
    });

    it('a multi-turn conversation with images under LOOK-M answers as on the CPU, compressed on the device', async () => {
      const settings = SessionSettings.parse({ policy: 'text_prior_pivot_merge', maxNewTokens: 8, budget: { hhRatio: 0.2, recentRatio: 0.2 } });
      const talk = async (runtime: OnnxModelRuntime) => {
        const conversation = new Conversation('c', settings);
        const features = new FeatureCache();
        const turn = (text: string, images: Uint8Array[]) => conversation.turn(runtime, features, { text, images, files: [] }, () => undefined, () => false);
        const turns = [
          await turn('What is in the first image?', [image('red-square.png'), image('blue-circle.png')]),
          await turn('And in the second?', []),
          await turn('Compare them with this one.', [image('red-square.png')]),
        ];
        maps.push(conversation.cacheMap());
        conversation.evict(); // the rebuild replays every turn on the same device
        turns.push(await turn('Once more.', []));
        conversation.evict();
        return turns.map((t) => ({ text: t.text, stopReason: t.stopReason, tokensSeen: t.stats.tokensSeen, keptSlots: t.stats.keptSlots, rebuilt: t.stats.rebuilt }));
      };
      const maps: ReturnType<Conversation['cacheMap']>[] = [];
      const [onCpu, onGpu] = [await talk(cpu), await talk(gpu)];
      // The cache view: the same kept positions and merged image patches (merged on the device).
      assert.ok(maps[0].images.some((img) => img.merged.some((n) => n > 0)), 'the CPU merged some image patches');
      assert.deepEqual(maps[1].layers, maps[0].layers);
      assert.deepEqual(maps[1].images, maps[0].images);
      assert.ok(onCpu[2].keptSlots.every((n) => n < onCpu[2].tokensSeen), 'LOOK-M compressed the cache');
      assert.deepEqual(onGpu, onCpu);
    });
  });
}

async function fresh(runtime: OnnxModelRuntime, prompt: Awaited<ReturnType<typeof imagePrompt>>): Promise<KvCache> {
  const cache = runtime.createCache();
  await runtime.prefill(cache, prompt.embeds, prompt.positions, prompt.modality);
  return cache;
}
