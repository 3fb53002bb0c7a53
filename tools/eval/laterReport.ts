/**
 * Output of the later-turn evaluation (tools/eval.ts --later-turns): the markdown table, and the
 * items as plain chat messages for peers outside the project's runtime (bench/kvpress_peer.py).
 */
import type { EvalItem } from './dataset.js';
import type { ConfigScore, FullAccuracy } from './run.js';

/**
 * A user turn's content as the session sends it: attached files in front, each fenced and named
 * (sidecar/src/session/conversation.ts `withFiles`; a peer must see the same text).
 */
function userContent(turn: EvalItem['turns'][number]): string {
  const files = turn.files.map((f) => `File ${f.name}:\n\`\`\`\n${f.text}\n\`\`\`\n`).join('\n');
  return files ? `${files}\n${turn.text}` : turn.text;
}

/** The items as JSON chat turns (text only: a peer that reads images is not part of this). */
export function exportItems(items: EvalItem[], about: { model: string; seed: number; maxNewTokens: number }): string {
  const withImages = items.find((item) => item.turns.some((turn) => turn.images.length > 0));
  if (withImages) throw new Error(`item ${withImages.id} has images: only text items can be exported (use a text-only model, e.g. --model .models/smollm2-135m-instruct)`);
  const exported = items.map((item) => ({
    id: item.id,
    kind: item.kind,
    fileTokens: item.fileTokens ?? null,
    turns: item.turns.map((turn) => ({ content: userContent(turn), expected: turn.expected, scored: turn.scored !== false })),
  }));
  return `${JSON.stringify({ ...about, items: exported }, null, 1)}\n`;
}

const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(0)}%`);
const ratio = (x: number | null) => (x === null ? '–' : x.toFixed(2));

/** The cold tier a configuration ran with (its session settings' `coldTier`, else off). */
function coldTierOf(score: ConfigScore): string {
  const { coldTier, ...rest } = score.session ?? {};
  // Other session settings of the configuration (e.g. recall settings compared) follow the tier.
  return `${typeof coldTier === 'string' ? coldTier : 'off'}${Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : ''}`;
}

export function laterTurnMarkdown(report: { date: string; model: string; items: number; seed: number; maxNewTokens: number; seconds: number; session: unknown; full: FullAccuracy; scores: ConfigScore[]; dropped?: string[]; partial?: boolean }): string {
  const kinds = Object.keys(report.full.byKind);
  return [
    `# Later-turn items: KV policies vs the full cache (${report.items} items, seed ${report.seed}, ${report.maxNewTokens} tokens per answer)${report.partial ? ' (partial: the run is still going or was stopped)' : ''}`,
    '',
    `${report.date} · ${report.model} · ${report.seconds.toFixed(0)} s${report.session ? ` · session settings ${JSON.stringify(report.session)}` : ''}`,
    '',
    `Full-cache exact match (the answer contains the expected value): ${pct(report.full.accuracy)} overall; by kind ${Object.entries(report.full.byKind).map(([k, v]) => `${k} ${pct(v)}`).join(' · ')}${Object.keys(report.full.byLength).length ? `; by file length (tokens) ${Object.entries(report.full.byLength).map(([k, v]) => `${k} ${pct(v)}`).join(' · ')}` : ''}.${report.dropped?.length ? ` Dropped before the other configurations ran (the full cache answered them wrong): ${report.dropped.length} of ${report.items} items (${report.dropped.join(', ')}); the table is on the other ${report.items - report.dropped.length}.` : ''}`,
    '',
    'Each configuration is teacher-forced on the full cache\'s turns. "identical": every step of the question turn agrees with the full cache\'s answer (right or wrong); "relative": items identical to a correct full-cache answer over the items the full cache got right, per kind. KV (hot): bytes the conversation holds after its last turn (allocated), and their share of a full cache of the same tokens; cold: the cold tier\'s bytes then (host memory, quantized), and hot + cold over the full cache; recall: milliseconds per item spent scoring and recalling cold spans.',
    '',
    `| policy | budget | cold tier | KV MB | KV share | cold MB | hot+cold share | recall ms | ${kinds.map((k) => `${k} identical`).join(' | ')} | ${kinds.map((k) => `${k} relative`).join(' | ')} | accuracy | could not run |`,
    `|---|---|---|---|---|---|---|---|${kinds.map(() => '---|').join('')}${kinds.map(() => '---|').join('')}---|---|`,
    ...report.scores.map(
      (s) =>
        `| ${s.policy} | ${s.budget * 100}% | ${coldTierOf(s)} | ${(s.kvBytes / 1e6).toFixed(1)} | ${pct(s.kvShare)} | ${(s.coldBytes / 1e6).toFixed(2)} | ${pct(s.hotColdShare)} | ${s.recallMs.toFixed(0)} | ${kinds.map((k) => pct(s.identicalByKind[k] ?? null)).join(' | ')} | ${kinds.map((k) => ratio(s.relativeByKind[k] ?? null)).join(' | ')} | ${pct(s.accuracy)} | ${s.failed ? `${s.failed}: ${s.error}` : ''} |`,
    ),
    '',
  ].join('\n');
}
