/** Reading the extension's settings (declared in ./settings.ts). */
import * as vscode from 'vscode';
import { SECTION, SETTINGS, type SettingName, type Settings } from './settings.js';

export function readSettings(): Settings {
  const c = vscode.workspace.getConfiguration(SECTION);
  return Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, c.get(s.key, s.default)])) as Settings;
}

/** Opens the Settings editor on one of ours. */
export function openSetting(name: SettingName): Thenable<unknown> {
  return vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.${SETTINGS[name].key}`);
}
