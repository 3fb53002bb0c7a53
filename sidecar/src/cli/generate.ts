/**
 * `npm run generate -- --model DIR [--image a.png ...] "question"`: loads a LLaVA checkpoint,
 * answers one question about the images, streaming the answer to stdout and the figures to stderr.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isPolicyName } from '../kv/index.js';
import { generate } from '../session/generate.js';
import { parseWeightBits } from '../model/text/decoderGraph.js';
import { OnnxModelRuntime } from '../runtime/onnxModelRuntime.js';

const USAGE = `usage: npm run generate -- --model DIR [--image FILE ...] [--max-new-tokens N] [--policy NAME|full]
                            [--hh-ratio R] [--recent-ratio R] [--temperature T] [--top-k K] [--top-p P] [--seed S]
                            [--threads N] [--weight-bits 32|8|4] "question"`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      image: { type: 'string', multiple: true, default: [] },
      'max-new-tokens': { type: 'string', default: '64' },
      policy: { type: 'string', default: 'text_prior_pivot_merge' },
      'hh-ratio': { type: 'string', default: '0.1' },
      'recent-ratio': { type: 'string', default: '0.1' },
      temperature: { type: 'string', default: '0' },
      'top-k': { type: 'string', default: '0' },
      'top-p': { type: 'string', default: '1' },
      seed: { type: 'string', default: '0' },
      threads: { type: 'string' },
      'weight-bits': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help || !values.model || positionals.length !== 1) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const policy = values.policy;
  if (!isPolicyName(policy)) {
    console.error(`unknown --policy ${policy}`);
    return 2;
  }
  const images = values.image.map((file) => readFileSync(file));
  const runtime = await OnnxModelRuntime.load(values.model, {
    threads: values.threads ? Number(values.threads) : undefined,
    weightBits: parseWeightBits(values['weight-bits']),
    onProgress: (step) => console.error(`[load] ${step}`),
  });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const started = performance.now();
  let first = 0;
  let count = 0;
  const options = {
    maxNewTokens: Number(values['max-new-tokens']),
    policy,
    budget: { hhRatio: Number(values['hh-ratio']), recentRatio: Number(values['recent-ratio']) },
    temperature: Number(values.temperature),
    topK: Number(values['top-k']),
    topP: Number(values['top-p']),
    seed: Number(values.seed),
    signal: controller.signal,
  };
  const result = await generate(runtime, positionals[0], images, options, (text) => {
    if (count++ === 0) first = performance.now() - started;
    process.stdout.write(text);
  });
  const s = result.stats;
  console.error(`\n[prefill] ${s.newTokens} tokens (${s.imagesEncoded} images) in ${s.prefillMs.toFixed(0)} ms; KV kept ${s.keptSlots[0]} slots per head, compressed in ${s.compressMs.toFixed(1)} ms`);
  const total = performance.now() - started;
  console.error(`[decode] ${count} tokens; first after ${first.toFixed(0)} ms; ${count > 1 ? (((count - 1) * 1000) / (total - first)).toFixed(1) : '–'} tokens/s after it`);
  await runtime.release();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
