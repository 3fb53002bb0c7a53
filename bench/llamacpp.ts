/**
 * `npm run bench:llamacpp [-- --layers 24 --lengths 100,4096,8192 --rounds 2 --steps 8 --threads 2 --paired-rounds 8]`
 * (also `npm run bench -- --peer llamacpp`): this project's runtime next to llama.cpp on the same
 * weights, not part of `npm test`. The Qwen2-0.5B-shaped benchmark checkpoint
 * (tools/model/bench_model.py, `--layers` of them; or `--model DIR`) is converted to an F32 GGUF
 * (`llamacpp/toGguf.ts`) and llama.cpp runs through node-llama-cpp 3.21.1's prebuilt CPU build,
 * installed on first use into bench/llamacpp/peer/node_modules (`npm ci --ignore-scripts
 * --omit=optional`, about 80 MB; the project itself never installs it).
 *
 * Each side runs in its own child process, one after the other, in interleaved rounds (the order
 * rotates each round): ours (full cache, then LOOK-M 20% on the same prefill), llama.cpp with its
 * defaults (F16 KV, flash attention), llama.cpp with an F32 KV cache (flash attention off). The
 * first round checks that ours and llama.cpp F32 give the same next-token log-probabilities after a
 * short prompt (within 1e-3 over the whole vocabulary) and the same greedy tokens. Figures: prefill
 * and decode tokens/s per length, RSS high-water mark of the whole process and of each turn (reset
 * before it), load time from spawn to ready (a side's weight files read just before it, so each side
 * loads from the page cache); medians over rounds, ours / llama.cpp.
 *
 * Then the paired decode (`llamacpp/paired.ts`, `--paired-rounds`, 0 for none): every side loaded
 * at once, taking turns at bursts of `--steps` decode steps on the same prefilled length, full
 * cache and then ours on LOOK-M 20%; each round's ratio from its own bursts, the median over rounds.
 * The separate processes' decode rates drift with the machine by up to 25% between rounds; the
 * paired ones share its phase, so the report reads its decode figures from them. Writes
 * bench/results/llamacpp.{json,md} (`--name` changes the file name).
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { CHECK_IDS } from './llamacpp/measure.js';
import { pairedDecode, type PairedBurst } from './llamacpp/paired.js';
import type { PackedWeightsEvent } from '../sidecar/src/runtime/packedWeights.js';
import { convertToGguf } from './llamacpp/toGguf.js';
import { compressionShare, logProbDifference, pairedRatios, ratios, sideMedians, type PairedRatio, type PairedRatios, type Ratios, type SideMedians, type SideRun, type TurnRecord } from './llamacpp/summary.js';

const root = join(__dirname, '..');
const peerDir = join(__dirname, 'llamacpp/peer');
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    layers: { type: 'string', default: '24' },
    lengths: { type: 'string', default: '100,4096,8192' },
    rounds: { type: 'string', default: '2' },
    steps: { type: 'string', default: '8' },
    'paired-rounds': { type: 'string', default: '8' },
    'packed-weights': { type: 'string', default: 'on' },
    threads: { type: 'string', default: '2' },
    sides: { type: 'string', default: 'ours,llama-f16,llama-f32' },
    name: { type: 'string', default: 'llamacpp' },
    out: { type: 'string', default: process.env.BENCH_RESULTS_DIR ?? join(root, 'bench/results') },
  },
});
const TOLERANCE = 1e-3;
const SIDES = ['ours', 'llama-f16', 'llama-f32'] as const;
type Side = (typeof SIDES)[number];
const python = process.env.PYTHON ?? 'python3';

function positive(name: string, text: string): number[] {
  const list = text.split(',').map(Number);
  if (list.some((n) => !(Number.isInteger(n) && n >= 1))) throw new Error(`--${name} takes positive integers, got "${text}"`);
  return list;
}

/** node-llama-cpp's pinned CPU build, installed once from bench/llamacpp/peer's lock file. */
function ensurePeer(): void {
  if (existsSync(join(peerDir, 'node_modules/node-llama-cpp/package.json')) && existsSync(join(peerDir, 'node_modules/@node-llama-cpp/linux-x64/package.json'))) return;
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error(`the llama.cpp peer is pinned to node-llama-cpp's linux-x64 CPU build; this is ${process.platform}-${process.arch}`);
  process.stderr.write(`installing node-llama-cpp into ${peerDir} (npm ci --ignore-scripts --omit=optional) ...\n`);
  execFileSync('npm', ['ci', '--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund'], { cwd: peerDir, stdio: ['ignore', 'inherit', 'inherit'] });
}

/**
 * Reads a side's weight files just before its load, so that each load is timed from the page
 * cache: this VM pages out memory unused for about a minute (DAMON's `pageout` scheme, minimum age
 * 12 x 5 s, in /sys/kernel/mm/damon/admin), so files read once at the start were back on disk by a
 * later round (measured: ours 12.5 s in round 1, 2.0 s in round 2; 2.2 / 8.6 / 4.2 s over three
 * rounds with one warm-up at the start).
 */
function warmPageCache(files: string[]): void {
  const buffer = Buffer.alloc(16 << 20);
  for (const file of files) {
    if (!statSync(file).isFile()) continue;
    const fd = openSync(file, 'r');
    try {
      while (readSync(fd, buffer, 0, buffer.length, null) > 0);
    } finally {
      closeSync(fd);
    }
  }
}

/** The benchmark checkpoint (made by bench_model.py on first use) and its F32 GGUF next to it. */
function ensureModels(): { dir: string; gguf: string } {
  const layers = positive('layers', values.layers)[0];
  const dir = values.model ?? join(root, 'bench/.models', layers === 24 ? 'qwen2-0.5b' : `qwen2-0.5b-${layers}l`);
  if (!existsSync(join(dir, 'config.json'))) {
    if (values.model) throw new Error(`no checkpoint in ${dir}`);
    process.stderr.write(`generating the benchmark checkpoint (${layers} layers) in ${dir} ...\n`);
    execFileSync(python, [join(root, 'tools/model/bench_model.py'), 'make', dir, '--layers', String(layers)], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const gguf = `${dir.replace(/\/$/, '')}.f32.gguf`;
  const newest = Math.max(...['config.json', 'model.safetensors', 'model.safetensors.index.json'].filter((f) => existsSync(join(dir, f))).map((f) => statSync(join(dir, f)).mtimeMs));
  if (!existsSync(gguf) || statSync(gguf).mtimeMs < newest) {
    process.stderr.write(`converting ${dir} to ${gguf} ...\n`);
    convertToGguf(dir, `${gguf}.partial`);
    rmSync(gguf, { force: true });
    execFileSync('mv', [`${gguf}.partial`, gguf]);
  }
  return { dir, gguf };
}

interface ChildResult {
  run: SideRun;
  check?: { greedy: number[] };
  ready: Record<string, unknown>;
  loadAverage: [number, number];
}

/** Where ours keeps its packed weights between loads (`--packed-weights on`, as the sidecar does), or null. */
const packedDir = values['packed-weights'] === 'off' ? null : join(root, 'bench/.models/packed-weights');
if (!['on', 'off'].includes(values['packed-weights'])) throw new Error(`--packed-weights: on or off, not "${values['packed-weights']}"`);

/** Node's arguments for a side's process (`extra`: `--check FILE`, `--serve`, `--prepare`). */
function sideArgs(side: Side, models: { dir: string; gguf: string }, extra: string[]): string[] {
  const common = ['--lengths', values.lengths, '--steps', values.steps, '--threads', values.threads, ...extra];
  return side === 'ours'
    ? ['--expose-gc', '--import', 'tsx', join(__dirname, 'llamacpp/oursSide.ts'), '--model', models.dir, ...(packedDir ? ['--packed-weights', packedDir] : []), ...common]
    : ['--import', 'tsx', join(__dirname, 'llamacpp/llamaSide.ts'), '--model', models.gguf, '--kv', side === 'llama-f16' ? 'f16' : 'f32', ...common];
}

/** One side in its own process: its JSON lines, and the time from spawn to its `ready` line. */
function runSide(side: Side, round: number, models: { dir: string; gguf: string }, extra: string[]): Promise<ChildResult> {
  const args = sideArgs(side, models, extra);
  const before = loadavg()[0];
  const spawned = Date.now();
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${side} (round ${round}) exited with ${code}`));
      const records = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { event: string });
      const ready = records.find((r) => r.event === 'ready');
      if (!ready) return reject(new Error(`${side} printed no ready line`));
      const turns = records.filter((r) => r.event === 'turn') as unknown as TurnRecord[];
      const checked = records.find((r) => r.event === 'check') as { greedy: number[] } | undefined;
      resolve({
        run: { side, round, loadS: (Number(ready.at) - spawned) / 1000, loadPeakRssBytes: Number(ready.loadPeakRssBytes), turns },
        ...(checked ? { check: checked } : {}),
        ready,
        loadAverage: [before, loadavg()[0]],
      });
    });
  });
}

const MiB = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? '–' : `${(bytes / 2 ** 20).toFixed(0)}`);
const x = (v: number | null | undefined, digits = 2) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));

function markdown(results: Results): string {
  const { lengths, medians: m, ratios: rs } = results;
  const head = `| | ${lengths.map((L) => `${L} tokens`).join(' | ')} |\n|---|${lengths.map(() => '---|').join('')}`;
  const line = (label: string, f: (L: number) => string) => `| ${label} | ${lengths.map(f).join(' | ')} |`;
  const sides = Object.keys(m) as Side[];
  const absolute = [
    head,
    ...sides.map((s) => line(`prefill tokens/s, ${s}`, (L) => x(m[s]?.byLength[L]?.prefillTokensPerS, 1))),
    ...sides.map((s) => line(`decode tokens/s, ${s}, full cache`, (L) => x(m[s]?.byLength[L]?.decodeTokensPerS))),
    ...(m.ours ? [line('decode tokens/s, ours, LOOK-M 20%', (L) => x(m.ours!.byLength[L]?.lookmDecodeTokensPerS))] : []),
    ...sides.map((s) => line(`peak RSS during the turn (MiB), ${s}`, (L) => MiB(m[s]?.byLength[L]?.turnPeakRssBytes))),
  ];
  const ratioRows = (r: Ratios) => [
    line(`prefill tokens/s, ours / ${r.peer}`, (L) => x(r.prefill[L])),
    line(`decode tokens/s, full cache, ours / ${r.peer}, separate processes`, (L) => x(r.decodeFull[L])),
    line(`decode tokens/s, ours LOOK-M 20% / ${r.peer} full cache, separate processes`, (L) => x(r.decodeLookm[L])),
    line(`peak RSS during a turn, ours / ${r.peer}`, (L) => x(r.turnPeakRss[L])),
  ];
  const whole = sides.map((s) => `| ${s} | ${x(m[s]!.loadS, 1)} | ${MiB(m[s]!.loadPeakRssBytes)} | ${MiB(m[s]!.wholePeakRssBytes)} |`);
  // A decode step reads every weight once: at the shortest length (attention is small there) its
  // rate times the weights' bytes is the memory bandwidth each side gets out of the machine.
  const [shortest] = lengths;
  const streamed = sides.map((s) => `${s} ${x(((m[s]?.byLength[shortest]?.decodeTokensPerS ?? NaN) * results.weightsBytes) / 1e9, 1)} GB/s`);
  const share = results.compressionShare;
  const p = results.paired;
  const spread = (r: PairedRatio | undefined) => (r ? `**${x(r.median)}** (${x(r.min)}-${x(r.max)})` : '–');
  const pairedSection = p
    ? [
        `## Decode, paired: every side loaded at once, taking turns (${p.rounds} rounds of ${p.steps} steps a side per length)`,
        '',
        "Each round runs one burst of each side back to back (the order rotating, ${p.pauseMs} ms apart), so a round's sides share the machine's phase; a figure is the median over rounds of ours / the peer's tokens/s in the same round (range in brackets). The VM's drift between rounds, which moves the separate-process medians above by up to 25%, cancels out here: these are the decode ratios to read.".replace('${p.pauseMs}', String(p.pauseMs)),
        '',
        head,
        ...p.ratios.flatMap((r) => [
          line(`decode tokens/s, full cache, ours / ${r.peer}`, (L) => spread(r.decodeFull[L])),
          line(`decode tokens/s, ours LOOK-M 20% / ${r.peer} full cache`, (L) => spread(r.decodeLookm[L])),
        ]),
        '',
      ]
    : [];
  return [
    '# This project vs llama.cpp (CPU, same weights)',
    '',
    `${results.date} · ${results.machine}; load average ${results.loadAverage.map((v) => v.toFixed(1)).join(' → ')} over the run (other jobs share the 2 cores: read the ratios).`,
    '',
    `**Model**: ${results.model}. **llama.cpp**: node-llama-cpp ${results.peer.version} (its prebuilt CPU build), the same weights as an F32 GGUF (\`bench/llamacpp/toGguf.ts\`). ${results.threads} threads each, greedy, the same token ids; ${results.steps} timed decode steps per turn after one untimed; ${results.rounds} interleaved rounds, each side in its own process, medians. llama-f16 is llama.cpp's default (F16 KV cache, flash attention); llama-f32 an F32 KV cache with flash attention off.`,
    '',
    `**Command**: \`${results.command}\``,
    '',
    ...(Math.max(...results.loadAverage, ...results.runs.flatMap((r) => r.loadAverage)) > results.threads
      ? [`The load average exceeded the ${results.threads} thread(s) each side was given: llama.cpp's threads wait for each other at every graph node, so a descheduled thread stalls its steps (with more than one thread its decode can collapse); compare with a \`--threads 1\` run.`, '']
      : []),
    results.check
      ? `**Same outputs** (${CHECK_IDS.length}-token prompt, ours vs llama-f32): largest |Δ log-probability| over the ${results.check.vocabulary} tokens ${results.check.maxAbs.toExponential(2)} (tolerance ${TOLERANCE}): **${results.check.pass ? 'pass' : 'FAIL'}**; greedy tokens ${results.check.greedyIdentical ? 'identical' : 'DIFFERENT'} over ${results.check.oursGreedy.length} steps.`
      : '**Same outputs**: not checked in this run (the check compares ours with llama-f32: `--sides` must list both).',
    '',
    '## Ratios, ours / llama.cpp (tokens/s above 1: ours faster; RSS above 1: ours bigger)',
    '',
    head,
    ...rs.flatMap(ratioRows),
    '',
    '| whole process | ' + rs.map((r) => `ours / ${r.peer}`).join(' | ') + ' |',
    '|---|' + rs.map(() => '---|').join(''),
    `| peak RSS, load included | ${rs.map((r) => `**${x(r.wholePeakRss)}**`).join(' | ')} |`,
    `| load time, process start to ready | ${rs.map((r) => `**${x(r.load)}**`).join(' | ')} |`,
    '',
    ...pairedSection,
    `Compression of all layers (LOOK-M 20%, \`text_prior_pivot_merge\`) / the whole model's prefill of the same tokens: ${Object.entries(share).map(([L, v]) => `${L} tokens ${v.toFixed(3)}`).join(', ')} (the benchmark report's one-layer figure divides by one layer's attention-only prefill).`,
    '',
    '## Figures',
    '',
    ...absolute,
    '',
    '| side | load s (spawn to ready) | peak RSS after load (MiB) | peak RSS, whole process (MiB) |',
    '|---|---|---|---|',
    ...whole,
    '',
    results.packedWeights
      ? `Ours loads as a sidecar does after its first start: it maps the weights onnxruntime packed and saved in \`${relative(root, results.packedWeights.dir)}\` (\`PackedWeightsCache\`). The first load of this run ${results.packedWeights.events.some((e) => e.event === 'saved') ? 'packed and saved them' : 'found them there'} in ${x(results.packedWeights.firstLoadS, 1)} s (not in the medians; \`--packed-weights off\` packs at every load).`
      : 'Ours packs its weights at every load (`--packed-weights off`).',
    '',
    `Weights read per decode step (the F32 GGUF, ${(results.weightsBytes / 1e6).toFixed(0)} MB) times the decode rate at ${shortest} tokens: ${streamed.join(', ')}.`,
    '',
    `Raw per-round records: \`${results.name}.json\`.`,
    '',
  ].join('\n');
}

const PAUSE_MS = 200;

/** Every side loaded at once, taking turns at decode bursts (`llamacpp/paired.ts`); ratios against each peer. */
async function runPaired(sides: Side[], models: { dir: string; gguf: string }, lengths: number[], rounds: number): Promise<NonNullable<Results['paired']>> {
  const steps = Number(values.steps);
  const commands = sides.map((side) => ({ name: side, command: process.execPath, args: sideArgs(side, models, ['--serve']), cwd: root }));
  const bursts = await pairedDecode(commands, { lengths, rounds, steps, pauseMs: PAUSE_MS }, (line) => process.stderr.write(`${line} ...\n`));
  const peers = sides.filter((s) => s !== 'ours');
  return { rounds, steps, pauseMs: PAUSE_MS, ratios: peers.map((p) => pairedRatios(bursts, p)), bursts };
}

interface Results {
  name: string;
  date: string;
  machine: string;
  command: string;
  model: string;
  peer: { package: string; version: string };
  threads: number;
  steps: number;
  rounds: number;
  lengths: number[];
  loadAverage: number[];
  check: { maxAbs: number; at: number; vocabulary: number; pass: boolean; oursGreedy: number[]; llamaGreedy: number[]; greedyIdentical: boolean } | null;
  medians: Partial<Record<Side, SideMedians>>;
  ratios: Ratios[];
  compressionShare: Record<number, number>;
  /** The paired decode (`llamacpp/paired.ts`): every side loaded at once, bursts in turn; null with --paired-rounds 0. */
  paired: { rounds: number; steps: number; pauseMs: number; ratios: PairedRatios[]; bursts: PairedBurst[] } | null;
  /** Ours keeps its packed weights between loads (`--packed-weights on`): the first load, which packed and saved them or found them, untimed in the medians. */
  packedWeights: { dir: string; firstLoadS: number; events: PackedWeightsEvent[] } | null;
  /** Bytes of the F32 GGUF: every weight a decode step reads (projections and the tied LM head). */
  weightsBytes: number;
  runs: (SideRun & { loadAverage: [number, number] })[];
}

async function main(): Promise<void> {
  const lengths = positive('lengths', values.lengths);
  const rounds = positive('rounds', values.rounds)[0];
  positive('steps', values.steps);
  const threads = positive('threads', values.threads)[0];
  const pairedRounds = Number(values['paired-rounds']);
  if (!(Number.isInteger(pairedRounds) && pairedRounds >= 0)) throw new Error(`--paired-rounds takes a count (0: none), got "${values['paired-rounds']}"`);
  const sides = values.sides.split(',') as Side[];
  for (const s of sides) if (!SIDES.includes(s)) throw new Error(`--sides: unknown side "${s}" (${SIDES.join(', ')})`);
  ensurePeer();
  const models = ensureModels();
  // The first load with a packed-weights folder packs and saves its entry; the timed loads map it (as a sidecar's later starts do).
  let packed: Results['packedWeights'] = null;
  if (packedDir && sides.includes('ours')) {
    process.stderr.write(`ours: a first load, to pack and save the weights in ${packedDir} (or find them there) ...\n`);
    const first = await runSide('ours', 0, models, ['--prepare']);
    packed = { dir: packedDir, firstLoadS: first.run.loadS, events: first.ready.packedWeights as PackedWeightsEvent[] };
  }
  // The entries ours maps (the first load's), not the folder's others (other models, other formats).
  const entries = (packed?.events ?? []).flatMap((e) => ('entry' in e && existsSync(e.entry) ? readdirSync(e.entry).map((f) => join(e.entry, f)) : []));
  const filesOf = (side: Side) => (side === 'ours' ? [...readdirSync(models.dir).map((f) => join(models.dir, f)), ...entries] : [models.gguf]);
  const config = JSON.parse(readFileSync(join(models.dir, 'config.json'), 'utf8')) as { text_config?: { num_hidden_layers?: number; hidden_size?: number } };
  const checkFiles = { ours: join(root, `bench/.models/check-ours-${process.pid}.bin`), llama: join(root, `bench/.models/check-llama-${process.pid}.bin`) };
  const loadStart = loadavg()[0];
  const runs: (SideRun & { loadAverage: [number, number] })[] = [];
  const greedy: Partial<Record<'ours' | 'llama', number[]>> = {};
  for (let round = 1; round <= rounds; round++) {
    const order = sides.map((_, i) => sides[(i + round - 1) % sides.length]);
    for (const side of order) {
      const check = round === 1 && (side === 'ours' || side === 'llama-f32') ? checkFiles[side === 'ours' ? 'ours' : 'llama'] : undefined;
      process.stderr.write(`round ${round}/${rounds}: ${side} (load average ${loadavg()[0].toFixed(1)}) ...\n`);
      warmPageCache(filesOf(side));
      const result = await runSide(side, round, models, check ? ['--check', check] : []);
      runs.push({ ...result.run, loadAverage: result.loadAverage });
      if (result.check) greedy[side === 'ours' ? 'ours' : 'llama'] = result.check.greedy;
    }
  }
  let check: Results['check'] = null;
  if (existsSync(checkFiles.ours) && existsSync(checkFiles.llama)) {
    const read = (f: string) => new Float64Array(new Uint8Array(readFileSync(f)).buffer);
    const [a, b] = [read(checkFiles.ours), read(checkFiles.llama)];
    const diff = logProbDifference(a, b);
    const [oursGreedy, llamaGreedy] = [greedy.ours ?? [], greedy.llama ?? []];
    check = { ...diff, vocabulary: a.length, pass: diff.maxAbs <= TOLERANCE, oursGreedy, llamaGreedy, greedyIdentical: oursGreedy.length > 0 && oursGreedy.join() === llamaGreedy.join() };
    for (const f of Object.values(checkFiles)) rmSync(f, { force: true });
  }
  const paired = pairedRounds > 0 && sides.includes('ours') && sides.length > 1 ? await runPaired(sides, models, lengths, pairedRounds) : null;
  const medians: Results['medians'] = {};
  for (const side of sides) medians[side] = sideMedians(runs.filter((r) => r.side === side));
  const peerVersion = (JSON.parse(readFileSync(join(peerDir, 'node_modules/node-llama-cpp/package.json'), 'utf8')) as { version: string }).version;
  const layers = config.text_config?.num_hidden_layers ?? '?';
  const results: Results = {
    name: values.name,
    date: new Date().toISOString(),
    machine: `${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, Node ${process.version}`,
    command: `npm run bench:llamacpp -- ${process.argv.slice(2).join(' ')}`.trim(),
    model: `random Qwen2-0.5B-shaped text model in LLaVA (tools/model/bench_model.py), ${layers} decoder layers, hidden ${config.text_config?.hidden_size ?? '?'}, F32`,
    peer: { package: 'node-llama-cpp', version: peerVersion },
    threads,
    steps: Number(values.steps),
    rounds,
    lengths,
    loadAverage: [loadStart, loadavg()[0]],
    check,
    medians,
    ratios: medians.ours ? (['llama-f16', 'llama-f32'] as const).filter((p) => medians[p]).map((p) => ratios(medians.ours!, medians[p]!, p)) : [],
    compressionShare: medians.ours ? compressionShare(medians.ours) : {},
    paired,
    packedWeights: packed,
    weightsBytes: statSync(models.gguf).size,
    runs,
  };
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, `${values.name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  const md = markdown(results);
  writeFileSync(join(values.out, `${values.name}.md`), md);
  process.stdout.write(md);
  if (check && !check.pass) {
    process.stderr.write(`the log-probability check failed: largest difference ${check.maxAbs} at token ${check.at}\n`);
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
