/** How KV figures read in chat: a footer per answer and a compact summary for /stats. Pure functions. */
import type { ChatResult, SessionStats, TurnStats } from '../../../sidecar/src/protocol/index.js';

export function kib(bytes: number): string {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** `part` as a whole percentage of `whole`; '–' when there is no whole. */
export function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(0)}%` : '–';
}

/** The KV figures of a turn (or of a cache view's latest one). */
export type KvFigures = Pick<TurnStats, 'kvBytes' | 'keptKvBytes' | 'fullKvBytes'>;

/**
 * The share of the full cache kept, like with like: the kept slots' bytes against the bytes a
 * full cache of every token seen would take (neither counts spare capacity, so it is at most
 * 100%): '40.0 KiB kept of 51.0 KiB (78%)'. Null when the turn did not report its kept bytes
 * (saved by an earlier version) or saw no token.
 */
export function keptOfFull(s: KvFigures): string | null {
  if (s.keptKvBytes === undefined || s.fullKvBytes <= 0) return null;
  return `${kib(s.keptKvBytes)} kept of ${kib(s.fullKvBytes)} (${percent(s.keptKvBytes, s.fullKvBytes)})`;
}

/**
 * A turn's KV figures as one phrase: the share kept, then the memory the cache holds allocated
 * (its spare room for the next tokens included; what budgets bound), which a short conversation's
 * headroom can make larger than the full cache's bytes, so it is never shown as a share of them.
 */
export function kvPhrase(s: KvFigures): string {
  const share = keptOfFull(s);
  return share ? `KV ${share} · ${kib(s.kvBytes)} allocated` : `KV ${kib(s.kvBytes)} allocated`;
}

/** How many images a turn encoded and reused, or nothing when it showed none (a text follow-up). */
function imagesNote(s: TurnStats): string {
  if (s.imagesEncoded + s.imagesReused === 0) return '';
  const plural = (n: number) => `${n} image${n === 1 ? '' : 's'}`;
  if (s.imagesReused === 0) return ` · ${plural(s.imagesEncoded)} encoded`;
  return ` · ${plural(s.imagesEncoded)} encoded, ${s.imagesReused} reused`;
}

/** Reading progress as a line: 'Reading… 1,024 / 2,700 tokens'. */
export function readingProgress(tokensRead: number, tokensTotal: number): string {
  const n = (value: number) => value.toLocaleString('en-US');
  return `Reading… ${n(tokensRead)} / ${n(tokensTotal)} tokens`;
}

/** What a stopped question says when it was stopped before its answer began (nothing of it is kept). */
export const STOPPED_WHILE_READING = 'Stopped while reading; nothing of this question was kept.';

export function turnFooter(result: ChatResult): string {
  const s = result.stats;
  const stopped = result.stopReason === 'cancelled' ? ' · stopped' : '';
  return `\n\n---\n*${kvPhrase(s)} · first token ${s.timeToFirstTokenMs.toFixed(0)} ms${imagesNote(s)}${stopped}*`;
}

/**
 * `/stats` as the narrow chat panel shows it: one line per turn (the latest `maxTurns`); the full
 * per-layer picture and timings are in the KV cache view.
 */
export function statsSummary(stats: SessionStats, maxTurns = 8): string {
  const first = Math.max(0, stats.turns.length - maxTurns);
  const lines = stats.turns.slice(first).map((t, i) => {
    return `- **${first + i + 1}** · ${t.newTokens} new tokens · ${kvPhrase(t)} · ${t.timeToFirstTokenMs.toFixed(0)} ms to first token${imagesNote(t)}${t.rebuilt ? ' · rebuilt' : ''}`;
  });
  return [
    `**Session** \`${stats.sessionId.slice(0, 8)}\` · policy \`${stats.settings.policy}\` (${stats.settings.mode}) · ${stats.cached ? 'cache resident' : 'cache evicted, rebuilt on the next turn'}`,
    '',
    ...(first > 0 ? [`*${first} earlier turns not shown*`, ''] : []),
    ...lines,
  ].join('\n');
}
