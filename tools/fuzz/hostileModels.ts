/**
 * Hostile model folders, each a copy of a tiny checkpoint with one thing broken the way a probe
 * broke it: absurd config sizes, safetensors headers whose tensors overlap, run past the end of
 * the file or declare 2^40 elements, a config.json that is a link to a secret or to /dev/zero, a
 * FIFO where the weights should be, a tokenizer.json too large to read. Loading each must fail
 * at once with a clear error that quotes no file contents.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

type Header = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;

/** A safetensors file from a header object (serialised as given) and the data section. */
export function writeSafetensors(file: string, header: Header | string, data: Buffer = Buffer.alloc(0)): void {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(text.length));
  writeFileSync(file, Buffer.concat([length, text, data]));
}

/** The header and data section of a safetensors file. */
export function readSafetensors(file: string): { header: Header; data: Buffer } {
  const bytes = readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Header, data: bytes.subarray(8 + length) };
}

function editJson(file: string, edit: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(json);
  writeFileSync(file, JSON.stringify(json));
}

const textConfig = (dir: string, edit: (t: Record<string, unknown>) => void) => editJson(join(dir, 'config.json'), (c) => edit(c.text_config as Record<string, unknown>));

/** Text that must never appear in an error message. */
export const SECRET = 'hunter2';

export interface HostileModel {
  name: string;
  /** Breaks a fresh copy of the tiny checkpoint in `dir`. */
  breakIt: (dir: string) => void;
  /** What the load error must say. */
  error: RegExp;
  /** Needs POSIX special files (FIFOs, /dev/zero). */
  posixOnly?: boolean;
}

export const HOSTILE_MODELS: HostileModel[] = [
  { name: 'head_dim 1e9', breakIt: (d) => textConfig(d, (t) => (t.head_dim = 1e9)), error: /config\.json: .*head_dim/s },
  { name: 'hidden_size 1e12', breakIt: (d) => textConfig(d, (t) => (t.hidden_size = 1e12)), error: /config\.json: .*hidden_size/s },
  { name: 'max_position_embeddings 2^40', breakIt: (d) => textConfig(d, (t) => (t.max_position_embeddings = 2 ** 40)), error: /config\.json: .*max_position_embeddings/s },
  { name: 'vocab_size 4000000 over tiny weights', breakIt: (d) => textConfig(d, (t) => (t.vocab_size = 4_000_000)), error: /config\.json implies at least \d+ parameters/ },
  {
    name: 'every tensor at the same bytes',
    breakIt: (d) => {
      const file = join(d, 'model.safetensors');
      const { header } = readSafetensors(file);
      const tensors = Object.entries(header)
        .filter(([name]) => name !== '__metadata__')
        .map(([, entry]) => entry);
      const bytes = Math.max(...tensors.map((t) => t.data_offsets[1] - t.data_offsets[0]));
      // Every tensor starts at the first byte: the file would load as many times its size.
      for (const entry of tensors) entry.data_offsets = [0, entry.data_offsets[1] - entry.data_offsets[0]];
      writeSafetensors(file, header, Buffer.alloc(bytes));
    },
    error: /model\.safetensors: corrupt header: tensor ".+" overlaps tensor/,
  },
  {
    name: 'offsets past the end of the file',
    breakIt: (d) => {
      const file = join(d, 'model.safetensors');
      const { header, data } = readSafetensors(file);
      writeSafetensors(file, header, data.subarray(0, data.length - 4096));
    },
    error: /model\.safetensors: truncated: tensor ".+" ends at byte \d+/,
  },
  {
    name: 'a tensor of 2^40 elements',
    breakIt: (d) => {
      const file = join(d, 'model.safetensors');
      const { header, data } = readSafetensors(file);
      header['language_model.model.norm.weight'] = { dtype: 'F32', shape: [2 ** 20, 2 ** 20], data_offsets: [data.length, data.length + 2 ** 42] };
      writeSafetensors(file, header, data);
    },
    error: /model\.safetensors: truncated: tensor "language_model\.model\.norm\.weight" ends at byte \d+/,
  },
  {
    name: 'a header length of 2^60',
    breakIt: (d) => {
      const file = join(d, 'model.safetensors');
      const bytes = readFileSync(file);
      bytes.writeBigUInt64LE(2n ** 60n, 0);
      writeFileSync(file, bytes);
    },
    error: /model\.safetensors: corrupt header: declares \d+ header bytes/,
  },
  { name: 'a header that is not JSON', breakIt: (d) => writeSafetensors(join(d, 'model.safetensors'), `{${SECRET}`, Buffer.alloc(16)), error: /model\.safetensors: corrupt header: not JSON/ },
  {
    name: 'duplicate tensor names',
    breakIt: (d) => {
      const file = join(d, 'model.safetensors');
      const { header, data } = readSafetensors(file);
      const name = Object.keys(header).find((n) => n !== '__metadata__') ?? '';
      // The entry again, in front: JSON.parse would keep the last one silently.
      writeSafetensors(file, `{${JSON.stringify(name)}:${JSON.stringify(header[name])},${JSON.stringify(header).slice(1)}`, data);
    },
    error: /model\.safetensors: corrupt header: tensor ".+" is named twice/,
  },
  {
    name: 'config.json linked to a secret',
    breakIt: (d) => {
      writeFileSync(join(d, 'secret.txt'), `${SECRET}\nmore secrets\n`);
      rmSync(join(d, 'config.json'));
      symlinkSync(join(d, 'secret.txt'), join(d, 'config.json'));
    },
    error: /config\.json is not valid JSON/,
  },
  {
    name: 'config.json linked to /dev/zero',
    breakIt: (d) => {
      rmSync(join(d, 'config.json'));
      symlinkSync('/dev/zero', join(d, 'config.json'));
    },
    error: /config\.json: .* is not a regular file/,
    posixOnly: true,
  },
  {
    name: 'model.safetensors is a FIFO',
    breakIt: (d) => {
      rmSync(join(d, 'model.safetensors'));
      execFileSync('mkfifo', [join(d, 'model.safetensors')]);
    },
    error: /model\.safetensors: .* is not a regular file/,
    posixOnly: true,
  },
  // A sparse file: no disk is used, but it reads as 65 MiB of zeros.
  { name: 'tokenizer.json of 65 MiB', breakIt: (d) => truncateSync(join(d, 'tokenizer.json'), 65 * 2 ** 20), error: /tokenizer\.json is \d+ bytes, over the \d+-byte limit/ },
  {
    name: 'an index naming a number as a file',
    breakIt: (d) => writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'lm_head.weight': 7 } })),
    error: /weight_map values must be file names/,
  },
];

/** The hostile models this platform can build. */
export function hostileModels(): HostileModel[] {
  return HOSTILE_MODELS.filter((m) => !m.posixOnly || process.platform !== 'win32');
}

/** Builds every hostile model under `root` (one folder each, named by index) from the checkpoint in `source`. */
export function buildHostileModels(source: string, root: string): { model: HostileModel; dir: string }[] {
  return hostileModels().map((model, i) => {
    const dir = join(root, `hostile-${i}`);
    cpSync(source, dir, { recursive: true });
    model.breakIt(dir);
    return { model, dir };
  });
}
