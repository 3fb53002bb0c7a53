/**
 * Later-turn evaluation items (issue 19, section 3), seeded: the content (a file, images) arrives
 * in turn 1 and the question about it one to three turns later, with unrelated turns in between,
 * so whatever a KV policy dropped at turn 1's prefill is gone when the question comes.
 *
 * * For a real language model (SmolLM2-135M-Instruct): `later-lookup`, a `name = value` settings
 *   file of a given length in tokens (500-4,000) and a question about one value; `later-code`, a
 *   source file of small functions each returning a constant and a question about what one of
 *   them returns. The gap turns are general questions that do not need the file.
 * * For a real language model, passkey style (what SmolLM2-135M answers with the full cache at
 *   500-4,000 tokens, where it fails on `later-lookup`): `later-log`, a server log of routine lines
 *   with one distinctive fact line (`NOTE: The staging server port is 4821.`), and
 *   `later-notes`, a README of routine sentences with one such fact sentence; the question asks
 *   for that fact by its description, the answer is a 4-digit number.
 * * For the embedded model (sidecar/model, which reads only what it was trained on):
 *   `later-image`, images asked about in turn 1 and a digit asked about another image later;
 *   `later-file`, a settings file asked about in turn 1 and another value asked about later. Its
 *   gap turns are questions in its own format about the same content (it answers nothing else).
 *
 * Turns that are not the question are not scored (`scored: false`): their answers only become the
 * history every configuration is teacher-forced on.
 */
import { readFileSync } from 'node:fs';
import { COLOURS, SHAPES, picture, shuffled, type EvalItem, type EvalTurn } from './dataset.js';

export type LaterTurnKind = 'later-lookup' | 'later-code' | 'later-log' | 'later-notes' | 'later-image' | 'later-file';

/** Counts the tokens of a text (the model's tokenizer; its length decides the file sizes). */
export type TokenCounter = (text: string) => number;

const LOOKUP_KEYS = JSON.parse(readFileSync(new URL('./lookup-keys.json', import.meta.url), 'utf8')) as readonly string[];
const SECTIONS = ['server', 'client', 'cache', 'queue', 'worker', 'upload', 'render', 'audio', 'video', 'network', 'storage', 'session', 'index', 'search', 'report', 'backup'];

/** Unrelated questions for the gap turns of the real-LM items (none needs the file). */
const SMALL_TALK = [
  'What is the capital of France?',
  'Name three primary colours.',
  'What does a compiler do, in one sentence?',
  'Give me a synonym for "quick".',
  'How many days are there in a week?',
  'What is the boiling point of water in Celsius?',
  'Suggest a name for a pet cat.',
  'What is 12 plus 7?',
] as const;

const pickOf = (random: () => number) => <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];

export interface LookupLine {
  key: string;
  value: number;
}

/**
 * Distinct names in a seeded order: the 128 single words first (SmolLM2-135M finds a single-word
 * name far more reliably than `section_key`), then 2,048 `section_key` names for longer files.
 */
function names(random: () => number): string[] {
  return [...shuffled(LOOKUP_KEYS, random), ...shuffled(SECTIONS.flatMap((s) => LOOKUP_KEYS.map((k) => `${s}_${k}`)), random)];
}

/** A `name = value` file of about `targetTokens` tokens (stops at the first line that reaches it). */
export function lookupFile(targetTokens: number, count: TokenCounter, random: () => number): { text: string; lines: LookupLine[] } {
  const pool = names(random);
  const lines: LookupLine[] = [];
  let tokens = 0;
  while (tokens < targetTokens && lines.length < pool.length) {
    const line = { key: pool[lines.length], value: 100 + Math.floor(random() * 9900) };
    lines.push(line);
    tokens += count(`${line.key} = ${line.value}\n`);
  }
  return { text: lines.map(({ key, value }) => `${key} = ${value}`).join('\n'), lines };
}

/** A source file of one-line functions, each returning a constant, of about `targetTokens` tokens. */
export function codeFile(targetTokens: number, count: TokenCounter, random: () => number): { text: string; lines: LookupLine[] } {
  const pool = names(random);
  const lines: LookupLine[] = [];
  const render = ({ key, value }: LookupLine) => `def get_${key}():\n    return ${value}\n`;
  let tokens = 0;
  while (tokens < targetTokens && lines.length < pool.length) {
    const line = { key: pool[lines.length], value: 100 + Math.floor(random() * 9900) };
    lines.push(line);
    tokens += count(render(line));
  }
  return { text: lines.map(render).join('\n'), lines };
}

const unscored = (text: string, extra: Partial<EvalTurn> = {}): EvalTurn => ({ text, images: [], files: [], expected: '', scored: false, ...extra });

/**
 * Real-LM items: `count` items alternating lookup and code, cycling through `lengths` (tokens of
 * the file), the question 1-3 turns after the file (gap turns of small talk in between).
 */
export function laterTurnTextItems(count: number, countTokens: TokenCounter, random: () => number, lengths: readonly number[] = [500, 1000, 2000, 4000]): EvalItem[] {
  const pick = pickOf(random);
  const items: EvalItem[] = [];
  for (let i = 0; i < count; i++) {
    const kind: LaterTurnKind = i % 2 === 0 ? 'later-lookup' : 'later-code';
    const length = lengths[Math.floor(i / 2) % lengths.length];
    const code = kind === 'later-code';
    const file = code ? codeFile(length, countTokens, random) : lookupFile(length, countTokens, random);
    const name = code ? 'app.py' : 'settings.ini';
    // Not the first or last line: those are the ones a window or an attention sink keeps anyway.
    const target = file.lines[1 + Math.floor(random() * Math.max(1, file.lines.length - 2))];
    const gap = 1 + Math.floor(random() * 3);
    const turns: EvalTurn[] = [unscored(`Here is ${name}. Read it; I will ask you about it later. Reply "OK".`, { files: [{ name, text: file.text }] })];
    for (let g = 0; g < gap - 1; g++) turns.push(unscored(pick(SMALL_TALK)));
    const question = code ? `In app.py, what number does get_${target.key}() return? Answer with the number only.` : `In settings.ini, what is the value of ${target.key}? Answer with the number only.`;
    turns.push({ text: question, images: [], files: [], expected: String(target.value) });
    items.push({ id: `${kind}-${length}-${i}`, kind, turns, fileTokens: length });
  }
  return items;
}

/**
 * Embedded-model items in its trained phrasing: images (2-4) or a settings file (16-60 lines) in
 * turn 1 with a question, 0-2 more questions about other images or lines, then the scored one.
 */
export async function laterTurnEmbeddedItems(count: number, random: () => number): Promise<EvalItem[]> {
  const pick = pickOf(random);
  const colours = Object.keys(COLOURS) as (keyof typeof COLOURS)[];
  const items: EvalItem[] = [];
  for (let i = 0; i < count; i++) {
    const kind: LaterTurnKind = i % 2 === 0 ? 'later-image' : 'later-file';
    const gap = Math.floor(random() * 3);
    const turns: EvalTurn[] = [];
    if (kind === 'later-image') {
      const n = 2 + Math.floor(random() * 3);
      const specs = Array.from({ length: n }, () => ({ colour: pick(colours), shape: pick(SHAPES), digit: Math.floor(random() * 10) }));
      const images = await Promise.all(specs.map((s) => picture(s.colour, s.shape, s.digit)));
      const k = Math.floor(random() * n);
      turns.push(unscored(`What colour is the shape in image ${k + 1}?`, { images }));
      for (let g = 0; g < gap; g++) turns.push(unscored(`And which shape is shown in image ${1 + Math.floor(random() * n)}?`));
      const j = Math.floor(random() * n);
      turns.push({ text: `And which digit is written in image ${j + 1}?`, images: [], files: [], expected: String(specs[j].digit) });
    } else {
      const lines = 16 + Math.floor(random() * 45);
      const keys = shuffled(LOOKUP_KEYS, random).slice(0, lines).map((key) => ({ key, value: Math.floor(random() * 10000) }));
      const text = keys.map(({ key, value }) => `${key} = ${value}`).join('\n');
      turns.push(unscored(`What is the value of \`${pick(keys).key}\`?`, { files: [{ name: 'settings.py', text }] }));
      for (let g = 0; g < gap; g++) turns.push(unscored(`What is the value of \`${pick(keys).key}\`?`));
      const target = pick(keys);
      turns.push({ text: `What is the value of \`${target.key}\`?`, images: [], files: [], expected: String(target.value) });
    }
    items.push({ id: `${kind}-${i}`, kind, turns });
  }
  return items;
}

const SERVICES = ['auth', 'billing', 'search', 'upload', 'mailer', 'scheduler', 'gateway', 'cache', 'indexer', 'reports'];
const LOG_MESSAGES = ['request served in # ms', 'connected to replica #', 'queue depth is #', 'retrying job #', 'cache hit ratio # percent', 'processed batch #', 'user session # expired', 'flushed # records to disk', 'health check passed on node #', 'rotated log file #'];
const README_SENTENCES = [
  'The project uses a modular layout so that each component can be tested on its own.',
  'Contributors should open an issue before starting on a large change.',
  'The build runs on every push and publishes a report of the test results.',
  'Configuration lives in a single file that is read when the service starts.',
  'Older releases are kept for six months and then archived.',
  'The documentation is written in Markdown and rendered by the site generator.',
  'Performance figures are measured on a reference machine once a week.',
  'Please keep pull requests small and focused on one topic.',
  'The team meets on Tuesdays to plan the next release.',
  'Logs are kept for thirty days and then deleted automatically.',
];
/** The one distinctive fact of a passkey file: how the question names it, and the sentence stating it. */
const FACTS = [
  ['backup vault access code', 'The backup vault access code is #.'],
  ['staging server port', 'The staging server port is #.'],
  ['support ticket number for the outage', 'The support ticket number for the outage is #.'],
  ['invoice number of the license renewal', 'The invoice number of the license renewal is #.'],
  ['door code of the server room', 'The door code of the server room is #.'],
  ['emergency hotline extension', 'The emergency hotline extension is #.'],
] as const;

const two = (n: number) => String(n).padStart(2, '0');

/**
 * Passkey-style items: a log (`later-log`) or README (`later-notes`) of about `length` tokens of
 * routine lines, one distinctive fact line (not the first or last line), the question 1-3 turns
 * later, its answer a 4-digit number.
 */
export function laterTurnPasskeyItems(count: number, countTokens: TokenCounter, random: () => number, lengths: readonly number[] = [500, 1000, 2000, 4000]): EvalItem[] {
  const pick = pickOf(random);
  const items: EvalItem[] = [];
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const stamp = () => `2026-11-${two(int(1, 28))} ${two(int(0, 23))}:${two(int(0, 59))}:${two(int(0, 59))}`;
  for (let i = 0; i < count; i++) {
    const kind: LaterTurnKind = i % 2 === 0 ? 'later-log' : 'later-notes';
    const length = lengths[Math.floor(i / 2) % lengths.length];
    const log = kind === 'later-log';
    const routine = () => (log ? `${stamp()} INFO [${pick(SERVICES)}] ${pick(LOG_MESSAGES).replace('#', String(int(10, 999)))}` : pick(README_SENTENCES));
    const lines: string[] = [];
    let tokens = 0;
    while (tokens < length) {
      const line = routine();
      lines.push(line);
      tokens += countTokens(`${line}\n`);
    }
    const [subject, sentence] = pick(FACTS);
    const value = String(int(1000, 9999));
    lines.splice(1 + Math.floor(random() * Math.max(1, lines.length - 2)), 0, `${log ? 'NOTE: ' : ''}${sentence.replace('#', value)}`);
    const name = log ? 'server.log' : 'README.md';
    const gap = 1 + Math.floor(random() * 3);
    const turns: EvalTurn[] = [unscored(`Here is ${name}. Read it; I will ask you about it later. Reply "OK".`, { files: [{ name, text: lines.join('\n') }] })];
    for (let g = 0; g < gap - 1; g++) turns.push(unscored(pick(SMALL_TALK)));
    turns.push({ text: `In ${name}, what is the ${subject}? Answer with the number only.`, images: [], files: [], expected: value });
    items.push({ id: `${kind}-${length}-${i}`, kind, turns, fileTokens: length });
  }
  return items;
}
