/** An image the user gave that cannot be used, and the error every image step throws for it. */

/** An image that cannot be decoded or is too large: the user's input, not a fault of ours. */
export class ImageError extends RangeError {
  override name = 'ImageError';
}

export function imageError(error: unknown, maxPixels: number): never {
  throw new ImageError(`the image cannot be used (PNG, JPEG, WebP, GIF or TIFF up to ${maxPixels / 1e6} megapixels): ${error instanceof Error ? error.message : String(error)}`);
}
