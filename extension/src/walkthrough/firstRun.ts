/**
 * The getting-started walkthrough's names, and when it opens by itself (pure; no VS Code import,
 * so the unit tests read them): once, on the
 * first activation of a user who has not chosen a model (an empty `lookm.modelPath` means the
 * tiny demo model, which the walkthrough's first step explains). Once means once: a user who
 * closes it is not shown it again; LOOK-M: Get Started opens it on demand.
 */

/** The walkthrough's `id` in package.json (`contributes.walkthroughs`). */
export const WALKTHROUGH = 'getStarted';
export const GET_STARTED_COMMAND = 'lookm.getStarted';
/** Its first step's `id`: what the walkthrough opens on. */
export const FIRST_STEP = 'model';

/** Where the flag is kept (VS Code's global state, shared by every window and workspace). */
export const WALKTHROUGH_SHOWN_KEY = 'lookm.walkthroughShown';

/** The part of VS Code's Memento this needs. */
export interface FirstRunMemory {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void>;
}

/**
 * Opens the walkthrough through `open` when this is the first run without a chosen model; says
 * whether it did. The flag is written before opening: an open that fails is not retried at every
 * start.
 */
export async function openWalkthroughOnFirstRun(memory: FirstRunMemory, modelPath: string, open: () => Thenable<unknown>): Promise<boolean> {
  if (modelPath.trim() !== '' || memory.get<boolean>(WALKTHROUGH_SHOWN_KEY)) return false;
  await memory.update(WALKTHROUGH_SHOWN_KEY, true);
  await open();
  return true;
}
