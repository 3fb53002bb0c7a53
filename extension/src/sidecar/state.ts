/** Where the supervised sidecar is in its life; the status bar and the commands follow it. */
export type SidecarState = 'stopped' | 'starting' | 'ready' | 'failed';
