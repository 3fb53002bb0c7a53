/**
 * Reading progress of one turn: the tokens run through the decoder so far out of all the turn must
 * read (a rebuild's replay included). Reported at the start, then once a step's worth of tokens
 * (a prefill chunk) has been read or `maxQuietMs` has passed since the last report (a replay's
 * one-token decode steps), and at the end: often enough to watch, seldom enough not to flood.
 */
export class ReadingProgress {
  private read = 0;
  private reported = -1;
  private reportedAt = 0;

  constructor(
    readonly total: number,
    private readonly step: number,
    private readonly report: (tokensRead: number, tokensTotal: number) => void,
    private readonly maxQuietMs = 500,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Reports that nothing is read yet (the turn's reading begins). */
  start(): void {
    this.emit();
  }

  /** Counts `tokens` more as read, reporting when the rule above says so. */
  advance(tokens: number): void {
    this.read += tokens;
    if (this.read - this.reported >= this.step || this.read >= this.total || this.now() - this.reportedAt >= this.maxQuietMs) this.emit();
  }

  private emit(): void {
    if (this.read === this.reported) return;
    this.reported = this.read;
    this.reportedAt = this.now();
    this.report(this.read, this.total);
  }
}
