/** Clipboard text that carries an image: a `data:image/...;base64,` URL (pure; no VS Code import). */
const DATA_URL = /^data:image\/(png|jpe?g|webp|gif|tiff?);base64,([A-Za-z0-9+/=\s]+)$/i;

export function imageFromDataUrl(text: string): Uint8Array | null {
  const match = DATA_URL.exec(text.trim());
  if (!match) return null;
  const bytes = Buffer.from(match[2].replace(/\s+/g, ''), 'base64');
  return bytes.length > 0 ? new Uint8Array(bytes) : null;
}
