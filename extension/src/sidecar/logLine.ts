/**
 * The sidecar's stderr lines (one JSON object each: time, level, message, fields) as the LOOK-M
 * output channel shows them: at their own level, without a second timestamp (the channel adds its
 * own), fields as `key=value`. Pure; anything that is not such an object passes through as info.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS = new Set<string>(['debug', 'info', 'warn', 'error']);

function showValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(1);
  return JSON.stringify(value);
}

export function readableLogLine(line: string): { level: LogLevel; text: string } {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return { level: 'info', text: line };
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return { level: 'info', text: line };
  const { level, message, ...fields } = entry as Record<string, unknown>;
  delete fields.time;
  if (typeof message !== 'string' || typeof level !== 'string' || !LEVELS.has(level)) return { level: 'info', text: line };
  // A stack trace reads best on lines of its own, after the rest.
  const stacks = Object.entries(fields).filter(([, v]) => typeof v === 'string' && v.includes('\n'));
  const inline = Object.entries(fields).filter(([, v]) => !(typeof v === 'string' && v.includes('\n')));
  const text = [message, ...inline.map(([k, v]) => `${k}=${showValue(v)}`)].join(' ') + stacks.map(([k, v]) => `\n${k}: ${String(v)}`).join('');
  return { level: level as LogLevel, text };
}
