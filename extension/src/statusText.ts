/** The status bar's text for a sidecar state and its KV figures (pure; no VS Code import). */
import { kib } from './chat/format.js';
import type { ModelInfo } from '../../sidecar/src/protocol/index.js';
import type { SidecarState } from './sidecar/state.js';

export interface StatusFigures {
  /** A turn is running. */
  busy: boolean;
  /** Allocated KV bytes of all conversations (what the budget bounds), and the sidecar's budget; null until known. */
  kvBytes: number | null;
  kvBudgetBytes: number | null;
}

/** The loaded model as the tooltip names it: its text model, where it runs, its folder. */
export function modelLabel(info: Pick<ModelInfo, 'textModel' | 'path' | 'device'>): string {
  const device = info.device ? ` on ${info.device.adapter}${info.device.kvOnDevice ? ' (KV cache in GPU memory)' : ''}` : '';
  return `${info.textModel}${device}, ${info.path}`;
}

export function statusText(state: SidecarState, model: string | null, figures: StatusFigures = { busy: false, kvBytes: null, kvBudgetBytes: null }): { text: string; tooltip: string } {
  switch (state) {
    case 'ready': {
      const memory = figures.kvBytes === null ? '' : ` ${kib(figures.kvBytes)}${figures.kvBudgetBytes === null ? '' : ` / ${kib(figures.kvBudgetBytes)}`}`;
      const icon = figures.busy ? '$(sync~spin)' : '$(database)';
      return { text: `${icon} LOOK-M${memory}`, tooltip: `Local model ready: ${model ?? ''}\nKV cache memory allocated / budget. Click for the cache view.` };
    }
    case 'starting':
      return { text: '$(sync~spin) LOOK-M', tooltip: 'Starting the local model…' };
    case 'failed':
      return { text: '$(error) LOOK-M', tooltip: 'The local model could not start: run "LOOK-M: Show Log"' };
    default:
      return { text: '$(circle-outline) LOOK-M', tooltip: 'The local model starts on first use' };
  }
}
