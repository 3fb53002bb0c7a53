/** Structured logs: one JSON object per line on stderr (stdout carries only the handshake). */
export const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

export interface Logger {
  log(level: Level, message: string, fields?: Record<string, unknown>): void;
}

export function stderrLogger(minimum: Level = 'info'): Logger {
  const order: readonly Level[] = LEVELS;
  return {
    log(level, message, fields = {}) {
      if (order.indexOf(level) < order.indexOf(minimum)) return;
      process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
    },
  };
}
