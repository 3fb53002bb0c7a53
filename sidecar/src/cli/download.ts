/**
 * `npm run model:download -- REPO [--revision R] [--endpoint URL]`: downloads the files of a
 * Hugging Face LLaVA checkpoint that LOOK-M needs into the Hugging Face cache (HF_HUB_CACHE /
 * HF_HOME honoured; HF_ENDPOINT for mirrors; HF_TOKEN or `huggingface-cli login` for gated
 * models). Prints the snapshot folder (what --model / lookm.modelPath take) on stdout.
 */
import { parseArgs } from 'node:util';
import { downloadModel, HubDownloadError } from '../client/hub/download.js';
import { hubCacheDir, hubEndpoint, hubToken } from '../client/hub/settings.js';

const USAGE = 'usage: npm run model:download -- ORG/NAME [--revision main] [--endpoint https://huggingface.co]';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, options: { revision: { type: 'string' }, endpoint: { type: 'string' }, help: { type: 'boolean', default: false } } });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length !== 1) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const endpoint = hubEndpoint(values.endpoint);
  let lastShown = 0;
  try {
    const result = await downloadModel({
      repo: positionals[0],
      revision: values.revision,
      endpoint,
      token: hubToken(),
      cacheDir: hubCacheDir(),
      signal: controller.signal,
      onProgress: (p) => {
        const now = Date.now();
        if (now - lastShown < 500 && p.file) return;
        lastShown = now;
        console.error(`${p.file || 'done'}: ${(p.doneBytes / 1e6).toFixed(1)} of ${(p.totalBytes / 1e6).toFixed(1)} MB`);
      },
    });
    console.error(`${result.repo}@${result.commit}: ${result.files.length} files, ${(result.fetchedBytes / 1e6).toFixed(1)} MB fetched, ${result.reusedFiles} already in the cache`);
    console.log(result.snapshotPath);
    return 0;
  } catch (error) {
    if (error instanceof HubDownloadError) {
      console.error(`error: ${error.message}`);
      return error.kind === 'cancelled' ? 130 : 1;
    }
    throw error;
  }
}

void main().then((code) => (process.exitCode = code));
