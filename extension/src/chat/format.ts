/** How KV figures read in chat: a footer per answer and a table for /stats. Pure functions. */
import type { ChatResult, SessionStats } from '../../../sidecar/src/protocol/index.js';

export function kib(bytes: number): string {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** `part` as a whole percentage of `whole`; '–' when there is no whole. */
export function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(0)}%` : '–';
}

export function turnFooter(result: ChatResult): string {
  const s = result.stats;
  const share = s.fullKvBytes > 0 ? ` (${percent(s.kvBytes, s.fullKvBytes)})` : '';
  const stopped = result.stopReason === 'cancelled' ? ' · stopped' : '';
  return `\n\n---\n*KV ${kib(s.kvBytes)} kept of ${kib(s.fullKvBytes)}${share} · first token ${s.timeToFirstTokenMs.toFixed(0)} ms · ${s.imagesEncoded} images encoded, ${s.imagesReused} reused${stopped}*`;
}

export function statsTable(stats: SessionStats): string {
  const rows = stats.turns.map(
    (t, i) => `| ${i + 1} | ${t.newTokens} | ${t.tokensSeen} | ${t.keptSlots[0] ?? 0} | ${kib(t.kvBytes)} / ${kib(t.fullKvBytes)} | ${t.timeToFirstTokenMs.toFixed(0)} | ${t.imagesEncoded} / ${t.imagesReused} |`,
  );
  return [
    `**Session** \`${stats.sessionId.slice(0, 8)}\` · policy \`${stats.settings.policy}\` (${stats.settings.mode}) · ${stats.cached ? 'cache resident' : 'cache evicted, rebuilt on the next turn'}`,
    '',
    '| turn | new tokens | tokens seen | kept slots (layer 0) | KV kept / full | first token ms | images encoded / reused |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
