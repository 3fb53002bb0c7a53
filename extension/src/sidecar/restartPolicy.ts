/**
 * When to restart a crashed sidecar (pure; no VS Code import). A sidecar that crashes after it
 * was healthy (its model loaded) is restarted at once; one that keeps crashing before it gets
 * healthy waits twice as long each time and is given up after a few tries, so a broken model or
 * install never turns into a hot restart loop.
 */
export interface RestartPolicyOptions {
  /** Delay before the first restart after a healthy run. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Crashes in a row without a healthy run before giving up. */
  maxConsecutiveCrashes: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicyOptions = { baseDelayMs: 250, maxDelayMs: 8_000, maxConsecutiveCrashes: 5 };

export class RestartPolicy {
  private consecutive = 0;
  /** Crashes since the supervisor started (for the log and the tests). */
  crashes = 0;

  constructor(private readonly options: RestartPolicyOptions = DEFAULT_RESTART_POLICY) {}

  /** The sidecar died: how long to wait before restarting it, or null to give up. */
  crashed(): number | null {
    this.crashes++;
    this.consecutive++;
    if (this.consecutive > this.options.maxConsecutiveCrashes) return null;
    return Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (this.consecutive - 1));
  }

  /** The (re)started sidecar loaded its model: the next crash starts the backoff over. */
  healthy(): void {
    this.consecutive = 0;
  }
}
