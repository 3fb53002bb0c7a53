/**
 * Budgets: how many slots per head a compression may keep, split into "heavy hitters" (ranked by
 * score) and the recent window (always kept).
 */
import { KvSettingsError } from './errors.js';

export type Mode = 'reference' | 'improved';

export interface Budget {
  /** Heavy-hitter share, as the reference takes it (`hh_ratio`, lookm-spec §4). Default 0.1. */
  hhRatio?: number;
  /** Recent-window share (`recent_ratio`). Default 0.1. */
  recentRatio?: number;
  /** Absolute cap on kept slots per head (improved mode only: the reference has no such cap). */
  maxSlots?: number;
}

export interface SlotBudget {
  heavy: number;
  recent: number;
}

export const DEFAULT_HH_RATIO = 0.1;
export const DEFAULT_RECENT_RATIO = 0.1;

export function validateBudget(budget: Budget, mode: Mode): void {
  for (const key of ['hhRatio', 'recentRatio'] as const) {
    const value = budget[key];
    if (value !== undefined && !(value >= 0 && value <= 1)) throw new KvSettingsError(`${key} must be in [0, 1], got ${value}`);
  }
  if (budget.maxSlots !== undefined) {
    if (!Number.isInteger(budget.maxSlots) || budget.maxSlots < 1) throw new KvSettingsError(`maxSlots must be a positive integer, got ${budget.maxSlots}`);
    if (mode === 'reference') throw new KvSettingsError('maxSlots is an improved-mode budget; the reference takes hhRatio/recentRatio only');
  }
}

/**
 * Slots to keep for a cache of `length` slots that has seen `tokensSeen` tokens.
 *
 * Reference mode recomputes `int(L * ratio)` from the current length, like the official classes
 * (Python's float product then truncation; JavaScript's double product is the same IEEE operation).
 * Improved mode takes the ratios of every token the conversation has seen, so a cache does not
 * shrink turn after turn, caps the total at `maxSlots` (keeping the heavy/recent split), and keeps
 * at least one recent slot so the newest token is never evicted.
 */
export function resolveBudget(budget: Budget, length: number, tokensSeen: number, mode: Mode): SlotBudget {
  validateBudget(budget, mode);
  const onlyCap = budget.hhRatio === undefined && budget.recentRatio === undefined && budget.maxSlots !== undefined;
  const hhRatio = budget.hhRatio ?? DEFAULT_HH_RATIO;
  const recentRatio = budget.recentRatio ?? DEFAULT_RECENT_RATIO;
  if (mode === 'reference') {
    return { heavy: Math.trunc(length * hhRatio), recent: Math.trunc(length * recentRatio) };
  }
  const base = Math.max(length, tokensSeen);
  // The total is truncated once (so hh + recent = 100% keeps everything, which two separate
  // truncations would not for odd lengths); the recent share is truncated, heavy takes the rest.
  let recent = onlyCap ? Infinity : Math.trunc(base * recentRatio);
  let heavy = onlyCap ? Infinity : Math.floor(base * (hhRatio + recentRatio) + 1e-9) - recent;
  const cap = budget.maxSlots ?? Infinity;
  if (heavy + recent > cap) {
    const recentShare = onlyCap || hhRatio + recentRatio === 0 ? 0.5 : recentRatio / (hhRatio + recentRatio);
    recent = Math.round(cap * recentShare);
    heavy = cap - recent;
  }
  if (heavy + recent === 0) return { heavy: 0, recent: Math.min(1, length) };
  if (recent === 0) return { heavy: heavy - 1, recent: 1 };
  return { heavy, recent };
}
