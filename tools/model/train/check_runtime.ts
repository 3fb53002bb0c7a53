/**
 * Loads an exported folder with the repo's TypeScript runtime and checks it against what
 * train_vlm.py recorded with transformers (RUN/parity/cases.json): the prompt token ids
 * (chat template + tokenizer + image-token expansion) must be identical and the first-step
 * logits close; also prints the runtime's greedy answer next to the expected one.
 *
 *   npx tsx tools/model/train/check_runtime.ts --model EXPORT_DIR --cases RUN/parity/cases.json
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SessionSettings } from '../../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache } from '../../../sidecar/src/session/conversation.js';

interface Case { name: string; text: string; images: string[]; ids: number[]; logits: number[]; expected: string }

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, cases: { type: 'string' }, tol: { type: 'string', default: '1e-2' } } });
  if (!values.model || !values.cases) {
    console.error('usage: npx tsx tools/model/train/check_runtime.ts --model DIR --cases RUN/parity/cases.json');
    return 2;
  }
  const cases = JSON.parse(readFileSync(values.cases, 'utf8')) as Case[];
  const runtime = await OnnxModelRuntime.load(values.model);
  let failed = 0;
  for (const c of cases) {
    const content = [...c.images.map(() => ({ type: 'image' as const })), { type: 'text' as const, text: c.text }];
    const prompt = runtime.processor.renderChatTemplate([{ role: 'user', content }]);
    const ids = runtime.processor.encode(prompt);
    const sameIds = ids.length === c.ids.length && ids.every((x, i) => x === c.ids[i]);
    let first: Float32Array | null = null;
    const conversation = new Conversation(c.name, SessionSettings.parse({ policy: 'full', maxNewTokens: 8 }));
    const out = await conversation.turn(
      runtime,
      new FeatureCache(),
      { text: c.text, images: c.images.map((f) => readFileSync(f)), files: [], onLogits: (l) => (first ??= l.slice()) },
      () => undefined,
      () => false,
    );
    let maxDiff = Infinity;
    if (first) {
      maxDiff = 0;
      for (let i = 0; i < c.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(first[i] - c.logits[i]));
    }
    const ok = sameIds && maxDiff <= Number(values.tol);
    if (!ok) failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${c.name}: ids ${sameIds ? 'identical' : `differ (${ids.length} vs ${c.ids.length})`} (${ids.length}), first-step logits max |diff| ${maxDiff.toExponential(2)}, answer ${JSON.stringify(out.text.trim())} expected ${JSON.stringify(c.expected)}`);
  }
  await runtime.release();
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`error: ${error instanceof Error ? error.stack : String(error)}`);
    process.exit(1);
  },
);
