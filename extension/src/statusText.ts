/** The status bar's text for a sidecar state (pure; no VS Code import). */
export type SidecarState = 'stopped' | 'starting' | 'ready' | 'failed';

export function statusText(state: SidecarState, model: string | null): { text: string; tooltip: string } {
  switch (state) {
    case 'ready':
      return { text: '$(check) LOOK-M', tooltip: `Local model ready: ${model ?? ''}` };
    case 'starting':
      return { text: '$(sync~spin) LOOK-M', tooltip: 'Starting the local model…' };
    case 'failed':
      return { text: '$(error) LOOK-M', tooltip: 'The local model could not start: click for the log' };
    default:
      return { text: '$(circle-outline) LOOK-M', tooltip: 'The local model starts on first use' };
  }
}

