/**
 * Small files that declare huge or many images, one per format sharp can read, built byte by
 * byte so that no encoder gets to refuse them first. Each must be refused before it is decoded:
 * by its declared size, its format, or (multi-frame formats) by decoding only its first frame.
 */
import { crc32 } from 'node:zlib';

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A PNG whose header declares `width` x `height` RGB pixels, with a few bytes of image data. */
export function pngDeclaring(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, adaptive filtering, no interlace
  const idat = Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]); // an empty zlib stream
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', idat), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A baseline JPEG whose frame header declares `width` x `height` (at most 65535 each). */
export function jpegDeclaring(width: number, height: number): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x0b, 0x08, 0, 0, 0, 0, 0x01, 0x01, 0x11, 0x00]);
  sof.writeUInt16BE(height, 5);
  sof.writeUInt16BE(width, 7);
  const dqt = Buffer.concat([Buffer.from([0xff, 0xdb, 0x00, 0x43, 0x00]), Buffer.alloc(64, 1)]);
  const sos = Buffer.from([0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), dqt, sof, sos, Buffer.alloc(16), Buffer.from([0xff, 0xd9])]);
}

/** A lossless WebP whose header declares `width` x `height` (at most 16384 each). */
export function webpDeclaring(width: number, height: number): Buffer {
  const vp8l = Buffer.alloc(8 + 10);
  vp8l.write('VP8L', 0, 'latin1');
  vp8l.writeUInt32LE(10, 4);
  vp8l[8] = 0x2f; // the VP8L signature, then 14 bits each of width - 1 and height - 1
  vp8l.writeUInt32LE(((width - 1) | ((height - 1) << 14)) >>> 0, 9);
  const riff = Buffer.alloc(12);
  riff.write('RIFF', 0, 'latin1');
  riff.writeUInt32LE(4 + vp8l.length, 4);
  riff.write('WEBP', 8, 'latin1');
  return Buffer.concat([riff, vp8l]);
}

/**
 * A GIF of `frames` frames of `frameWidth` x `frameHeight` on a `width` x `height` screen, each
 * frame's data the smallest valid LZW stream (one pixel; the decoder fills the rest).
 */
export function gifWithFrames(frames: number, width = 1, height = 1, frameWidth = width, frameHeight = height): Buffer {
  const header = Buffer.alloc(13 + 6);
  header.write('GIF89a', 0, 'latin1');
  header.writeUInt16LE(width, 6);
  header.writeUInt16LE(height, 8);
  header[10] = 0x80; // a global colour table of 2 entries
  header.set([0, 0, 0, 0, 0xff, 0xff, 0xff], 12);
  const frame = Buffer.alloc(8 + 10 + 5);
  frame.set([0x21, 0xf9, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00], 0); // graphic control: 1/100 s
  frame[8] = 0x2c;
  frame.writeUInt16LE(frameWidth, 13);
  frame.writeUInt16LE(frameHeight, 15);
  frame.set([0x02, 0x02, 0x44, 0x01, 0x00], 18);
  return Buffer.concat([header, Buffer.alloc(frames * frame.length).fill(frame), Buffer.from([0x3b])]);
}

/** A little-endian TIFF of `pages` 8-bit grey pages, the first `width` x `height`, the rest 1 x 1. */
export function tiffWithPages(pages: number, width = 1, height = 1): Buffer {
  const entries = 9;
  const ifdBytes = 2 + entries * 12 + 4;
  const pixelAt = 8; // every page's one strip is the same byte
  const out = Buffer.alloc(8 + 8 + pages * ifdBytes);
  out.write('II', 0, 'latin1');
  out.writeUInt16LE(42, 2);
  out.writeUInt32LE(16, 4);
  out[pixelAt] = 0x80;
  for (let p = 0; p < pages; p++) {
    const at = 16 + p * ifdBytes;
    out.writeUInt16LE(entries, at);
    const tags: [number, number, number][] = [
      [256, 4, p === 0 ? width : 1], // ImageWidth (LONG)
      [257, 4, p === 0 ? height : 1], // ImageLength
      [258, 3, 8], // BitsPerSample
      [259, 3, 1], // no compression
      [262, 3, 1], // BlackIsZero
      [273, 4, pixelAt], // StripOffsets
      [277, 3, 1], // SamplesPerPixel
      [278, 4, p === 0 ? height : 1], // RowsPerStrip
      [279, 4, 1], // StripByteCounts
    ];
    tags.forEach(([tag, type, value], i) => {
      const e = at + 2 + i * 12;
      out.writeUInt16LE(tag, e);
      out.writeUInt16LE(type, e + 2);
      out.writeUInt32LE(1, e + 4);
      if (type === 3) out.writeUInt16LE(value, e + 8);
      else out.writeUInt32LE(value, e + 8);
    });
    out.writeUInt32LE(p + 1 < pages ? at + ifdBytes : 0, at + 2 + entries * 12);
  }
  return out;
}

/** An SVG whose `<use>` elements reference each other `fanOut ** levels` times when rendered. */
export function svgUseBomb(levels = 8, fanOut = 10): Buffer {
  let defs = '<rect id="l0" width="1" height="1"/>';
  for (let i = 1; i <= levels; i++) defs += `<g id="l${i}">${`<use href="#l${i - 1}"/>`.repeat(fanOut)}</g>`;
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><defs>${defs}</defs><use href="#l${levels}"/></svg>`);
}

/** An SVG that would draw a local file if rendered. */
export function svgReadingFile(path = '/etc/passwd'): Buffer {
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64"><image href="file://${path}" xlink:href="file://${path}" width="64" height="64"/></svg>`);
}

/** The XML "billion laughs": nested entities that expand to gigabytes of text. */
export function svgEntityBomb(levels = 10): Buffer {
  let entities = '<!ENTITY e0 "lol">';
  for (let i = 1; i <= levels; i++) entities += `<!ENTITY e${i} "${`&e${i - 1};`.repeat(10)}">`;
  return Buffer.from(`<?xml version="1.0"?><!DOCTYPE svg [${entities}]><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&e${levels};</text></svg>`);
}

/**
 * Every bomb sharp must never decode, with a name. (A GIF or TIFF of many small frames is not
 * among them: its first frame is a fine image, and only that one is decoded.)
 */
export function imageBombs(): { name: string; bytes: Buffer }[] {
  return [
    { name: 'PNG declaring 100000 x 100000', bytes: pngDeclaring(100_000, 100_000) },
    { name: 'JPEG declaring 65500 x 65500', bytes: jpegDeclaring(65_500, 65_500) },
    { name: 'WebP declaring 16000 x 16000', bytes: webpDeclaring(16_000, 16_000) },
    { name: 'GIF with a 1 x 1 screen and 100000 frames of 65535 x 65535', bytes: gifWithFrames(100_000, 1, 1, 65_535, 65_535) },
    { name: 'TIFF declaring 100000 x 100000', bytes: tiffWithPages(1, 100_000, 100_000) },
    { name: 'TIFF of 20000 pages, the first 100000 x 100000', bytes: tiffWithPages(20_000, 100_000, 100_000) },
    { name: 'SVG <use> bomb', bytes: svgUseBomb() },
    { name: 'SVG reading /etc/passwd', bytes: svgReadingFile() },
    { name: 'SVG entity bomb', bytes: svgEntityBomb() },
  ];
}
