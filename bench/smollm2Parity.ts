/**
 * `npx tsx bench/smollm2Parity.ts [-- --model DIR --threads 2]`: the project's runtime on the
 * converted SmolLM2-135M-Instruct (`npm run model:smollm2`) against transformers' outputs on the
 * same folder (`tools/model/smollm2_parity.py` -> bench/results/smollm2-parity.json): the rendered
 * prompt and its ids, the last logits (top 20 and every 97th), the last logits prefilled in chunks
 * against one pass, and 32 greedy tokens; then load time, prefill speed at about 1K and 4K tokens
 * and decode speed. A tool run (the checkpoint is not committed), not a test: writes
 * bench/results/smollm2-parity.txt.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ChatMessage } from '../sidecar/src/model/processor.js';
import { DEFAULT_PREFILL_CHUNK } from '../sidecar/src/runtime/modelRuntime.js';
import { OnnxModelRuntime } from '../sidecar/src/runtime/onnxModelRuntime.js';
import { argmax } from '../sidecar/src/runtime/sampling.js';
import { lookupFile } from '../tools/eval/laterTurns.js';
import { mulberry32 } from '../sidecar/src/kv/index.js';

interface RecordedCase {
  messages: ChatMessage[];
  prompt: string;
  ids: number[];
  top_ids: number[];
  top_logits: number[];
  strided_logits: number[];
  generated: number[];
  generated_text: string;
}
interface Recorded {
  model: string;
  versions: Record<string, string>;
  top_k: number;
  stride: number;
  cases: Record<string, RecordedCase>;
}

const root = join(__dirname, '..');
const { values } = parseArgs({ options: { model: { type: 'string', default: join(root, '.models/smollm2-135m-instruct') }, threads: { type: 'string', default: '2' } } });
const range = (from: number, n: number) => Int32Array.from({ length: n }, (_, i) => from + i);
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((worst, x, i) => Math.max(worst, Math.abs(x - b[i])), 0);

async function main(): Promise<void> {
  const recorded = JSON.parse(readFileSync(join(root, 'bench/results/smollm2-parity.json'), 'utf8')) as Recorded;
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    process.stderr.write(`${line}\n`);
  };
  let started = performance.now();
  const runtime = await OnnxModelRuntime.load(resolve(values.model), { threads: Number(values.threads) });
  const loadSeconds = (performance.now() - started) / 1000;
  say(`# SmolLM2-135M-Instruct: the project's runtime against transformers on the same converted weights`);
  say('');
  say(`${new Date().toISOString()} · ${recorded.model} · reference: transformers ${recorded.versions.transformers}, torch ${recorded.versions.torch} (eager attention, float32) · runtime: onnxruntime-node, ${values.threads} threads`);
  say(`commands: npm run model:smollm2 && python3 tools/model/smollm2_parity.py && npx tsx bench/smollm2Parity.ts`);
  say('');
  say('## Parity');
  say('');
  let ok = true;
  for (const [name, c] of Object.entries(recorded.cases)) {
    const prompt = runtime.processor.renderChatTemplate(c.messages);
    const ids = runtime.processor.encode(prompt);
    const sameText = prompt.text === c.prompt;
    const sameIds = JSON.stringify(ids) === JSON.stringify(c.ids);
    const { embeds, modality } = runtime.embedPrompt(c.ids, new Float32Array(0));
    const whole = runtime.createCache();
    const { logits } = await runtime.prefill(whole, embeds, range(0, c.ids.length), modality, { chunk: c.ids.length });
    const top = c.top_ids.map((id) => logits[id]);
    const ourTop = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, recorded.top_k);
    const strided = Array.from({ length: c.strided_logits.length }, (_, i) => logits[i * recorded.stride]);
    const chunkDiffs: string[] = [];
    for (const chunk of [64, DEFAULT_PREFILL_CHUNK]) {
      if (chunk >= c.ids.length) continue;
      const cache = runtime.createCache();
      const chunked = await runtime.prefill(cache, embeds, range(0, c.ids.length), modality, { chunk });
      chunkDiffs.push(`chunks of ${chunk}: ${maxAbsDiff(chunked.logits, logits).toExponential(2)}`);
    }
    const generated: number[] = [];
    let step = logits;
    for (let k = 0; k < c.generated.length; k++) {
      generated.push(argmax(step));
      step = await runtime.decodeStep(whole, generated[k], c.ids.length + k);
    }
    const firstDiff = generated.findIndex((id, k) => id !== c.generated[k]);
    const sameGreedy = firstDiff < 0;
    ok &&= sameText && sameIds && sameGreedy;
    say(`### ${name} (${c.ids.length} prompt tokens)`);
    say(`- prompt text identical: ${sameText}; token ids identical: ${sameIds}`);
    say(`- last logits, max |diff| vs transformers: top ${recorded.top_k} ${maxAbsDiff(top, c.top_logits).toExponential(2)}, every ${recorded.stride}th ${maxAbsDiff(strided, c.strided_logits).toExponential(2)}; top-${recorded.top_k} order identical: ${JSON.stringify(ourTop) === JSON.stringify(c.top_ids)}`);
    say(`- last logits prefilled in chunks vs one pass, max |diff|: ${chunkDiffs.join('; ') || '(shorter than a chunk)'}`);
    say(`- ${c.generated.length} greedy tokens identical: ${sameGreedy}${sameGreedy ? '' : ` (first difference at step ${firstDiff})`}: ${JSON.stringify(runtime.processor.decode(generated, false))}`);
    say('');
  }
  say(`All prompts, ids and greedy tokens identical: ${ok}`);
  say('');

  // Speed, on prompts of about 1K and 4K tokens: a settings file and a question, as in the evaluation.
  say(`## Speed (this machine: 2 cores shared with other work, ${values.threads} onnxruntime threads; the load average says how busy they were)`);
  say('');
  say(`- load: ${loadSeconds.toFixed(1)} s (config, 540 MB of float32 safetensors, ONNX graph build, sessions)`);
  for (const target of [1000, 4000]) {
    const file = lookupFile(target, (text) => runtime.processor.encode(text, false).length, mulberry32(target));
    const prompt = runtime.processor.renderChatTemplate([{ role: 'user', content: `File settings.ini:\n\`\`\`\n${file.text}\n\`\`\`\n\nWhat is the value of ${file.lines[0].key}?` }]);
    const ids = runtime.processor.encode(prompt);
    const { embeds, modality } = runtime.embedPrompt(ids, new Float32Array(0));
    const cache = runtime.createCache();
    started = performance.now();
    let { logits } = await runtime.prefill(cache, embeds, range(0, ids.length), modality, { chunk: DEFAULT_PREFILL_CHUNK });
    const prefillSeconds = (performance.now() - started) / 1000;
    const steps = 32;
    started = performance.now();
    for (let k = 0; k < steps; k++) logits = await runtime.decodeStep(cache, argmax(logits), ids.length + k);
    const decodeSeconds = (performance.now() - started) / 1000;
    say(`- ${ids.length}-token prompt (load average ${loadavg()[0].toFixed(1)} on 2 cores at its start): prefill ${(ids.length / prefillSeconds).toFixed(0)} tokens/s (${prefillSeconds.toFixed(1)} s, chunks of ${DEFAULT_PREFILL_CHUNK}); then decode ${(steps / decodeSeconds).toFixed(1)} tokens/s (${steps} steps on that cache)`);
  }
  await runtime.release();
  writeFileSync(join(root, 'bench/results/smollm2-parity.txt'), `${lines.join('\n')}\n`);
}

void main();
