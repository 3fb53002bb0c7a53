/**
 * A seeded synthetic evaluation set, never used for training: images of coloured shapes with a
 * digit (rendered with sharp from SVG), questions about image k of several, a follow-up about an
 * earlier image, and a key lookup in a long generated source file. Each item has its expected
 * answer (for a trained model's accuracy) and is also scored by agreement with the full cache.
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { mulberry32 } from '../../sidecar/src/kv/index.js';
import type { LaterTurnKind } from './laterTurns.js';

export type Kind = 'multi-image' | 'follow-up' | 'file-lookup';

export interface EvalTurn {
  text: string;
  images: Uint8Array[];
  files: { name: string; text: string }[];
  expected: string;
  /** false: a turn that only builds the history (its answer is not scored); default true. */
  scored?: boolean;
}

export interface EvalItem {
  id: string;
  /** A synthetic kind, or `milebench:<subset>` for items loaded from MileBench JSON. */
  kind: Kind | LaterTurnKind | `milebench:${string}`;
  turns: EvalTurn[];
  /** Tokens of the item's file, where the item's kind is measured by file length. */
  fileTokens?: number;
}

/** Setting names of the lookup files (also used by tools/model/train/train_vlm.py's training data). */
const LOOKUP_KEYS = JSON.parse(readFileSync(new URL('./lookup-keys.json', import.meta.url), 'utf8')) as readonly string[];

export function shuffled<T>(xs: readonly T[], random: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export const COLOURS = { red: '#d02020', green: '#20a040', blue: '#2050d0', yellow: '#e0c020', purple: '#8030b0' } as const;
export const SHAPES = ['circle', 'square', 'triangle'] as const;

export async function picture(colour: keyof typeof COLOURS, shape: (typeof SHAPES)[number], digit: number): Promise<Uint8Array> {
  const fill = COLOURS[colour];
  const body =
    shape === 'circle' ? `<circle cx="32" cy="32" r="24" fill="${fill}"/>` : shape === 'square' ? `<rect x="10" y="10" width="44" height="44" fill="${fill}"/>` : `<polygon points="32,6 58,56 6,56" fill="${fill}"/>`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="white"/>${body}<text x="32" y="40" font-size="20" text-anchor="middle" fill="black">${digit}</text></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

export async function evalSet(count: number, seed = 7): Promise<EvalItem[]> {
  const random = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const colours = Object.keys(COLOURS) as (keyof typeof COLOURS)[];
  const items: EvalItem[] = [];
  for (let i = 0; i < count; i++) {
    const kind = (['multi-image', 'follow-up', 'file-lookup'] as const)[i % 3];
    if (kind === 'file-lookup') {
      const names = shuffled(LOOKUP_KEYS, random).slice(0, 60);
      const keys = names.map((key) => ({ key, value: Math.floor(random() * 10000) }));
      const target = pick(keys);
      const text = keys.map(({ key, value }) => `${key} = ${value}`).join('\n');
      items.push({ id: `${kind}-${i}`, kind, turns: [{ text: `What is the value of \`${target.key}\`?`, images: [], files: [{ name: 'settings.py', text }], expected: String(target.value) }] });
      continue;
    }
    const n = 2 + Math.floor(random() * 3);
    const specs = Array.from({ length: n }, () => ({ colour: pick(colours), shape: pick(SHAPES), digit: Math.floor(random() * 10) }));
    const images = await Promise.all(specs.map((s) => picture(s.colour, s.shape, s.digit)));
    const k = Math.floor(random() * n);
    const first: EvalTurn = { text: `What colour is the shape in image ${k + 1}?`, images, files: [], expected: specs[k].colour };
    if (kind === 'multi-image') {
      items.push({ id: `${kind}-${i}`, kind, turns: [first] });
    } else {
      const j = Math.floor(random() * n);
      items.push({ id: `${kind}-${i}`, kind, turns: [first, { text: `And which digit is written in image ${j + 1}?`, images: [], files: [], expected: String(specs[j].digit) }] });
    }
  }
  return items;
}
