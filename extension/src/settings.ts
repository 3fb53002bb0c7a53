/**
 * The extension's settings, declared once (no VS Code import: tested against package.json's
 * `contributes.configuration`, which must declare the same keys and defaults). `restart`: the
 * setting is a command-line flag of the sidecar, so it applies after a restart (which is offered);
 * the others apply to the next conversation or answer.
 */
import { DEFAULT_POLICY } from '../../sidecar/src/protocol/policies.js';

export const SECTION = 'lookm';

export const SETTINGS = {
  modelPath: { key: 'modelPath', default: '', restart: true },
  policy: { key: 'kv.policy', default: DEFAULT_POLICY, restart: false },
  budgetRatio: { key: 'kv.budgetRatio', default: 0.2, restart: false },
  maxSlots: { key: 'kv.maxSlots', default: 0, restart: false },
  mode: { key: 'kv.mode', default: 'improved', restart: false },
  globalBudgetMb: { key: 'kv.globalBudgetMb', default: 2048, restart: true },
  coldTier: { key: 'kv.coldTier', default: 'int8', restart: false },
  recallSpan: { key: 'kv.recallSpan', default: 16, restart: false },
  recallBudget: { key: 'kv.recallBudget', default: 0.1, restart: false },
  coldBudgetMb: { key: 'kv.coldBudgetMb', default: 1024, restart: true },
  maxNewTokens: { key: 'maxNewTokens', default: 512, restart: false },
  executionProvider: { key: 'executionProvider', default: 'cpu', restart: true },
  threads: { key: 'threads', default: 0, restart: true },
  weightBits: { key: 'weightBits', default: 32, restart: true },
  maxImagePixels: { key: 'maxImagePixels', default: 40_000_000, restart: true },
  logLevel: { key: 'logLevel', default: 'info', restart: true },
  stateMaxSessions: { key: 'state.maxSessions', default: 200, restart: true },
  stateMaxAgeDays: { key: 'state.maxAgeDays', default: 90, restart: true },
  stateMaxMb: { key: 'state.maxMb', default: 1024, restart: true },
  prefillChunk: { key: 'prefillChunk', default: 512, restart: true },
  packedWeightsMb: { key: 'packedWeights.cacheMb', default: 8192, restart: true },
  hubEndpoint: { key: 'hubEndpoint', default: '', restart: false },
} as const;

export type SettingName = keyof typeof SETTINGS;

export type Settings = { [K in SettingName]: (typeof SETTINGS)[K]['default'] extends string ? string : number };

/** The settings whose change needs a sidecar restart. */
export const RESTART_KEYS: readonly string[] = Object.values(SETTINGS)
  .filter((s) => s.restart)
  .map((s) => `${SECTION}.${s.key}`);

/** What a new conversation asks the sidecar for (see SessionSettings in the protocol). */
export function sessionSettings(s: Settings): {
  policy: string;
  mode: string;
  budget: { hhRatio: number; recentRatio: number; maxSlots?: number };
  maxNewTokens: number;
  coldTier?: string;
  recallSpan?: number;
  recallBudget?: number;
} {
  const budget = { hhRatio: s.budgetRatio / 2, recentRatio: s.budgetRatio / 2, ...(s.maxSlots > 0 && s.mode !== 'reference' ? { maxSlots: s.maxSlots } : {}) };
  // The reference drops what it evicts: the cold tier is an improved-mode setting. It is not on
  // the GPU yet (the sidecar refuses it while the KV cache lives there), so only the CPU asks for it.
  const cold = s.coldTier !== 'off' && s.mode !== 'reference' && s.executionProvider === 'cpu' ? { coldTier: s.coldTier, recallSpan: s.recallSpan, recallBudget: s.recallBudget } : {};
  return { policy: s.policy, mode: s.mode, budget, maxNewTokens: s.maxNewTokens, ...cold };
}

/**
 * The sidecar's command line for these settings. It may read the model folder and nothing beside
 * it (`--allow-dir` is the folder itself: its parent may be the whole home folder).
 */
export function sidecarArgs(settings: Settings, stateDir: string): string[] {
  const args = ['--model', settings.modelPath, '--state-dir', stateDir, '--allow-dir', settings.modelPath, '--kv-budget-mb', String(settings.globalBudgetMb)];
  args.push('--device', settings.executionProvider, '--max-image-pixels', String(settings.maxImagePixels), '--weight-bits', String(settings.weightBits), '--log-level', settings.logLevel);
  if (settings.threads > 0) args.push('--threads', String(settings.threads));
  args.push('--max-sessions', String(settings.stateMaxSessions), '--session-max-age-days', String(settings.stateMaxAgeDays), '--state-max-mb', String(settings.stateMaxMb));
  args.push('--prefill-chunk', String(settings.prefillChunk), '--cold-budget-mb', String(settings.coldBudgetMb), '--packed-weights-mb', String(settings.packedWeightsMb));
  return args;
}
