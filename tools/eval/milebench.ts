/**
 * MileBench's JSON format (https://github.com/MileBench/MileBench) as evaluation items, so a user
 * with a real model and the real benchmark runs `npm run eval -- --milebench DIR` unchanged. A
 * subset folder holds `<Subset>.json` and `images/`; each sample's prompt is built the way
 * MileBench's own evaluation builds it: the task instruction, the context with its `{image#k}` /
 * `{table#k}` placeholders (named in the text; the images themselves go in as images, in order),
 * the choice list for multi-choice questions, and `{i}` counters numbered 1, 2, 3, ...
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { z } from 'zod';
import type { EvalItem } from './dataset.js';

const Sample = z.object({
  sample_id: z.union([z.string(), z.number()]),
  task_instruction_id: z.number().int().nonnegative(),
  task_instance: z.object({ context: z.string(), images_path: z.array(z.string()), choice_list: z.array(z.string()).optional() }).loose(),
  response: z.union([z.string(), z.number()]).transform(String),
});

const Annotation = z.object({
  meta_data: z.object({ task_instruction: z.array(z.string()) }).loose(),
  data: z.array(Sample),
});

/** The prompt MileBench's evaluation gives a model for one sample. */
export function mileBenchPrompt(instruction: string, context: string, images: number, choices?: string[]): string {
  let text = context;
  if (choices) text += `\nChoice list: \n${choices.map((c, i) => `${String.fromCharCode(65 + i)}. ${c}`).join('\n')}\nYour answer is: `;
  for (let k = 1; k <= images; k++) text = text.replaceAll(`{image#${k}}`, `[image ${k}]`).replaceAll(`{table#${k}}`, `[image ${k}]`);
  let counter = 0;
  return `${instruction}\n${text}`.replace(/\{i\}/g, () => String(++counter));
}

/** Items from a MileBench subset folder (or its JSON file directly), at most `limit` of them. */
export function loadMileBench(path: string, limit = Infinity): EvalItem[] {
  const file = path.endsWith('.json') ? path : join(path, `${basename(path)}.json`);
  if (!existsSync(file)) throw new Error(`no MileBench annotation at ${file} (expected <Subset>/<Subset>.json beside <Subset>/images/)`);
  const parsed = Annotation.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(`${file} is not in MileBench's format: ${z.prettifyError(parsed.error)}`);
  const subset = basename(file, '.json');
  const imageDir = join(file, '..', 'images');
  return parsed.data.data.slice(0, limit).map((sample) => {
    const instruction = parsed.data.meta_data.task_instruction[sample.task_instruction_id];
    if (instruction === undefined) throw new Error(`${file}: sample ${sample.sample_id} names task instruction ${sample.task_instruction_id}, which does not exist`);
    const { context, images_path: imagePaths, choice_list: choices } = sample.task_instance;
    const images = imagePaths.map((p) => new Uint8Array(readFileSync(join(imageDir, p))));
    return {
      id: `${subset}-${sample.sample_id}`,
      kind: `milebench:${subset}`,
      turns: [{ text: mileBenchPrompt(instruction, context, images.length, choices), images, files: [], expected: sample.response }],
    };
  });
}
