#!/usr/bin/env node
// `npm run icon`: draws LOOK-M's icon, an eye over a grid of KV-cache cells (kept text cells in
// blue, kept image cells in orange, merged ones in green, evicted ones dim), and writes
//   media/icon.svg  the vector, used by the chat participant and the cache view's tab;
//   media/icon.png  256x256, the extension's icon (the manifest's "icon": vsce takes no SVG).
// Both are committed; rerun this after changing the drawing.
import { Buffer } from 'node:buffer';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

const root = join(import.meta.dirname, '..');
const SIZE = 256;

// The cache: 6x6 cells, by row. t: kept text, i: kept image, m: merged into a kept cell, .: evicted.
const GRID = ['tt.i.t', 'i.m.it', '.ii.m.', 't.mi.i', 'i.t..t', 'tt.imt'];
const FILL = { t: '#4e9af1', i: '#f5a623', m: '#7ed321', '.': '#2f3d5c' };
const CELL = 13;
const GAP = 4;
const ORIGIN = (128 - (GRID.length * CELL + (GRID.length - 1) * GAP)) / 2;

const cells = GRID.flatMap((row, y) =>
  [...row].map((kind, x) => `<rect x="${ORIGIN + x * (CELL + GAP)}" y="${ORIGIN + y * (CELL + GAP)}" width="${CELL}" height="${CELL}" rx="2.5" fill="${FILL[kind]}"/>`),
);

// The eye: an almond outline with a dark halo so it reads over the cells, an orange iris, a pupil.
const almond = 'M12 64 Q64 10 116 64 Q64 118 12 64 Z';
const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 128 128" width="${SIZE}" height="${SIZE}">
  <defs>
    <linearGradient id="bg" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#1d3557"/>
      <stop offset="1" stop-color="#101a2e"/>
    </linearGradient>
    <clipPath id="inside"><path d="${almond}"/></clipPath>
  </defs>
  <rect width="128" height="128" rx="26" fill="url(#bg)"/>
  <g opacity="0.55">${cells.join('')}</g>
  <g clip-path="url(#inside)">${cells.join('')}</g>
  <path d="${almond}" fill="none" stroke="#101a2e" stroke-width="13" stroke-linejoin="round"/>
  <path d="${almond}" fill="none" stroke="#ffffff" stroke-width="6" stroke-linejoin="round"/>
  <circle cx="64" cy="64" r="19" fill="#101a2e"/>
  <circle cx="64" cy="64" r="16" fill="#f5a623"/>
  <circle cx="64" cy="64" r="7.5" fill="#101a2e"/>
  <circle cx="58.5" cy="58.5" r="3.5" fill="#ffffff"/>
</svg>
`;

writeFileSync(join(root, 'media/icon.svg'), svg);
await sharp(Buffer.from(svg)).resize(SIZE, SIZE).png({ compressionLevel: 9 }).toFile(join(root, 'media/icon.png'));
console.log(`media/icon.svg, media/icon.png (${SIZE}x${SIZE})`);
