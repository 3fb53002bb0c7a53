/**
 * What both sides of the llama.cpp comparison measure alike, each in its own child process
 * (`oursSide.ts`, `llamaSide.ts`): the prompt ids, the options, and the JSON lines a side prints for `bench/llamacpp.ts`.
 */

import { createInterface } from 'node:readline';

/** The prompt both sides are fed: the same token ids, inside every tokenizer's range (4..303). */
export const promptIds = (length: number): number[] => Array.from({ length }, (_, i) => 4 + ((i * 7919) % 300));

/** The short prompt of the log-probability check. */
export const CHECK_IDS = promptIds(24);

/** One result line for the parent (stdout carries nothing else). */
export function emit(record: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

/** Log-softmax of logits, in float64. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  return Float64Array.from({ length: logits.length }, (_, i) => logits[i] - lse);
}

export interface SideOptions {
  model: string;
  lengths: number[];
  steps: number;
  threads: number;
  check: string | undefined;
  /** Answer paired-decode commands (`serve`) instead of timing the lengths' turns. */
  serve: boolean;
}

/** `--model --lengths --steps --threads [--check FILE] [--serve]` of a side process. */
export function sideOptions(values: { model?: string; lengths?: string; steps?: string; threads?: string; check?: string; serve?: boolean }): SideOptions {
  if (!values.model) throw new Error('--model is required');
  const lengths = (values.lengths ?? '100').split(',').map(Number);
  const steps = Number(values.steps ?? 8);
  const threads = Number(values.threads ?? 2);
  for (const n of [...lengths, steps, threads]) if (!(Number.isInteger(n) && n >= 1)) throw new Error(`--lengths, --steps and --threads take positive integers (got ${values.lengths}, ${values.steps}, ${values.threads})`);
  return { model: values.model, lengths, steps, threads, check: values.check, serve: values.serve ?? false };
}

/**
 * The paired decode's commands (`--serve`, driven by `paired.ts`): one JSON object a line on stdin,
 * one `done` line back for each. A side holds one prefilled conversation at a time; `decode` times
 * `steps` greedy steps after one untimed step (the first step's allocations), then puts the
 * conversation back as it was, so every burst decodes at the prefilled length.
 */
export type ServeCommand = { op: 'prefill'; length: number } | { op: 'decode'; steps: number } | { op: 'compress' } | { op: 'release' };

export interface ServeHandlers {
  prefill(length: number): Promise<void>;
  /** Milliseconds per timed step. */
  decode(steps: number): Promise<number>;
  /** LOOK-M 20% on every layer (a side without it keeps its full cache). */
  compress(): Promise<void>;
  release(): Promise<void>;
}

/** Answers commands from stdin until it closes. */
export async function serve(handlers: ServeHandlers): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    const command = JSON.parse(line) as ServeCommand;
    switch (command.op) {
      case 'prefill':
        await handlers.prefill(command.length);
        emit({ event: 'done', op: command.op });
        break;
      case 'decode':
        emit({ event: 'done', op: command.op, msPerStep: await handlers.decode(command.steps) });
        break;
      case 'compress':
      case 'release':
        await handlers[command.op]();
        emit({ event: 'done', op: command.op });
        break;
      default:
        throw new Error(`unknown command ${line}`);
    }
  }
}
