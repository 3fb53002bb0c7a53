/**
 * `npm run bench:turns [-- --model mha|qwen2-0.5b]`: what "look once" buys in a real sidecar, on a
 * random benchmark checkpoint (default: an MHA LLaVA-1.5-like one scaled to fit; generated into
 * bench/.models/ on first use by tools/model/bench_model.py, needs Python). A
 * conversation opens with 4 images and a long file, then asks 5 follow-ups; every figure is a
 * ratio against a baseline measured in the same run:
 * - follow-up time to first token vs a cold start (a fresh session given the same content and
 *   the follow-up in one turn, i.e. a re-prefill of everything);
 * - KV bytes of the session at 20% (LOOK-M, improved) vs the same conversation with the full cache;
 * - decode ms/token at 20% vs full.
 * Writes bench/results/turns.json and bench/results/turns.md.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { connectSidecar, launchSidecar } from '../sidecar/src/client/launch.js';
import { Methods, type ChatResult, type SessionChatParams } from '../sidecar/src/protocol/index.js';
import { weightsBytes } from './modelFiles.js';

const root = join(__dirname, '..');
/** `--model mha` (default: the "realistic random model, MHA, LLaVA-like shape, scaled to fit") or `qwen2-0.5b` (GQA). */
const MODELS = {
  mha: { dir: 'llama-mha', make: 'make-mha', description: 'random LLaVA, MHA Llama text model (LLaVA-1.5-like, scaled: 12 layers, 16 heads x 64, 1024 wide; F32), SigLIP-tiny vision (16 tokens per image)' },
  'qwen2-0.5b': { dir: 'qwen2-0.5b', make: 'make', description: 'random LLaVA, Qwen2-0.5B-shaped text model (GQA 14/2, F32), SigLIP-tiny vision (16 tokens per image)' },
} as const;
const modelArg = process.argv.includes('--model') ? process.argv[process.argv.indexOf('--model') + 1] : 'mha';
if (!(modelArg in MODELS)) throw new Error(`--model must be one of ${Object.keys(MODELS).join(', ')}`);
const benchModel = MODELS[modelArg as keyof typeof MODELS];
const modelDir = join(root, 'bench/.models', benchModel.dir);
const FOLLOW_UPS = ['Which image shows the red square?', 'What does parse_config return?', 'Where is the retry limit set?', 'Compare the second and third images.', 'Summarise the file in one line.'];

/** A long, deterministic source file: the "workspace file" of the conversation. */
function longFile(lines: number): string {
  return Array.from({ length: lines }, (_, i) => `def handler_${i}(request):\n    return respond(request, code=${(i * 7919) % 1000}, retries=${i % 5})`).join('\n');
}

async function images(): Promise<string[]> {
  const colours = ['#d00000', '#0050d0', '#10a020', '#e0c000'];
  return Promise.all(colours.map(async (c, i) => (await sharp({ create: { width: 48 + 8 * i, height: 40, channels: 3, background: c } }).png().toBuffer()).toString('base64')));
}

async function main(): Promise<void> {
  if (!existsSync(join(modelDir, 'config.json'))) {
    process.stderr.write(`generating the benchmark checkpoint in ${modelDir} ...\n`);
    execFileSync(process.env.PYTHON ?? 'python3', [join(root, 'tools/model/bench_model.py'), benchModel.make, modelDir], { stdio: 'inherit' });
  }
  const sidecar = await launchSidecar(join(root, 'sidecar/src/main.ts'), ['--threads', String(Math.max(1, cpus().length))], { nodeArgs: ['--import', 'tsx'], cwd: root });
  try {
    const { connection } = await connectSidecar(sidecar.port, sidecar.token);
    await connection.sendRequest(Methods.initialize, { capabilities: {} });
    await connection.sendRequest(Methods.modelLoad, { path: modelDir });
    const pictures = (await images()).map((data) => ({ data }));
    const file = { name: 'handlers.py', text: longFile(120) };
    const opening: Omit<SessionChatParams, 'sessionId'> = { text: 'Here are four images and a file. What do you see?', images: pictures, files: [file] };
    const settings = (policy: 'full' | 'text_prior_pivot_merge') => ({ policy, maxNewTokens: 16, budget: { hhRatio: 0.1, recentRatio: 0.1 } });

    const run = async (policy: 'full' | 'text_prior_pivot_merge') => {
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: settings(policy) });
      const turns: ChatResult[] = [await connection.sendRequest(Methods.sessionChat, { sessionId, ...opening })];
      for (const text of FOLLOW_UPS) {
        process.stderr.write(`${policy}: ${text}\n`);
        turns.push(await connection.sendRequest(Methods.sessionChat, { sessionId, text }));
      }
      return turns;
    };
    const lookm = await run('text_prior_pivot_merge');
    const full = await run('full');
    const cold: number[] = [];
    for (const text of FOLLOW_UPS) {
      process.stderr.write(`cold: ${text}\n`);
      const { sessionId } = await connection.sendRequest(Methods.sessionCreate, { settings: settings('text_prior_pivot_merge') });
      const result = await connection.sendRequest(Methods.sessionChat, { sessionId, ...opening, text: `${opening.text}\n${text}` });
      cold.push(result.stats.timeToFirstTokenMs);
      await connection.sendRequest(Methods.sessionDelete, { sessionId });
    }
    const followUps = lookm.slice(1);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const ttft = mean(followUps.map((t) => t.stats.timeToFirstTokenMs));
    const coldTtft = mean(cold);
    const decode = (turns: ChatResult[]) => mean(turns.map((t) => t.stats.decodeMs / Math.max(1, t.stats.generatedTokens)));
    const last = (turns: ChatResult[]) => turns[turns.length - 1].stats;
    const results = {
      date: new Date().toISOString(),
      machine: `${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, Node ${process.version}`,
      model: benchModel.description,
      modelDir,
      weightsBytes: weightsBytes(modelDir),
      openingTokens: lookm[0].stats.newTokens,
      followUpTtftMs: ttft,
      coldTtftMs: coldTtft,
      kvBytes: { lookm: last(lookm).kvBytes, full: last(full).kvBytes },
      decodeMsPerToken: { lookm: decode(lookm), full: decode(full) },
      imagesEncoded: lookm.map((t) => t.stats.imagesEncoded),
      turns: { lookm: lookm.map((t) => t.stats), full: full.map((t) => t.stats) },
    };
    const dir = process.env.BENCH_RESULTS_DIR ?? join(root, 'bench/results'); // npm run bench --quick writes elsewhere
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'turns.json'), `${JSON.stringify(results, null, 2)}\n`);
    const ratio = (a: number, b: number) => (a / b).toFixed(3);
    const md = [
      '# Turns benchmark (real sidecar)',
      '',
      `${results.date} · ${results.machine} · ${results.model}`,
      '',
      `Opening turn: 4 images + a 120-function file + a question = ${results.openingTokens} tokens; then ${FOLLOW_UPS.length} follow-ups; 16 new tokens per answer; LOOK-M = text_prior_pivot_merge, improved mode, 10% + 10% of the tokens seen.`,
      '',
      '| figure | LOOK-M session | baseline (same run) | ratio | goal |',
      '|---|---|---|---|---|',
      `| follow-up time to first token, ms (mean of ${FOLLOW_UPS.length}) | ${ttft.toFixed(0)} | ${coldTtft.toFixed(0)} (cold: everything re-prefilled) | ${ratio(ttft, coldTtft)} | <= 0.10 |`,
      `| KV bytes after the last turn | ${results.kvBytes.lookm} | ${results.kvBytes.full} (full cache) | ${ratio(results.kvBytes.lookm, results.kvBytes.full)} | ~0.20 |`,
      `| decode ms/token (mean over turns) | ${results.decodeMsPerToken.lookm.toFixed(1)} | ${results.decodeMsPerToken.full.toFixed(1)} (full cache) | ${ratio(results.decodeMsPerToken.lookm, results.decodeMsPerToken.full)} | < 1 |`,
      `| images encoded per turn | ${results.imagesEncoded.join(', ')} | | | 4, then 0 |`,
      '',
    ].join('\n');
    writeFileSync(join(dir, 'turns.md'), md);
    process.stdout.write(md);
  } finally {
    sidecar.process.kill();
  }
}

void main();
