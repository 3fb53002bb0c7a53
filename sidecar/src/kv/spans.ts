/**
 * Recall spans: the runs of tokens the cold tier recalls as a unit (a line of a file, a block of
 * image patches). A span is a contiguous run of at most `span` tokens of one message (each `feed`
 * starts a new one) and one modality, ended early after a token that ends a line. Span ids are
 * numbered in feeding order, by position.
 */
export class SpanIndex {
  private ids = new Int32Array(256);
  private fedCount = 0;
  private nextId = 0;
  /** Tokens in the open span (0: the next token opens one). */
  private run = 0;

  constructor(readonly span: number) {
    if (!(Number.isInteger(span) && span >= 1)) throw new RangeError(`recall span must be a positive integer (tokens), got ${span}`);
  }

  /** Positions with a span id: every token fed. */
  get length(): number {
    return this.fedCount;
  }

  /** Spans opened so far. */
  get spans(): number {
    return this.nextId;
  }

  /**
   * The tokens of one message, in position order: `modality[i]` per token (TEXT or an image index),
   * `lineEnds[i]` true where the token ends a line (its span closes after it).
   */
  feed(modality: ArrayLike<number>, lineEnds?: ArrayLike<boolean>): void {
    const n = modality.length;
    if (this.fedCount + n > this.ids.length) {
      const grown = new Int32Array(Math.max(this.fedCount + n, this.ids.length * 2));
      grown.set(this.ids.subarray(0, this.fedCount));
      this.ids = grown;
    }
    this.run = 0;
    for (let i = 0; i < n; i++) {
      if (this.run > 0 && (this.run >= this.span || modality[i] !== modality[i - 1])) this.run = 0;
      if (this.run === 0) this.nextId++;
      this.ids[this.fedCount++] = this.nextId - 1;
      this.run++;
      if (lineEnds?.[i]) this.run = 0;
    }
    this.run = 0;
  }

  /** The span of the token at `position`. */
  of(position: number): number {
    if (!(position >= 0 && position < this.fedCount)) throw new RangeError(`no span for position ${position}: ${this.fedCount} tokens were fed`);
    return this.ids[position];
  }

  clone(): SpanIndex {
    const copy = new SpanIndex(this.span);
    copy.ids = this.ids.slice();
    copy.fedCount = this.fedCount;
    copy.nextId = this.nextId;
    return copy;
  }
}
