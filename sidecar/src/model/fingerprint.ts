/**
 * Which model a conversation's saved token ids belong to. Ids mean something only for the
 * tokenizer that made them, and the text a conversation fed only for the chat template that
 * rendered it: the fingerprint hashes the files that define both (and the config, whose special
 * token ids they use). The weights are not hashed: ids stay valid across weights that share a
 * tokenizer (a rebuild replays them on the new weights), and hashing gigabytes would slow a load.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The files of a Hugging Face checkpoint that decide what a token id means and how a chat renders. */
const IDENTITY_FILES = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'chat_template.json',
  'chat_template.jinja',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
];

/** 32 hex digits (SHA-256 of the identity files present, each with its name). */
export function modelFingerprint(dir: string): string {
  const hash = createHash('sha256');
  for (const name of IDENTITY_FILES) {
    const file = join(dir, name);
    if (!existsSync(file)) continue;
    hash.update(`${name}\u0000`);
    hash.update(readFileSync(file));
    hash.update('\u0000');
  }
  return hash.digest('hex').slice(0, 32);
}
