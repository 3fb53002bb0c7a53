/**
 * Runs `fire` at most once per `delayMs` however often it is requested: the tokens of a streamed
 * answer become one refresh of the answer view per interval instead of one edit per token (which
 * took 30 s to show an answer the model had finished in under 1 s).
 */
export class Coalescer {
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly fire: () => void,
    private readonly delayMs = 75,
  ) {}

  /** Fires once `delayMs` after the first request since the last firing. */
  request(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.fire();
    }, this.delayMs);
  }

  /** Fires now (the answer is complete), dropping the pending timer. */
  flush(): void {
    this.dispose();
    this.fire();
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
