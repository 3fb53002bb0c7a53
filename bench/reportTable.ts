/**
 * The benchmark report's table (pure): every figure of issue 9's list as a ratio measured in one
 * run, its target, and met / missed / not measured, from the JSON the benchmarks write.
 */
export interface KvRow {
  policy: string;
  matcher: string;
  length: number;
  heads: number;
  queryHeads: number;
  shareOfPrefill: number | null;
}
export interface KvResults {
  rows: KvRow[];
}
export interface TurnsResults {
  followUpTtftMs: number;
  coldTtftMs: number;
  kvBytes: { lookm: number; full: number };
  decodeMsPerToken: { lookm: number; full: number };
  model?: string;
  modelDir?: string;
  weightsBytes?: number;
}
export interface RuntimeResults {
  runtime: { decode_tokens_per_s: number; long: { peak_rss_growth_bytes: number; kv_bytes: number; prompt: number } };
  transformers: { decode_tokens_per_s: number };
}
export interface EvalScore {
  policy: string;
  mode: string;
  budget: number;
  accuracy: number;
  /** Absent in results written before it was recorded. */
  accuracyByKind?: Record<string, number>;
  answersIdentical: number;
  meanKl: number;
  failed: number;
}
export interface EvalResults {
  model: string;
  full: { accuracy: number };
  scores: EvalScore[];
}
/** bench/results/llamacpp.json, as far as the report reads it (`bench/llamacpp.ts`). */
export interface LlamacppResults {
  model: string;
  lengths: number[];
  check: { maxAbs: number; greedyIdentical: boolean } | null;
  ratios: { peer: string; prefill: Record<number, number>; decodeFull: Record<number, number>; decodeLookm: Record<number, number>; turnPeakRss: Record<number, number | null>; wholePeakRss: number; load: number }[];
  compressionShare: Record<number, number>;
  /** Decode rates taken in turns with every side loaded (`bench/llamacpp/paired.ts`): the decode figures of record when present. */
  paired?: { rounds: number; ratios: { peer: string; decodeFull: Record<number, PairedFigure>; decodeLookm: Record<number, PairedFigure> }[] } | null;
}
interface PairedFigure {
  median: number;
  min: number;
  max: number;
}
export interface EngineKv {
  /** KV bytes after / before one compression, improved mode, LOOK-M default policy. */
  at20: number;
  at5: number;
}

export interface Inputs {
  quick: boolean;
  engine: EngineKv;
  kv?: KvResults;
  turns?: TurnsResults;
  runtime?: RuntimeResults;
  eval?: EvalResults;
  llamacpp?: LlamacppResults;
}

export interface Row {
  figure: string;
  measured: string;
  target: string;
  /** null: not measured in this run (the note says why). */
  met: boolean | null;
  /** Measured as a share of the target, >= 1 when met (for the chart). */
  score: number | null;
  note: string;
}

const LOOKM = 'text_prior_pivot_merge';
const fmt = (x: number, digits = 3) => x.toFixed(digits);

function atMost(figure: string, value: number, target: number, note = ''): Row {
  return { figure, measured: fmt(value), target: `<= ${target}`, met: value <= target, score: value > 0 ? target / value : Infinity, note };
}
function atLeast(figure: string, value: number, target: number, note = ''): Row {
  return { figure, measured: fmt(value), target: `>= ${target}`, met: value >= target, score: value / target, note };
}
function missing(figure: string, target: string, note: string): Row {
  return { figure, measured: '–', target, met: null, score: null, note };
}

export function reportRows(inputs: Inputs): Row[] {
  const rows: Row[] = [
    atMost('KV bytes at nominal 20%, improved mode / full', inputs.engine.at20, 0.2, 'one layer, 8 heads x 64, 4096 tokens with two 576-token images'),
    atMost('KV bytes at nominal 5%, improved mode / full', inputs.engine.at5, 0.05, 'same layer'),
  ];

  const t = inputs.turns;
  if (t) {
    const speedup = t.decodeMsPerToken.full / t.decodeMsPerToken.lookm;
    rows.push(atLeast('decode speed at 20% / full (ms per token, long context)', speedup, 1.5, `bench:turns, ${t.model ?? 'Qwen2-0.5B-shaped random model'}`));
    if (t.weightsBytes) {
      const byteBound = (t.weightsBytes + t.kvBytes.full) / (t.weightsBytes + t.kvBytes.lookm);
      rows.push(atLeast('decode speed-up / byte-bound speed-up', speedup / byteBound, 0.9, `byte-bound ratio (weights + full KV) / (weights + kept KV) = ${fmt(byteBound)}`));
    }
    rows.push(atMost('follow-up time to first token / cold re-prefill (4 images + file)', t.followUpTtftMs / t.coldTtftMs, 0.1, 'bench:turns'));
  } else {
    for (const figure of ['decode speed at 20% / full (ms per token, long context)', 'follow-up time to first token / cold re-prefill (4 images + file)']) {
      rows.push(missing(figure, figure.startsWith('decode') ? '>= 1.5' : '<= 0.1', inputs.quick ? 'not run with --quick (needs the 2 GB benchmark checkpoint, made with Python)' : 'bench:turns did not run'));
    }
  }

  const measured = inputs.kv?.rows.filter((r) => r.policy === LOOKM && r.matcher === 'ort' && r.heads === r.queryHeads && r.shareOfPrefill !== null) ?? [];
  const at8k = measured.find((r) => r.length === 8192);
  const others = measured.map((r) => `${r.length} tokens: ${fmt(r.shareOfPrefill!)}`).join(', ');
  if (at8k) rows.push(atMost('compression time / prefill time at 8K tokens', at8k.shareOfPrefill!, 0.02, `bench:kv, one 32-head layer, ORT matcher (${others})`));
  else rows.push(missing('compression time / prefill time at 8K tokens', '<= 0.02', measured.length ? `8K not measured${inputs.quick ? ' (--quick)' : ''}; ${others}` : 'bench:kv did not run'));

  const r = inputs.runtime;
  if (r) {
    rows.push(atMost(`peak memory growth during ${r.runtime.long.prompt}-token prefill / its KV size`, r.runtime.long.peak_rss_growth_bytes / r.runtime.long.kv_bytes, 1.5, 'bench:runtime, RSS high-water mark'));
    rows.push({ figure: 'decode tokens/s, ours / transformers (PyTorch CPU), full cache, same model', measured: fmt(r.runtime.decode_tokens_per_s / r.transformers.decode_tokens_per_s), target: 'peer', met: null, score: null, note: 'reported, no target' });
  } else rows.push(missing('peak memory during 8K prefill / size of the 8K KV', '<= 1.5', inputs.quick ? 'not run with --quick (needs Python and the benchmark checkpoint)' : 'bench:runtime did not run'));

  rows.push(...llamacppRows(inputs));

  const e = inputs.eval;
  const score = (policy: string, budget: number) => e?.scores.find((s) => s.policy === policy && s.mode === 'improved' && s.budget === budget && s.failed === 0);
  for (const [budget, target] of [[0.2, 0.98], [0.1, 0.95], [0.05, 0.9]] as const) {
    const s = score(LOOKM, budget);
    const figure = `accuracy at ${budget * 100}% / full, LOOK-M improved`;
    if (!e || !s) rows.push(missing(figure, `>= ${target}`, e ? `budget ${budget} not in this run${inputs.quick ? ' (--quick)' : ''}` : 'eval did not run'));
    else if (e.full.accuracy === 0) rows.push(missing(figure, `>= ${target}`, `not measurable: the full cache answers nothing correctly with ${e.model} (answers identical to full: ${fmt(s.answersIdentical, 2)})`));
    else {
      const byKind = Object.entries(s.accuracyByKind ?? {}).map(([kind, a]) => `${kind} ${fmt(a, 2)}`);
      rows.push(atLeast(figure, s.accuracy / e.full.accuracy, target, `answers identical to full: ${fmt(s.answersIdentical, 2)}${byKind.length ? `; by kind: ${byKind.join(', ')}` : ''}`));
    }
  }
  for (const budget of [0.1, 0.05]) {
    const lookm = score(LOOKM, budget);
    const rivals = ['h2o', 'snapkv'].map((p) => score(p, budget));
    const figure = `LOOK-M ahead of H2O and SnapKV at ${budget * 100}% (mean KL to full, lower is better)`;
    if (!lookm || rivals.some((x) => !x)) rows.push(missing(figure, 'ahead', e ? `budget ${budget} not in this run${inputs.quick ? ' (--quick)' : ''}` : 'eval did not run'));
    else {
      const best = Math.min(...rivals.map((x) => x!.meanKl));
      const random = e!.full.accuracy === 0 ? ' (random checkpoint: attention carries no information)' : '';
      rows.push({ figure, measured: `${fmt(lookm.meanKl)} vs ${rivals.map((x) => fmt(x!.meanKl)).join(' / ')}`, target: 'ahead', met: lookm.meanKl < best, score: lookm.meanKl > 0 ? best / lookm.meanKl : null, note: `eval${random}` });
    }
  }
  return rows;
}

/** Issue 20's targets against llama.cpp with its defaults (F16 KV cache), same weights, same run. */
function llamacppRows(inputs: Inputs): Row[] {
  const figures: [string, string][] = [
    ['decode tokens/s, full cache, ours / llama.cpp (F16 KV)', '>= 1.0'],
    ['decode tokens/s, LOOK-M 20% / llama.cpp full cache, at 8K tokens', '>= 1.3'],
    ['peak RSS during a turn, ours / llama.cpp', '<= 1.1'],
    ['peak RSS of the whole process, ours / llama.cpp', '<= 1.3'],
    ['load time (process start to ready), ours / llama.cpp', '<= 1.5'],
  ];
  const l = inputs.llamacpp;
  const r = l?.ratios.find((x) => x.peer === 'llama-f16');
  if (!l || !r) return figures.map(([figure, target]) => missing(figure, target, inputs.quick ? 'not run with --quick (needs node-llama-cpp and the benchmark checkpoint)' : 'bench:llamacpp did not run'));
  const lengths = l.lengths.filter((L) => r.decodeFull[L] !== undefined);
  const f32 = l.ratios.find((x) => x.peer === 'llama-f32');
  const list = (o: Record<number, number | null>) => lengths.map((L) => `${L}: ${o[L] === null || o[L] === undefined ? '–' : fmt(o[L], 2)}`).join(', ');
  const source = `bench:llamacpp, ${l.model}`;
  const rows: Row[] = [];
  if (l.check) rows.push({ ...atMost('next-token log-probabilities, largest absolute difference from llama.cpp (F32)', l.check.maxAbs, 1e-3, `greedy tokens ${l.check.greedyIdentical ? 'identical' : 'different'}; ${source}`), measured: l.check.maxAbs.toExponential(1) });
  rows.push({ figure: 'prefill tokens/s, ours / llama.cpp', measured: list(r.prefill), target: 'peer', met: null, score: null, note: 'reported, no target' });
  // The paired decode's medians when the run has them (bursts in turn share the machine's phase), else the separate processes'.
  const paired = l.paired?.ratios.find((x) => x.peer === 'llama-f16');
  const pairedF32 = l.paired?.ratios.find((x) => x.peer === 'llama-f32');
  const decode = (figure: 'decodeFull' | 'decodeLookm', L: number, peer = r, pairedPeer = paired): { value: number | undefined; note: string } => {
    const p = pairedPeer?.[figure][L];
    const separate = peer[figure][L];
    return p
      ? { value: p.median, note: `paired, median of ${l.paired!.rounds} rounds (${fmt(p.min, 2)}-${fmt(p.max, 2)}); separate processes: ${fmt(separate, 2)}` }
      : { value: separate, note: 'separate processes' };
  };
  for (const L of lengths) {
    const d = decode('decodeFull', L);
    const withF32 = f32 ? `; vs llama.cpp with F32 KV: ${fmt(decode('decodeFull', L, f32, pairedF32).value ?? NaN, 2)}` : '';
    rows.push(atLeast(`${figures[0][0]} at ${L} tokens`, d.value ?? NaN, 1.0, `${d.note}${withF32}`));
  }
  const at8k = decode('decodeLookm', 8192);
  if (at8k.value !== undefined && Number.isFinite(at8k.value)) rows.push(atLeast(figures[1][0], at8k.value, 1.3, `${at8k.note}; all lengths, separate processes: ${list(r.decodeLookm)}`));
  else rows.push(missing(figures[1][0], figures[1][1], `8K not in this run; ${list(r.decodeLookm)}`));
  const turns = lengths.map((L) => r.turnPeakRss[L]).filter((v): v is number => v !== null && v !== undefined);
  if (turns.length) rows.push(atMost(figures[2][0], Math.max(...turns), 1.1, `largest over lengths (${list(r.turnPeakRss)})`));
  else rows.push(missing(figures[2][0], figures[2][1], 'the RSS high-water mark could not be reset on this system'));
  rows.push(atMost(figures[3][0], r.wholePeakRss, 1.3, source));
  rows.push(atMost(figures[4][0], r.load, 1.5, source));
  const share = Object.entries(l.compressionShare).filter(([L]) => Number(L) >= 4096);
  if (share.length) rows.push({ figure: 'compression of all layers / whole-model prefill (LOOK-M 20%)', measured: share.map(([L, v]) => `${L}: ${fmt(v)}`).join(', '), target: 'peer', met: null, score: null, note: 'the whole-model counterpart of the one-layer figure above' });
  return rows;
}

export function reportMarkdown(rows: Row[], header: string): string {
  const mark = (r: Row) => (r.target === 'peer' ? 'reported' : r.met === null ? 'not measured' : r.met ? '**met**' : '**missed**');
  return [header, '', '| figure | measured | target | | note |', '|---|---|---|---|---|', ...rows.map((r) => `| ${r.figure} | ${r.measured} | ${r.target} | ${mark(r)} | ${r.note} |`), ''].join('\n');
}

/** A horizontal bar per figure: measured as a share of its target (1 = exactly on target). */
export function reportSvg(rows: Row[], title: string): string {
  const charted = rows.filter((r) => r.score !== null && Number.isFinite(r.score));
  const width = 900;
  const left = 430;
  const barHeight = 22;
  const top = 46;
  const height = top + charted.length * (barHeight + 10) + 40;
  const max = Math.max(2, ...charted.map((r) => r.score!));
  const x = (v: number) => left + ((width - left - 30) * Math.min(v, max)) / max;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const bars = charted.map((r, i) => {
    const y = top + i * (barHeight + 10);
    const colour = r.met ? '#2e9e5b' : '#d0453a';
    return `<text x="${left - 8}" y="${y + 15}" text-anchor="end" font-size="12">${esc(r.figure.length > 62 ? `${r.figure.slice(0, 60)}…` : r.figure)}</text><rect x="${left}" y="${y}" width="${(x(r.score!) - left).toFixed(1)}" height="${barHeight}" fill="${colour}"/><text x="${x(r.score!) + 4}" y="${y + 15}" font-size="11">${r.score!.toFixed(2)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="12" y="24" font-size="15" font-weight="bold">${esc(title)}</text>
<line x1="${x(1)}" y1="${top - 8}" x2="${x(1)}" y2="${height - 28}" stroke="#333" stroke-dasharray="4 3"/>
<text x="${x(1)}" y="${height - 12}" text-anchor="middle" font-size="11">target (1 = met exactly; right of it: met)</text>
${bars.join('\n')}
</svg>
`;
}
