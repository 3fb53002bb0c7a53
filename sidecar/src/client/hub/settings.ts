/**
 * Where the Hub is, where its cache is, and whose token to send, read from the same places as
 * Hugging Face's own clients, so that a model fetched with Python is found again.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { getHFHubCachePath } from '@huggingface/hub';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/** The Hub's address: the setting, else `HF_ENDPOINT`, else huggingface.co (no trailing slash). */
export function hubEndpoint(setting?: string, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = setting?.trim() || env.HF_ENDPOINT?.trim() || DEFAULT_HUB_ENDPOINT;
  return chosen.replace(/\/+$/, '');
}

/** The hub cache folder (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`). */
export function hubCacheDir(): string {
  return getHFHubCachePath();
}

/**
 * The user's token: `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, then the file `huggingface-cli login`
 * writes (`HF_TOKEN_PATH`, else `HF_HOME/token`, else `~/.cache/huggingface/token`).
 */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env.HF_TOKEN?.trim() || env.HUGGING_FACE_HUB_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  const file = env.HF_TOKEN_PATH ?? join(home, 'token');
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
