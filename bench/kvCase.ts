/**
 * One measurement of the KV benchmark, in its own process so its memory high-water mark is its
 * own: `tsx bench/kvCase.ts '<json>'` prints one JSON line.
 *   {"kind":"policy","policy":"h2o","heads":32,"queryHeads":32,"headDim":128,"length":8192,"matcher":"ort"}
 *   {"kind":"prefill","heads":32,"headDim":128,"length":8192}
 */
import { compressLayer, type PolicyName } from '../sidecar/src/kv/index.js';
import { createOrtMatcher } from '../sidecar/src/runtime/ortMatcher.js';
import { timeAttentionPrefill } from './prefill.js';
import { fillUniform, syntheticLayer, type LayerShape } from './shapes.js';

export interface PolicyCase extends LayerShape {
  kind: 'policy';
  policy: PolicyName;
  matcher: 'js' | 'ort';
  hhRatio: number;
  recentRatio: number;
}

export interface PrefillCase {
  kind: 'prefill';
  heads: number;
  headDim: number;
  length: number;
}

export interface PolicyResult {
  ms: number;
  keptPerHead: number;
  bytesBefore: number;
  bytesAfter: number;
  /** Growth of the process's resident-set high-water mark during the compression. */
  peakExtraBytes: number;
}

const SNAPKV_WINDOW = 64;

async function runPolicy(c: PolicyCase): Promise<PolicyResult> {
  const matcher = c.matcher === 'ort' ? await createOrtMatcher() : undefined;
  const budget = { hhRatio: c.hhRatio, recentRatio: c.recentRatio };
  const queries = new Float32Array(c.queryHeads * SNAPKV_WINDOW * c.headDim);
  fillUniform(queries, 3);
  const options = { policy: c.policy, budget, matcher, queries, numQueryHeads: c.queryHeads, seed: 1 };
  // Warm the JIT (and onnxruntime's kernels) on a small layer of the same width first.
  await compressLayer(syntheticLayer({ ...c, length: 1024 }, 5), options);

  const layer = syntheticLayer(c);
  const bytesBefore = layer.allocatedBytes;
  globalThis.gc?.();
  const rssBefore = process.resourceUsage().maxRSS;
  const start = performance.now();
  const plan = await compressLayer(layer, options);
  const ms = performance.now() - start;
  const peakExtraBytes = (process.resourceUsage().maxRSS - rssBefore) * 1024;
  await matcher?.release();
  return { ms, keptPerHead: plan?.keptPerHead ?? layer.length, bytesBefore, bytesAfter: layer.allocatedBytes, peakExtraBytes };
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2]) as PolicyCase | PrefillCase;
  const result = c.kind === 'prefill' ? { ms: await timeAttentionPrefill(c.heads, c.headDim, c.length) } : await runPolicy(c);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

void main();
