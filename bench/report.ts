/**
 * `npm run bench [-- --quick]`: runs the KV, runtime and turn benchmarks and the evaluation, then
 * writes bench/results/report.json, report.md and report.svg: every figure of the target table
 * as a ratio against a baseline measured in the same run, marked met, missed or not measured.
 * `--quick` (CI smoke test, well under a minute) runs bench:kv at 2K tokens and the quick
 * evaluation only, into bench/results/quick/ (never llama.cpp). `--report-only` rewrites the report
 * from the results already there. `--peer llamacpp` runs only the llama.cpp comparison
 * (bench/llamacpp.ts), then rewrites the report.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compressLayer } from '../sidecar/src/kv/index.js';
import { weightsBytes } from './modelFiles.js';
import { reportMarkdown, reportRows, reportSvg, type Inputs } from './reportTable.js';
import { syntheticLayer } from './shapes.js';

const root = join(__dirname, '..');
const quick = process.argv.includes('--quick');
/** `--report-only`: rewrite the report from the results already there, running nothing. */
const reportOnly = process.argv.includes('--report-only');
const peerAt = process.argv.indexOf('--peer');
/** `--peer llamacpp`: run the llama.cpp comparison alone, then rewrite the report. */
const peer = peerAt >= 0 ? process.argv[peerAt + 1] : undefined;
if (peer !== undefined && peer !== 'llamacpp') throw new Error(`--peer: unknown peer "${peer}" (llamacpp)`);
if (peer && quick) throw new Error('--peer llamacpp cannot run with --quick (it needs node-llama-cpp and the 2 GB benchmark checkpoint)');
const dir = join(root, 'bench/results', quick ? 'quick' : '');
/** Older turns.json files name no model folder: they were made on this one. */
const benchModel = join(root, 'bench/.models/qwen2-0.5b');

const llamacppStep = { name: 'bench:llamacpp', args: ['--import', 'tsx', 'bench/llamacpp.ts'] };
const steps = peer
  ? [llamacppStep]
  : quick
  ? [
      { name: 'bench:kv (2K tokens)', args: ['--import', 'tsx', 'bench/kv.ts', '--lengths', '2048'] },
      { name: 'eval (quick)', args: ['--import', 'tsx', 'tools/eval.ts', '--quick'] },
    ]
  : [
      { name: 'bench:kv', args: ['--import', 'tsx', 'bench/kv.ts'] },
      { name: 'bench:runtime', args: ['--expose-gc', '--import', 'tsx', 'bench/runtime.ts'] },
      { name: 'bench:turns', args: ['--import', 'tsx', 'bench/turns.ts'] },
      llamacppStep,
      { name: 'eval', args: ['--import', 'tsx', 'tools/eval.ts'] },
    ];

/** KV bytes after / before one compression of a LLaVA-like layer, LOOK-M improved mode. */
async function engineKv(ratio: number): Promise<number> {
  const layer = syntheticLayer({ heads: 8, queryHeads: 8, headDim: 64, length: 4096 });
  const before = layer.allocatedBytes;
  await compressLayer(layer, { policy: 'text_prior_pivot_merge', budget: { hhRatio: ratio / 2, recentRatio: ratio / 2 }, mode: 'improved', numQueryHeads: 8 });
  return layer.allocatedBytes / before;
}

const readJson = <T>(name: string): T | undefined => (existsSync(join(dir, name)) ? (JSON.parse(readFileSync(join(dir, name), 'utf8')) as T) : undefined);

async function main(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const started = Date.now();
  const failed: string[] = [];
  (reportOnly ? [] : steps).forEach((step, i) => {
    process.stderr.write(`[${i + 1}/${steps.length}] ${step.name} (${((Date.now() - started) / 1000).toFixed(0)} s so far) ...\n`);
    try {
      execFileSync(process.execPath, step.args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, BENCH_RESULTS_DIR: dir } });
    } catch {
      failed.push(step.name);
      process.stderr.write(`  ${step.name} failed; its rows are marked not measured\n`);
    }
  });
  const turns = readJson<Inputs['turns']>('turns.json');
  const inputs: Inputs = {
    quick,
    engine: { at20: await engineKv(0.2), at5: await engineKv(0.05) },
    kv: readJson('kv.json'),
    runtime: quick ? undefined : readJson('runtime.json'),
    // Runs before turns.json recorded its weights' bytes: read them from the checkpoint, if still there.
    turns: quick || !turns ? undefined : { ...turns, weightsBytes: turns.weightsBytes ?? weightsBytes(turns.modelDir ?? benchModel) },
    eval: readJson(quick ? 'eval-quick.json' : 'eval.json'),
    llamacpp: quick ? undefined : readJson('llamacpp.json'),
  };
  const rows = reportRows(inputs);
  const date = new Date().toISOString();
  const took = reportOnly ? 'report rewritten from the results in this folder' : `${((Date.now() - started) / 1000).toFixed(0)} s`;
  const header = `# Benchmark report${quick ? ' (--quick)' : ''}\n\n${date}, ${took}. Every figure is a ratio against a baseline measured in the same run.${failed.length ? ` Failed steps: ${failed.join(', ')}.` : ''}\n\n![measured as a share of its target](report.svg)`;
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify({ date, quick, failed, rows }, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), reportMarkdown(rows, header));
  writeFileSync(join(dir, 'report.svg'), reportSvg(rows, `LOOK-M benchmark report${quick ? ' (quick)' : ''}: measured / target`));
  const met = rows.filter((r) => r.met === true).length;
  const missed = rows.filter((r) => r.met === false).length;
  process.stdout.write(`${reportMarkdown(rows, '')}\n${met} met, ${missed} missed, ${rows.length - met - missed} not measured; written to ${dir}\n`);
}

void main();
