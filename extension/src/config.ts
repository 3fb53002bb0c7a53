/** Reading the extension's settings (declared in ./settings.ts). */
import * as vscode from 'vscode';
import { SECTION, SETTINGS, type Settings } from './settings.js';

export function readSettings(): Settings {
  const c = vscode.workspace.getConfiguration(SECTION);
  const get = <K extends keyof typeof SETTINGS>(name: K): (typeof SETTINGS)[K]['default'] extends string ? string : number =>
    c.get(SETTINGS[name].key, SETTINGS[name].default) as never;
  return {
    modelPath: get('modelPath'),
    policy: get('policy'),
    budgetRatio: get('budgetRatio'),
    globalBudgetMb: get('globalBudgetMb'),
    maxNewTokens: get('maxNewTokens'),
    threads: get('threads'),
  };
}

/** Opens the Settings editor on one of ours. */
export function openSetting(name: keyof typeof SETTINGS): Thenable<unknown> {
  return vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.${SETTINGS[name].key}`);
}
