/**
 * `npm run bench:kv [-- --lengths 2048,8192,32768]`: times one layer's compression for every
 * policy at realistic shapes (32 heads x head_dim 128 at each length, plus a GQA shape with 8 KV
 * heads at 8K), 20% budget (hh 0.1 + recent 0.1), LLaVA-1.5-like layouts (576-token images).
 * The baseline is the same layer's causal attention prefill in onnxruntime-node, measured in the
 * same run. Every case runs in its own process (peak memory is a per-process high-water mark).
 * Writes bench/results/kv.json and bench/results/kv.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DEFAULT_POLICY, POLICY_NAMES, type PolicyName } from '../sidecar/src/kv/index.js';
import type { PolicyCase, PolicyResult, PrefillCase } from './kvCase.js';

const HEAD_DIM = 128;
const HEADS = 32;
const GQA_KV_HEADS = 8;
const BUDGET = { hhRatio: 0.1, recentRatio: 0.1 };
const TARGET_SHARE = 0.02;

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const lengths = (argValue('--lengths') ?? '2048,8192,32768').split(',').map(Number);
const gqaLength = lengths.includes(8192) ? 8192 : lengths[0];
const root = join(__dirname, '..');

function runCase<T>(c: PolicyCase | PrefillCase): T {
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(__dirname, 'kvCase.ts'), JSON.stringify(c)], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}

interface Row extends PolicyResult {
  shape: string;
  heads: number;
  queryHeads: number;
  length: number;
  policy: PolicyName;
  matcher: 'js' | 'ort';
  shareOfPrefill: number | null;
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const fmt = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(0));

function main(): void {
  const prefill = new Map<number, number>();
  for (const length of lengths) {
    process.stderr.write(`prefill L=${length} ...\n`);
    prefill.set(length, runCase<{ ms: number }>({ kind: 'prefill', heads: HEADS, headDim: HEAD_DIM, length }).ms);
  }
  const shapes = [
    ...lengths.map((length) => ({ shape: `MHA ${HEADS}x${HEAD_DIM}`, heads: HEADS, queryHeads: HEADS, length })),
    { shape: `GQA ${HEADS}q/${GQA_KV_HEADS}kv x${HEAD_DIM}`, heads: GQA_KV_HEADS, queryHeads: HEADS, length: gqaLength },
  ];
  const rows: Row[] = [];
  const measure = (shape: (typeof shapes)[number], policy: PolicyName, matcher: 'js' | 'ort') => {
    process.stderr.write(`${shape.shape} L=${shape.length} ${policy} (${matcher}) ...\n`);
    const result = runCase<PolicyResult>({ kind: 'policy', policy, matcher, headDim: HEAD_DIM, ...shape, ...BUDGET });
    const base = prefill.get(shape.length);
    rows.push({ ...shape, policy, matcher, ...result, shareOfPrefill: base ? result.ms / base : null });
  };
  for (const shape of shapes) for (const policy of POLICY_NAMES) measure(shape, policy, 'ort');
  // The exact JavaScript matcher (reference mode's, and the fallback) on the target shape, for comparison.
  const target = shapes.find((s) => s.heads === HEADS && s.length === 8192) ?? shapes[0];
  measure(target, DEFAULT_POLICY, 'js');

  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, onnxruntime: ort.env.versions.common };
  const results = { date: new Date().toISOString(), machine, budget: BUDGET, headDim: HEAD_DIM, prefillMs: Object.fromEntries(prefill), rows };
  const dir = process.env.BENCH_RESULTS_DIR ?? join(root, 'bench/results'); // npm run bench --quick writes elsewhere
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'kv.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(dir, 'kv.md'), report(results.date, machine, prefill, rows, target));
  process.stdout.write(report(results.date, machine, prefill, rows, target));
}

function report(date: string, machine: Record<string, string | number>, prefill: Map<number, number>, rows: Row[], target: { length: number }): string {
  const lines: string[] = [];
  lines.push('# KV compression benchmark (one layer)', '');
  lines.push(`${date} · ${machine.cpu} · ${machine.cores} cores · ${machine.memoryGiB} GiB · Node ${machine.node} · onnxruntime-node ${machine.onnxruntime}`, '');
  lines.push('Budget 20% (hh_ratio 0.1 + recent_ratio 0.1), improved mode, LLaVA-1.5-like layout (576-token images), head_dim 128.');
  lines.push('Baseline: the same layer\'s causal attention prefill (32 query heads) in onnxruntime-node, CPU EP, 2 threads, plain ops in 256-query chunks, with the attention column sums LOOK-M needs.');
  lines.push('Merging policies match evicted to kept keys with the onnxruntime matcher unless marked `js`. "peak extra" is the growth of the process\'s RSS high-water mark during the compression.', '');
  lines.push('| L | prefill ms |', '|---|---|');
  for (const [length, ms] of prefill) lines.push(`| ${length} | ${fmt(ms)} |`);
  lines.push('');
  lines.push('| shape | L | policy | ms | % of prefill | kept/head | KV MiB before → after | peak extra MiB |', '|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const share = r.shareOfPrefill === null ? '–' : `${(100 * r.shareOfPrefill).toFixed(2)}%`;
    lines.push(`| ${r.shape} | ${r.length} | ${r.policy}${r.matcher === 'js' ? ' (js)' : ''} | ${fmt(r.ms)} | ${share} | ${r.keptPerHead} | ${mib(r.bytesBefore)} → ${mib(r.bytesAfter)} | ${mib(r.peakExtraBytes)} |`);
  }
  lines.push('', '## Growth with L (MHA, onnxruntime matcher)', '');
  const mha = rows.filter((r) => r.heads === HEADS && r.matcher === 'ort');
  const lengths = [...new Set(mha.map((r) => r.length))].sort((a, b) => a - b);
  const steps = lengths.slice(1).map((l, i) => `${lengths[i]}→${l}`);
  lines.push(`| ${['policy', ...lengths.map((l) => `ms @${l}`), ...steps.map((s) => `exponent ${s}`)].join(' | ')} |`);
  lines.push(`|${new Array(1 + lengths.length + steps.length).fill('---').join('|')}|`);
  for (const policy of POLICY_NAMES) {
    const t = lengths.map((l) => mha.find((r) => r.policy === policy && r.length === l)?.ms ?? NaN);
    const exponents = t.slice(1).map((ms, i) => (Math.log(ms / t[i]) / Math.log(lengths[i + 1] / lengths[i])).toFixed(2));
    lines.push(`| ${[policy, ...t.map(fmt), ...exponents].join(' | ')} |`);
  }
  const main = mha.find((r) => r.policy === DEFAULT_POLICY && r.length === target.length);
  if (main && main.shareOfPrefill !== null) {
    const met = main.shareOfPrefill < TARGET_SHARE;
    lines.push('', `Target: ${DEFAULT_POLICY} at L=${target.length} under ${100 * TARGET_SHARE}% of the layer's prefill: measured ${(100 * main.shareOfPrefill).toFixed(1)}% (${fmt(main.ms)} ms vs ${fmt(prefill.get(target.length)!)} ms) — ${met ? 'met' : 'NOT met'}.`);
  }
  return `${lines.join('\n')}\n`;
}

main();
