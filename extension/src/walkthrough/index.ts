/**
 * The getting-started walkthrough (package.json `contributes.walkthroughs`, its media in
 * media/walkthrough/ and media/screenshots/): what the user got, how to ask, where the answers and
 * the cache are. Opened once by itself on a first run without a model, and by LOOK-M: Get Started.
 */
import * as vscode from 'vscode';
import { SECTION, SETTINGS } from '../settings.js';
import { FIRST_STEP, GET_STARTED_COMMAND, openWalkthroughOnFirstRun, WALKTHROUGH } from './firstRun.js';

/** How long after the first-run opening the Welcome editor is checked again. */
const SETTLE_MS = 3000;
/** Longest wait for the walkthrough's editor at activation (it normally takes a fraction of a second). */
const OPEN_WAIT_MS = SETTLE_MS + 3000;

/** VS Code's name of the walkthrough: `<publisher>.<name>#<walkthrough id>`. */
export function walkthroughCategory(context: vscode.ExtensionContext): string {
  return `${context.extension.id}#${WALKTHROUGH}`;
}

/** Opens the walkthrough on its first step (`{ category, step }`: the form the host tests check step by step). */
function openWalkthrough(context: vscode.ExtensionContext): Thenable<unknown> {
  return vscode.commands.executeCommand('workbench.action.openWalkthrough', { category: walkthroughCategory(context), step: FIRST_STEP }, false);
}

/** Registers LOOK-M: Get Started. */
export function registerGetStarted(context: vscode.ExtensionContext): vscode.Disposable {
  return vscode.commands.registerCommand(GET_STARTED_COMMAND, () => openWalkthrough(context));
}

/**
 * The first-run opening. Waited for (a few seconds at most, once) so that activation ends with the
 * walkthrough already open: opened later, it would take the focus from whatever the user (or a
 * test) started meanwhile. A failure to open is logged to the console, never thrown: activation
 * goes on.
 */
export async function showWalkthroughOnFirstRun(context: vscode.ExtensionContext): Promise<void> {
  const modelPath = vscode.workspace.getConfiguration(SECTION).get<string>(SETTINGS.modelPath.key, '');
  const open = async () => {
    await openWalkthrough(context);
    // Seen in VS Code 1.117 (code-server): the workbench's own Welcome page, opened as it finishes
    // starting, took the place of the walkthrough (one editor serves both). Shown again if the
    // Welcome editor is still in front a moment later, so the user is not left on the generic page.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    if (vscode.window.tabGroups.activeTabGroup.activeTab?.label === 'Welcome') await openWalkthrough(context);
  };
  const opening = openWalkthroughOnFirstRun(context.globalState, modelPath, open).catch((error: unknown) => {
    console.warn(`LOOK-M: the getting-started walkthrough did not open: ${error instanceof Error ? error.message : String(error)}`);
  });
  await Promise.race([opening, new Promise((resolve) => setTimeout(resolve, OPEN_WAIT_MS))]);
}
