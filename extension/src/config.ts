/** Reading the extension's settings (declared in ./settings.ts). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { SECTION, SETTINGS, type SettingName, type Settings } from './settings.js';

let embeddedModel = '';

/** The model shipped inside the extension (`sidecar/model`): what an empty `lookm.modelPath` means (none when the folder is missing). */
export function setEmbeddedModel(extensionPath: string): void {
  const folder = join(extensionPath, 'sidecar', 'model');
  embeddedModel = existsSync(join(folder, 'config.json')) ? folder : '';
}

export function isEmbeddedModel(path: string): boolean {
  return path !== '' && path === embeddedModel;
}

export function readSettings(): Settings {
  const c = vscode.workspace.getConfiguration(SECTION);
  const settings = Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, c.get(s.key, s.default)])) as Settings;
  if (!settings.modelPath) settings.modelPath = embeddedModel;
  return settings;
}

/** Opens the Settings editor on one of ours. */
export function openSetting(name: SettingName): Thenable<unknown> {
  return vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.${SETTINGS[name].key}`);
}
