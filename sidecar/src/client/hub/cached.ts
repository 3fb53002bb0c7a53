/**
 * Checkpoints already in the Hugging Face cache (downloaded by LOOK-M or by Python), for Select
 * Model: every snapshot of a model repository with a config.json and safetensors weights.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface CachedModel {
  repo: string;
  commit: string;
  path: string;
}

export async function findCachedModels(cacheDir: string): Promise<CachedModel[]> {
  const found: CachedModel[] = [];
  const repos = await readdir(cacheDir).catch(() => [] as string[]);
  for (const folder of repos.filter((name) => name.startsWith('models--')).sort()) {
    const repo = folder.slice('models--'.length).split('--').join('/');
    const snapshots = join(cacheDir, folder, 'snapshots');
    for (const commit of await readdir(snapshots).catch(() => [] as string[])) {
      const path = join(snapshots, commit);
      const files = await readdir(path).catch(() => [] as string[]);
      if (!files.includes('config.json') || !files.some((f) => f.endsWith('.safetensors'))) continue;
      // A link to a deleted blob leaves an unusable snapshot.
      if (!(await stat(join(path, 'config.json')).then(() => true, () => false))) continue;
      found.push({ repo, commit, path });
    }
  }
  return found;
}
