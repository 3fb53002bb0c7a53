/**
 * The llama.cpp comparison's figures (pure): the JSON lines of each side's processes over the
 * rounds, reduced to medians per side and length, and this project's figures as ratios to
 * llama.cpp's (above 1: ours faster for tokens/s, ours bigger / slower for RSS and load time).
 */
import type { PairedBurst } from './paired.js';

/** One side process's records, as `oursSide.ts` / `llamaSide.ts` print them, plus its load time. */
export interface SideRun {
  side: string;
  round: number;
  /** Seconds from spawning the process to its `ready` line. */
  loadS: number;
  loadPeakRssBytes: number;
  turns: TurnRecord[];
}

export interface TurnRecord {
  length: number;
  prefillTokensPerS: number;
  prefillS: number;
  decodeTokensPerS: number;
  /** Ours only: decode on the LOOK-M 20% cache, and the compression of every layer. */
  lookmDecodeTokensPerS?: number;
  compressS?: number;
  turnPeakRssBytes: number | null;
}

export interface SideMedians {
  loadS: number;
  loadPeakRssBytes: number;
  /** The process's peak over load and every turn. */
  wholePeakRssBytes: number;
  byLength: Record<number, { prefillTokensPerS: number; decodeTokensPerS: number; lookmDecodeTokensPerS?: number; compressS?: number; prefillS: number; turnPeakRssBytes: number | null }>;
}

export interface Ratios {
  peer: string;
  prefill: Record<number, number>;
  decodeFull: Record<number, number>;
  /** Ours on LOOK-M 20% against the peer's full cache. */
  decodeLookm: Record<number, number>;
  turnPeakRss: Record<number, number | null>;
  wholePeakRss: number;
  load: number;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const defined = <T>(xs: (T | null | undefined)[]): T[] => xs.filter((x): x is T => x !== null && x !== undefined);

/** Medians over rounds of one side's runs. */
export function sideMedians(runs: SideRun[]): SideMedians {
  if (!runs.length) throw new Error('no runs to summarise');
  const lengths = [...new Set(runs.flatMap((r) => r.turns.map((t) => t.length)))].sort((a, b) => a - b);
  const byLength: SideMedians['byLength'] = {};
  for (const L of lengths) {
    const turns = runs.flatMap((r) => r.turns.filter((t) => t.length === L));
    const opt = (xs: number[]) => (xs.length ? median(xs) : undefined);
    const peaks = defined(turns.map((t) => t.turnPeakRssBytes));
    byLength[L] = {
      prefillTokensPerS: median(turns.map((t) => t.prefillTokensPerS)),
      prefillS: median(turns.map((t) => t.prefillS)),
      decodeTokensPerS: median(turns.map((t) => t.decodeTokensPerS)),
      lookmDecodeTokensPerS: opt(defined(turns.map((t) => t.lookmDecodeTokensPerS))),
      compressS: opt(defined(turns.map((t) => t.compressS))),
      turnPeakRssBytes: peaks.length ? median(peaks) : null,
    };
  }
  return {
    loadS: median(runs.map((r) => r.loadS)),
    loadPeakRssBytes: median(runs.map((r) => r.loadPeakRssBytes)),
    wholePeakRssBytes: median(runs.map((r) => Math.max(r.loadPeakRssBytes, ...defined(r.turns.map((t) => t.turnPeakRssBytes))))),
    byLength,
  };
}

/** Ours / the peer's, per figure (tokens/s: above 1 is ours faster; RSS and load: above 1 is ours bigger or slower). */
export function ratios(ours: SideMedians, peer: SideMedians, peerName: string): Ratios {
  const lengths = Object.keys(ours.byLength).map(Number).filter((L) => peer.byLength[L]);
  const per = (f: (L: number) => number | null) => Object.fromEntries(lengths.map((L) => [L, f(L)]));
  return {
    peer: peerName,
    prefill: per((L) => ours.byLength[L].prefillTokensPerS / peer.byLength[L].prefillTokensPerS) as Record<number, number>,
    decodeFull: per((L) => ours.byLength[L].decodeTokensPerS / peer.byLength[L].decodeTokensPerS) as Record<number, number>,
    decodeLookm: per((L) => (ours.byLength[L].lookmDecodeTokensPerS ?? NaN) / peer.byLength[L].decodeTokensPerS) as Record<number, number>,
    turnPeakRss: per((L) => {
      const [a, b] = [ours.byLength[L].turnPeakRssBytes, peer.byLength[L].turnPeakRssBytes];
      return a !== null && b !== null ? a / b : null;
    }),
    wholePeakRss: ours.wholePeakRssBytes / peer.wholePeakRssBytes,
    load: ours.loadS / peer.loadS,
  };
}

/** Compression of every layer / the whole model's prefill of the same tokens, per length. */
export function compressionShare(ours: SideMedians): Record<number, number> {
  return Object.fromEntries(Object.entries(ours.byLength).filter(([, v]) => v.compressS !== undefined).map(([L, v]) => [Number(L), v.compressS! / v.prefillS]));
}

/** The log-probability check: largest |difference| over the vocabulary, and where. */
export function logProbDifference(a: Float64Array, b: Float64Array): { maxAbs: number; at: number } {
  if (a.length !== b.length) throw new Error(`log-probabilities over ${a.length} and ${b.length} tokens: the vocabularies differ`);
  let maxAbs = 0;
  let at = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue; // equal, -Infinity included
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return { maxAbs: NaN, at: i };
    if (d > maxAbs) {
      maxAbs = d;
      at = i;
    }
  }
  return { maxAbs, at };
}

/** One figure of the paired decode: the median over rounds of ours / the peer's tokens/s in the same round, and their range. */
export interface PairedRatio {
  median: number;
  min: number;
  max: number;
  rounds: number;
}

export interface PairedRatios {
  peer: string;
  /** Ours on the full cache against the peer's, per length. */
  decodeFull: Record<number, PairedRatio>;
  /** Ours on LOOK-M 20% against the peer's full cache, per length. */
  decodeLookm: Record<number, PairedRatio>;
}

/**
 * Ours / the peer's decode rate, round by round (each round's bursts ran back to back): a round's
 * ratio is the peer's milliseconds per step over ours. Rounds where either side has no burst are
 * left out.
 */
export function pairedRatios(bursts: readonly PairedBurst[], peer: string): PairedRatios {
  const lengths = [...new Set(bursts.map((b) => b.length))].sort((a, b) => a - b);
  const figure = (length: number, phase: PairedBurst['phase']): PairedRatio | undefined => {
    const ms = (side: string, round: number) => bursts.find((b) => b.length === length && b.phase === phase && b.round === round && b.side === side)?.msPerStep;
    const rounds = [...new Set(bursts.filter((b) => b.length === length && b.phase === phase).map((b) => b.round))];
    const each = defined(rounds.map((r) => {
      const [ours, theirs] = [ms('ours', r), ms(peer, r)];
      return ours !== undefined && theirs !== undefined ? theirs / ours : undefined;
    }));
    return each.length ? { median: median(each), min: Math.min(...each), max: Math.max(...each), rounds: each.length } : undefined;
  };
  const per = (phase: PairedBurst['phase']) => Object.fromEntries(lengths.flatMap((L) => {
    const f = figure(L, phase);
    return f ? [[L, f]] : [];
  }));
  return { peer, decodeFull: per('full'), decodeLookm: per('lookm') };
}
