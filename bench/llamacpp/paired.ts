/**
 * The paired decode of the llama.cpp comparison: every side loaded at once, each in its own
 * process (`--serve`), taking turns at bursts of decode steps on the same prefilled length.
 *
 * Why: this VM's speed drifts by 20-30% over tens of seconds (a side's decode at 100 tokens swings
 * between 14 and 18 tokens/s from one round to the next, on both sides), so rates taken a minute
 * apart in separate processes compare phases of the machine as much as runtimes. Bursts a second
 * apart share the machine's phase; the ratio of each adjacent pair, then their median over rounds,
 * leaves the drift out. The order of the sides rotates each round, and a short pause between bursts
 * lets the last side's worker threads stop spinning before the next one runs.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { ServeCommand } from './measure.js';

/** One timed burst: `side`'s milliseconds per decode step at `length`, full cache or (ours) LOOK-M 20%. */
export interface PairedBurst {
  length: number;
  phase: 'full' | 'lookm';
  round: number;
  side: string;
  msPerStep: number;
}

export interface PairedOptions {
  lengths: number[];
  rounds: number;
  steps: number;
  /** Milliseconds between bursts. */
  pauseMs: number;
}

/** How to start a side's process, `--serve` among its arguments. */
export interface SideCommand {
  name: string;
  command: string;
  args: string[];
  cwd: string;
}

/** A side process answering `ServeCommand`s, one reply line each. */
class ServedSide {
  private constructor(
    readonly name: string,
    private readonly child: ChildProcessByStdio<Writable, Readable, null>,
    private readonly replies: AsyncIterator<string, undefined>,
  ) {}

  static async start({ name, command, args, cwd }: SideCommand): Promise<ServedSide> {
    const child = spawn(command, args, { cwd, stdio: ['pipe', 'pipe', 'inherit'] });
    const side = new ServedSide(name, child, createInterface({ input: child.stdout })[Symbol.asyncIterator]() as AsyncIterator<string, undefined>);
    await side.next('ready');
    return side;
  }

  private async next(event: string): Promise<Record<string, unknown>> {
    for (;;) {
      const reply = await this.replies.next();
      if (reply.done) throw new Error(`${this.name} exited before its ${event} line (its stderr is above)`);
      const record = JSON.parse(reply.value) as Record<string, unknown>;
      if (record.event === event) return record;
    }
  }

  async request(command: ServeCommand): Promise<Record<string, unknown>> {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    return this.next('done');
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${this.name} exited with ${code}`))));
      this.child.stdin.end();
    });
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Loads every side, then per length:
 * each prefills, one untimed burst each, `rounds` rounds of one burst each on the full cache; then
 * every side compresses (LOOK-M 20%; llama.cpp keeps its full cache) and as many rounds again.
 */
export async function pairedDecode(sides: SideCommand[], options: PairedOptions, log: (line: string) => void): Promise<PairedBurst[]> {
  const served: ServedSide[] = [];
  try {
    for (const side of sides) served.push(await ServedSide.start(side));
    const bursts: PairedBurst[] = [];
    for (const length of options.lengths) {
      for (const side of served) await side.request({ op: 'prefill', length });
      for (const phase of ['full', 'lookm'] as const) {
        if (phase === 'lookm') for (const side of served) await side.request({ op: 'compress' });
        log(`paired decode at ${length} tokens, ${phase === 'full' ? 'full cache' : 'ours on LOOK-M 20%'}: ${options.rounds} rounds of ${options.steps} steps a side`);
        for (const side of served) await side.request({ op: 'decode', steps: 1 }); // untimed: the phase's first allocations
        for (let round = 1; round <= options.rounds; round++) {
          const order = served.map((_, i) => served[(i + round) % served.length]);
          for (const side of order) {
            await pause(options.pauseMs);
            const { msPerStep } = await side.request({ op: 'decode', steps: options.steps });
            bursts.push({ length, phase, round, side: side.name, msPerStep: Number(msPerStep) });
          }
        }
      }
      for (const side of served) await side.request({ op: 'release' });
    }
    return bursts;
  } finally {
    await Promise.allSettled(served.map((side) => side.close()));
  }
}
