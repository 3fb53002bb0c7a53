/** The JSON files of a checkpoint folder, read with a size limit and errors that never quote them. */
import { closeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { openRegularFile, readExactly } from './files.js';
import { CheckpointError } from './safetensors.js';

/**
 * The largest JSON file read, checked before reading: tokenizer.json holds the whole vocabulary
 * and merge list (Gemma 3's 262,144 tokens take 33 MB), so it may be 64 MiB; config, index and
 * the other small files 16 MiB (an index of a 400B-parameter model is well under 1 MB).
 */
export const MAX_JSON_BYTES: Readonly<Record<string, number>> = { 'tokenizer.json': 64 * 2 ** 20 };
export const MAX_OTHER_JSON_BYTES = 16 * 2 ** 20;

/** Where JSON.parse stopped, as "line L, column C", when its message says (never the text around it). */
function parsePosition(error: unknown, text: string): string {
  const at = /at position (\d+)/.exec(error instanceof Error ? error.message : '');
  if (!at) return '';
  const before = text.slice(0, Number(at[1]));
  const line = before.split('\n').length;
  return ` at line ${line}, column ${before.length - before.lastIndexOf('\n')}`;
}

/**
 * A JSON object file of the checkpoint folder; `null` when it is optional and absent. Errors
 * name the file and what is wrong, never its contents: `config.json` may be a link to any file.
 */
export function readJsonFile(dir: string, name: string, required: true): Record<string, unknown>;
export function readJsonFile(dir: string, name: string, required: false): Record<string, unknown> | null;
export function readJsonFile(dir: string, name: string, required: boolean): Record<string, unknown> | null {
  const file = join(dir, name);
  if (!existsSync(file)) {
    if (required) throw new CheckpointError(`${name} not found in ${dir}`);
    return null;
  }
  const { fd, size } = openRegularFile(file);
  let text: string;
  try {
    const max = MAX_JSON_BYTES[name] ?? MAX_OTHER_JSON_BYTES;
    if (size > max) throw new CheckpointError(`${name} is ${size} bytes, over the ${max}-byte limit for it (${file})`);
    text = readExactly(fd, file, size, 0).toString('utf8');
  } finally {
    closeSync(fd);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // JSON.parse's own message quotes the text around the error: not passed on.
    throw new CheckpointError(`${name} is not valid JSON${parsePosition(error, text)} (${file})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CheckpointError(`${name} is not a JSON object (${file})`);
  return parsed as Record<string, unknown>;
}
