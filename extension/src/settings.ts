/**
 * The extension's settings, declared once (no VS Code import: tested against package.json's
 * `contributes.configuration`, which must declare the same keys and defaults).
 */
export const SECTION = 'lookm';

export const SETTINGS = {
  modelPath: { key: 'modelPath', default: '' },
  policy: { key: 'kv.policy', default: 'text_prior_pivot_merge' },
  budgetRatio: { key: 'kv.budgetRatio', default: 0.2 },
  globalBudgetMb: { key: 'kv.globalBudgetMb', default: 2048 },
  maxNewTokens: { key: 'maxNewTokens', default: 512 },
  threads: { key: 'threads', default: 0 },
} as const;

export interface Settings {
  modelPath: string;
  policy: string;
  budgetRatio: number;
  globalBudgetMb: number;
  maxNewTokens: number;
  threads: number;
}
