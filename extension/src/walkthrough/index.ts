/**
 * The getting-started walkthrough (package.json `contributes.walkthroughs`, its media in
 * media/walkthrough/ and media/screenshots/): what the user got, how to ask, where the answers and
 * the cache are. Opened once by itself on a first run without a model, and by LOOK-M: Get Started.
 */
import * as vscode from 'vscode';
import { SECTION, SETTINGS } from '../settings.js';
import { GET_STARTED_COMMAND, openWalkthroughOnFirstRun, WALKTHROUGH } from './firstRun.js';

/** Longest wait for the walkthrough's editor at activation (it normally takes a fraction of a second). */
const OPEN_WAIT_MS = 3000;

/** VS Code's name of the walkthrough: `<publisher>.<name>#<walkthrough id>`. */
export function walkthroughCategory(context: vscode.ExtensionContext): string {
  return `${context.extension.id}#${WALKTHROUGH}`;
}

function openWalkthrough(context: vscode.ExtensionContext): Thenable<unknown> {
  return vscode.commands.executeCommand('workbench.action.openWalkthrough', walkthroughCategory(context), false);
}

/** Registers LOOK-M: Get Started. */
export function registerGetStarted(context: vscode.ExtensionContext): vscode.Disposable {
  return vscode.commands.registerCommand(GET_STARTED_COMMAND, () => openWalkthrough(context));
}

/**
 * The first-run opening. Waited for (up to OPEN_WAIT_MS) so that activation ends with the
 * walkthrough already open: opened later, it would take the focus from whatever the user (or a
 * test) started meanwhile. A failure to open is logged to the console, never thrown: activation
 * goes on.
 */
export async function showWalkthroughOnFirstRun(context: vscode.ExtensionContext): Promise<void> {
  const modelPath = vscode.workspace.getConfiguration(SECTION).get<string>(SETTINGS.modelPath.key, '');
  const opening = openWalkthroughOnFirstRun(context.globalState, modelPath, () => openWalkthrough(context)).catch((error: unknown) => {
    console.warn(`LOOK-M: the getting-started walkthrough did not open: ${error instanceof Error ? error.message : String(error)}`);
  });
  await Promise.race([opening, new Promise((resolve) => setTimeout(resolve, OPEN_WAIT_MS))]);
}
