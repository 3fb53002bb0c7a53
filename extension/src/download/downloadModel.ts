/**
 * "LOOK-M: Download Model…": a pick of the curated checkpoints, LLaVA and text-only (or any Hugging Face
 * repository), downloaded into the Hugging Face cache with progress and cancellation; when it
 * finishes the model is selected (`lookm.modelPath`) and the sidecar restarted on it.
 */
import * as vscode from 'vscode';
import { CATALOG, describe } from '../../../sidecar/src/client/hub/catalog.js';
import { downloadModel, HubDownloadError, type DownloadResult } from '../../../sidecar/src/client/hub/download.js';
import { hubCacheDir, hubEndpoint, hubToken } from '../../../sidecar/src/client/hub/settings.js';
import { readSettings } from '../config.js';
import { SECTION, SETTINGS } from '../settings.js';
import type { Sidecar } from '../sidecar/supervisor.js';

interface RepoItem extends vscode.QuickPickItem {
  repo?: string;
}

const REPO_NAME = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** `ORG/NAME`, from the name itself or a Hub page's address. */
export function repoFromInput(text: string): string | undefined {
  const trimmed = text.trim().replace(/\/+$/, '');
  const fromUrl = /^https?:\/\/[^/]+\/([^/]+\/[^/?#]+)/.exec(trimmed)?.[1];
  const repo = fromUrl ?? trimmed;
  return REPO_NAME.test(repo) && !repo.includes('..') ? repo : undefined;
}

async function pickRepo(weightBits: number): Promise<string | undefined> {
  const items: RepoItem[] = [
    ...CATALOG.map((m) => ({ label: m.repo, detail: describe(m, weightBits), repo: m.repo })),
    { label: 'Other Hugging Face repository…', detail: 'Any checkpoint in safetensors the runtime loads: LlavaForConditionalGeneration, Idefics3ForConditionalGeneration (SmolVLM), Qwen2-VL / Qwen2.5-VL, or a Llama, Mistral or Qwen2 causal LM (text only).' },
  ];
  const picked = await vscode.window.showQuickPick(items, { title: 'Download a model from Hugging Face', placeHolder: 'Sizes are approximate; memory is for the current lookm.weightBits', matchOnDetail: true, ignoreFocusOut: true });
  if (!picked) return undefined;
  if (picked.repo) return picked.repo;
  const typed = await vscode.window.showInputBox({
    title: 'Download a model from Hugging Face',
    prompt: 'The repository, as ORG/NAME or its address',
    placeHolder: 'llava-hf/llava-1.5-7b-hf',
    ignoreFocusOut: true,
    validateInput: (text) => (text.trim() === '' || repoFromInput(text) ? undefined : 'Write ORG/NAME, e.g. llava-hf/llava-1.5-7b-hf'),
  });
  return typed ? repoFromInput(typed) : undefined;
}

export async function downloadModelCommand(sidecar: Sidecar): Promise<void> {
  const settings = readSettings();
  const repo = await pickRepo(settings.weightBits);
  if (!repo) return;
  let result: DownloadResult;
  try {
    result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LOOK-M: downloading ${repo}`, cancellable: true }, async (progress, token) => {
      const controller = new AbortController();
      const cancel = token.onCancellationRequested(() => controller.abort());
      let shownPercent = 0;
      let shownAt = 0;
      try {
        return await downloadModel({
          repo,
          endpoint: hubEndpoint(settings.hubEndpoint),
          token: hubToken(),
          cacheDir: hubCacheDir(),
          signal: controller.signal,
          onProgress: (p) => {
            const now = Date.now();
            if (now - shownAt < 250) return;
            shownAt = now;
            const percent = p.totalBytes ? (100 * p.doneBytes) / p.totalBytes : 0;
            progress.report({ message: `${p.file} · ${(p.doneBytes / 1e6).toFixed(0)} of ${(p.totalBytes / 1e6).toFixed(0)} MB`, increment: percent - shownPercent });
            shownPercent = percent;
          },
        });
      } finally {
        cancel.dispose();
      }
    });
  } catch (error) {
    if (error instanceof HubDownloadError && error.kind === 'cancelled') return void vscode.window.showInformationMessage(`LOOK-M: ${error.message}`);
    const message = error instanceof Error ? error.message : String(error);
    return void vscode.window.showErrorMessage(`LOOK-M: ${message}`);
  }
  // Stopped first, so that the setting's change does not also ask whether to restart.
  await sidecar.stop();
  await vscode.workspace.getConfiguration(SECTION).update(SETTINGS.modelPath.key, result.snapshotPath, vscode.ConfigurationTarget.Global);
  void vscode.window.showInformationMessage(`LOOK-M: ${repo} is downloaded (${result.snapshotPath}) and selected.`);
  // A model the runtime cannot load is reported by the supervisor, with a button to the setting.
  await sidecar.ready().catch(() => undefined);
}
