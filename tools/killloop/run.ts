/**
 * Crash safety on a real sidecar: a scripted set of conversations (pictures, files, both) runs on
 * a state directory while the sidecar is SIGKILLed at seeded random moments (in a prefill, in the
 * middle of an answer, after its last token while the turn is being persisted, after the answer)
 * and restarted on the same directory, round after round. Every few rounds one session file is
 * truncated or overwritten with garbage while the sidecar is down.
 *
 * After each restart: every turn whose answer the client received is there, unchanged; an
 * interrupted turn is either absent or complete; every session but a corrupted one is back (and
 * no deleted one), the corrupted one alone is gone, with a warn line naming its file. Every answer,
 * the first after a restart included, must equal the answer of the same script run without kills
 * (greedy: token ids, text and tokens seen).
 */
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ResponseError } from 'vscode-jsonrpc/node';
import { mulberry32 } from '../../sidecar/src/kv/index.js';
import { ErrorCode, Methods, type ChatResult, type POLICY_NAMES, type SessionSettings, type TurnStats } from '../../sidecar/src/protocol/index.js';
import { loadScripts, type Script, type TurnInput } from './script.js';
import { chooseEntry, killNow, startSidecar, type RunningSidecar, type SidecarEntry } from './sidecar.js';

export type PolicyName = (typeof POLICY_NAMES)[number];
/** Where the turn in flight was, as the client saw it, when it sent the signal. */
export type Phase = 'prefill' | 'decode' | 'persist' | 'after';
export const PHASES: readonly Phase[] = ['prefill', 'decode', 'persist', 'after'];

export interface KillLoopOptions {
  rounds: number;
  seed: number;
  policy: PolicyName;
  model: string;
  maxNewTokens?: number;
  /** Attach only the first this many lines of each file (models with a short context). */
  fileLines?: number;
  /** Corrupt one session file after every this many kills (0: never). */
  corruptEvery?: number;
  log?: (line: string) => void;
}

export interface KillLoopReport {
  rounds: number;
  seed: number;
  policy: PolicyName;
  model: string;
  entry: string;
  kills: number;
  killsByPhase: Record<Phase, number>;
  turnsCompleted: number;
  turnsLost: number;
  /** Interrupted turns found after the restart (complete) or not found. */
  interruptedPersisted: number;
  interruptedAbsent: number;
  /** Persisted turns that differ from the turn the client received, or an incomplete interrupted one. */
  turnsAltered: number;
  answersCompared: number;
  answersMismatched: number;
  /** The first answer of a session after a restart (rebuilt from its transcript). */
  resumedAnswersCompared: number;
  resumedAnswersMismatched: number;
  sessionsResumed: number;
  sessionsMissing: number;
  deletedReturned: number;
  corruptions: number;
  corruptionsIsolated: number;
  /** Turns of the corrupted sessions: lost by design, not counted in turnsLost. */
  turnsLostToCorruption: number;
  restartMs: { p50: number; max: number };
  /** The sidecar's, sampled before each kill and after the last answers. */
  rssMiB: { first: number; p50: number; max: number; last: number };
  /** `*.tmp` files left in the state directory by kills in the middle of a write. */
  strayTempFiles: number;
  /** Unexpected errors: a failed turn, a sidecar that exited by itself, a restart that failed. */
  errors: number;
  /** Restarts after which the sidecar held another number of sessions than expected. */
  sessionCountWrong: number;
  /** First turns after a restart not rebuilt from the transcript. */
  notRebuilt: number;
  failures: string[];
}

interface ReferenceTurn {
  text: string;
  tokenIds: number[];
  tokensSeen: number;
  generatedTokens: number;
  /** Client-side, from the request to the first token. */
  firstTokenMs: number;
}

/** One conversation of the loop: a script replayed in a session, a new session each time it ends. */
interface Slot {
  script: Script;
  reference: ReferenceTurn[];
  sessionId: string;
  /** The stats of each turn whose answer arrived, in order (the session's turns as the client knows them). */
  received: TurnStats[];
  /** An answer differed from the reference: later ones are compared but no longer expected equal in shape. */
  diverged: boolean;
  /** Restarted since its last answer: the next one is rebuilt from the transcript. */
  resumed: boolean;
}

interface InFlight {
  slot: Slot;
  tokens: number;
  answered: boolean;
  phase: Phase | null;
  /** 1-based, in its script. */
  turn: number;
}

interface TurnOutcome {
  result: ChatResult | null;
  tokenIds: number[];
  error: unknown;
}

interface TurnHooks {
  onSent?: () => void;
  onToken?: (count: number) => void;
  onResult?: () => void;
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? 0;
const mib = (bytes: number) => bytes / 2 ** 20;
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** The checks, each a name and whether it held. */
export function killLoopChecks(report: KillLoopReport): [string, boolean][] {
  return [
    [`all ${report.rounds} kills happened, no turn failed, no crash`, report.kills === report.rounds && report.errors === 0],
    ['kills landed in a prefill, in a decode and after the last token', report.killsByPhase.prefill > 0 && report.killsByPhase.decode > 0 && report.killsByPhase.persist + report.killsByPhase.after > 0],
    ['no completed turn lost', report.turnsLost === 0],
    ['persisted turns unchanged, interrupted ones absent or whole', report.turnsAltered === 0],
    ['every session resumed (rebuilt from its transcript), no deleted one came back', report.sessionsMissing === 0 && report.deletedReturned === 0 && report.sessionCountWrong === 0 && report.notRebuilt === 0],
    ['every answer equals the uninterrupted run', report.answersCompared > 0 && report.answersMismatched === 0],
    ['a corrupted file loses its conversation only, with a warn line', report.corruptionsIsolated === report.corruptions],
  ];
}

/** One turn; the answer's token ids come from the `session/token` notifications. */
async function playTurn(running: RunningSidecar, sessionId: string, input: TurnInput, hooks: TurnHooks = {}): Promise<TurnOutcome> {
  const tokenIds: number[] = [];
  const listener = running.connection.onNotification(Methods.sessionToken, (token) => {
    if (token.sessionId !== sessionId) return;
    tokenIds.push(token.tokenId);
    hooks.onToken?.(tokenIds.length);
  });
  try {
    const pending = running.connection.sendRequest(Methods.sessionChat, { sessionId, ...input });
    hooks.onSent?.();
    const result = await pending;
    hooks.onResult?.();
    return { result, tokenIds, error: null };
  } catch (error) {
    return { result: null, tokenIds, error };
  } finally {
    listener.dispose();
  }
}

const isNotFound = (error: unknown) => error instanceof ResponseError && error.code === ErrorCode.SessionNotFound;

export async function runKillLoop(root: string, options: KillLoopOptions): Promise<KillLoopReport> {
  const log = options.log ?? (() => undefined);
  const random = mulberry32(options.seed);
  const entry = chooseEntry(root);
  const settings: Partial<SessionSettings> = { policy: options.policy, maxNewTokens: options.maxNewTokens ?? 16, temperature: 0 };
  const scripts = loadScripts(root, options.fileLines);
  const corruptEvery = options.corruptEvery ?? 5;
  const report: KillLoopReport = {
    rounds: options.rounds,
    seed: options.seed,
    policy: options.policy,
    model: options.model,
    entry: entry.label,
    kills: 0,
    killsByPhase: { prefill: 0, decode: 0, persist: 0, after: 0 },
    turnsCompleted: 0,
    turnsLost: 0,
    interruptedPersisted: 0,
    interruptedAbsent: 0,
    turnsAltered: 0,
    answersCompared: 0,
    answersMismatched: 0,
    resumedAnswersCompared: 0,
    resumedAnswersMismatched: 0,
    sessionsResumed: 0,
    sessionsMissing: 0,
    deletedReturned: 0,
    corruptions: 0,
    corruptionsIsolated: 0,
    turnsLostToCorruption: 0,
    restartMs: { p50: 0, max: 0 },
    rssMiB: { first: 0, p50: 0, max: 0, last: 0 },
    strayTempFiles: 0,
    errors: 0,
    sessionCountWrong: 0,
    notRebuilt: 0,
    failures: [],
  };
  const fail = (line: string) => {
    report.failures.push(line);
    log(`FAIL ${line}`);
  };

  const references = await referenceRun(root, entry, options.model, settings, scripts);
  for (const [i, script] of scripts.entries()) log(`uninterrupted ${script.name}: ${references[i].map((t) => `${JSON.stringify(t.text)} (${t.generatedTokens} tokens)`).join(', ')}`);
  const stateDir = mkdtempSync(join(tmpdir(), 'lookm-killloop-'));
  const restartMs: number[] = [];
  const rss: number[] = [];
  const deleted: string[] = [];
  let running: RunningSidecar | null = null;
  try {
    running = await startSidecar(root, entry, options.model, stateDir);
    const first = running;
    const create = async () => (await first.connection.sendRequest(Methods.sessionCreate, { settings })).sessionId;
    const slots: Slot[] = [];
    for (const [i, script] of scripts.entries()) slots.push({ script, reference: references[i], sessionId: await create(), received: [], diverged: false, resumed: false });

    /** A new session for a slot whose script ended (the old one deleted) or whose session was lost. */
    const renew = async (live: RunningSidecar, slot: Slot, deleteOld: boolean) => {
      if (deleteOld) {
        await live.connection.sendRequest(Methods.sessionDelete, { sessionId: slot.sessionId });
        deleted.push(slot.sessionId);
      }
      slot.sessionId = (await live.connection.sendRequest(Methods.sessionCreate, { settings })).sessionId;
      slot.received = [];
      slot.diverged = false;
      slot.resumed = false;
    };

    /** Checks an answer against the reference at the same point of the script. */
    const compare = (slot: Slot, outcome: TurnOutcome & { result: ChatResult }) => {
      const index = slot.received.length;
      const expected = slot.reference[index];
      const same = outcome.result.text === expected.text && isDeepStrictEqual(outcome.tokenIds, expected.tokenIds) && outcome.result.stats.tokensSeen === expected.tokensSeen;
      report.answersCompared++;
      if (slot.resumed) report.resumedAnswersCompared++;
      if (!same) {
        report.answersMismatched++;
        if (slot.resumed) report.resumedAnswersMismatched++;
        fail(`${slot.script.name} turn ${index + 1}${slot.resumed ? ' (first after a restart)' : ''}: ${JSON.stringify(outcome.result.text)} [${outcome.tokenIds.join(' ')}], ${outcome.result.stats.tokensSeen} tokens seen; uninterrupted: ${JSON.stringify(expected.text)} [${expected.tokenIds.join(' ')}], ${expected.tokensSeen}`);
        slot.diverged = true;
      }
      if (slot.resumed && index > 0 && !outcome.result.stats.rebuilt) {
        report.notRebuilt++;
        fail(`${slot.script.name} turn ${index + 1}: the first turn after a restart was not rebuilt from the transcript`);
      }
      slot.resumed = false;
      slot.received.push(outcome.result.stats);
      report.turnsCompleted++;
    };

    const nextSlot = async (live: RunningSidecar) => {
      const slot = slots[Math.floor(random() * slots.length)];
      if (slot.received.length === slot.script.turns.length) await renew(live, slot, true);
      return slot;
    };

    /** A turn that must be answered. */
    const normalTurn = async (live: RunningSidecar) => {
      const slot = await nextSlot(live);
      const outcome = await playTurn(live, slot.sessionId, slot.script.turns[slot.received.length]);
      if (!outcome.result) throw new Error(`${slot.script.name} turn ${slot.received.length + 1} failed: ${message(outcome.error)}`);
      compare(slot, { ...outcome, result: outcome.result });
    };

    /** A turn during which the sidecar is killed, at a moment of the planned phase. */
    const killTurn = async (live: RunningSidecar): Promise<InFlight> => {
      const slot = await nextSlot(live);
      const expected = slot.reference[slot.received.length];
      const planned = PHASES[Math.floor(random() * PHASES.length)];
      const delay = random();
      const atToken = 1 + Math.floor(random() * Math.max(1, expected.generatedTokens - 1));
      const inFlight: InFlight = { slot, tokens: 0, answered: false, phase: null, turn: slot.received.length + 1 };
      const kill = () => {
        if (inFlight.phase) return;
        inFlight.phase = inFlight.answered ? 'after' : inFlight.tokens === 0 ? 'prefill' : inFlight.tokens >= expected.generatedTokens ? 'persist' : 'decode';
        killNow(live);
      };
      let timer: NodeJS.Timeout | undefined;
      const outcome = await playTurn(live, slot.sessionId, slot.script.turns[slot.received.length], {
        onSent: () => {
          if (planned === 'prefill') timer = setTimeout(kill, delay * expected.firstTokenMs);
        },
        onToken: (count) => {
          inFlight.tokens = count;
          if (planned === 'prefill' || (planned === 'decode' && count >= atToken)) kill();
          // The last token: the turn is being closed and persisted now; a few random microseconds in.
          else if (planned === 'persist' && count >= expected.generatedTokens) {
            if (delay < 0.25) kill();
            else if (delay < 0.5) setImmediate(kill);
            else timer = setTimeout(kill, (delay - 0.5) * 4);
          }
        },
        onResult: () => {
          inFlight.answered = true;
          if (planned === 'after') timer = setTimeout(kill, delay * 20);
          else kill(); // answered before the planned moment came: kill right after
        },
      });
      if (outcome.result) compare(slot, { ...outcome, result: outcome.result });
      // A turn that ended on a kill ends with the connection's error; any other error is a failure.
      else if (!inFlight.phase) throw new Error(`${slot.script.name} turn ${slot.received.length + 1} failed before the kill: ${message(outcome.error)}`);
      // An answered turn: the kill is still to come (a timer set by onResult).
      while (!inFlight.phase) await new Promise((resolve) => setTimeout(resolve, 1));
      clearTimeout(timer);
      await live.sidecar.exited;
      report.kills++;
      report.killsByPhase[inFlight.phase]++;
      return inFlight;
    };

    for (let round = 1; round <= options.rounds; round++) {
      const live: RunningSidecar = running;
      let inFlight: InFlight | null = null;
      const crashed = live.sidecar.exited.then((code) => (live.killed ? null : code));
      try {
        const warm = Math.floor(random() * 3);
        for (let i = 0; i < warm; i++) await normalTurn(live);
        rss.push((await live.connection.sendRequest(Methods.serverStats)).rssBytes);
        inFlight = await killTurn(live);
      } catch (error) {
        const code = await Promise.race([crashed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
        report.errors++;
        fail(`round ${round}: ${message(error)}${code !== undefined && code !== null ? ` (the sidecar exited by itself, code ${code})` : ''}`);
        if (!live.killed) killNow(live);
        await live.sidecar.exited;
      }
      const corrupted = corruptEvery > 0 && round % corruptEvery === 0 ? corruptOne(stateDir, slots[Math.floor(random() * slots.length)], random() < 0.5 ? 'truncate' : 'garbage', random) : null;
      if (corrupted) report.corruptions++;

      const at = inFlight ? `${inFlight.slot.script.name} turn ${inFlight.turn}, ${inFlight.tokens} tokens streamed${inFlight.answered ? ', answered' : ''}` : 'no turn';
      try {
        running = await startSidecar(root, entry, options.model, stateDir);
      } catch (error) {
        // The state directory keeps the sidecar from starting: nothing more can be checked.
        running = null;
        report.errors++;
        fail(`round ${round}: the restart failed: ${message(error)}`);
        break;
      }
      restartMs.push(running.startMs);
      const lines: string[] = [];
      await verify(running, slots, inFlight, corrupted, deleted, report, fail, lines);
      for (const slot of slots) slot.resumed = slot.received.length > 0;
      if (corrupted) await renew(running, corrupted.slot, false);
      log(`round ${round}: killed in ${inFlight?.phase ?? '(no kill: the round failed)'} (${at}); restarted in ${running.startMs.toFixed(0)} ms${corrupted ? `; ${corrupted.how} ${corrupted.file}` : ''}${lines.length ? `; ${lines.join('; ')}` : ''}`);
    }

    // After the last restart: the next answer of every conversation.
    const last = running;
    if (last) {
      for (const slot of slots) {
        if (slot.received.length === slot.script.turns.length) await renew(last, slot, true);
        const outcome = await playTurn(last, slot.sessionId, slot.script.turns[slot.received.length]);
        if (outcome.result) compare(slot, { ...outcome, result: outcome.result });
        else {
          report.errors++;
          fail(`${slot.script.name}: the turn after the last restart failed: ${message(outcome.error)}`);
        }
      }
      rss.push((await last.connection.sendRequest(Methods.serverStats)).rssBytes);
    }
    const stray = ['sessions', 'images'].flatMap((dir) => readdirSync(join(stateDir, dir)).filter((name) => name.endsWith('.tmp')).map((name) => `${dir}/${name}`));
    report.strayTempFiles = stray.length;
    if (stray.length) log(`left by kills in the middle of a write: ${stray.join(', ')}`);
  } finally {
    if (running && !running.killed) killNow(running);
    rmSync(stateDir, { recursive: true, force: true });
  }
  report.restartMs = { p50: percentile(restartMs, 50), max: Math.max(0, ...restartMs) };
  report.rssMiB = { first: mib(rss[0] ?? 0), p50: mib(percentile(rss, 50)), max: mib(Math.max(0, ...rss)), last: mib(rss.at(-1) ?? 0) };
  return report;
}

/** The script run without kills, each conversation in its own session: what every answer must be. */
async function referenceRun(root: string, entry: SidecarEntry, model: string, settings: Partial<SessionSettings>, scripts: Script[]): Promise<ReferenceTurn[][]> {
  const stateDir = mkdtempSync(join(tmpdir(), 'lookm-killloop-reference-'));
  const running = await startSidecar(root, entry, model, stateDir);
  try {
    const all: ReferenceTurn[][] = [];
    for (const script of scripts) {
      const { sessionId } = await running.connection.sendRequest(Methods.sessionCreate, { settings });
      const turns: ReferenceTurn[] = [];
      for (const input of script.turns) {
        let sent = 0;
        let firstTokenMs = 0;
        const outcome = await playTurn(running, sessionId, input, {
          onSent: () => (sent = performance.now()),
          onToken: (count) => {
            if (count === 1) firstTokenMs = performance.now() - sent;
          },
        });
        if (!outcome.result) throw new Error(`the reference run failed at ${script.name} turn ${turns.length + 1}: ${message(outcome.error)}`);
        turns.push({ text: outcome.result.text, tokenIds: outcome.tokenIds, tokensSeen: outcome.result.stats.tokensSeen, generatedTokens: outcome.result.stats.generatedTokens, firstTokenMs });
      }
      all.push(turns);
    }
    return all;
  } finally {
    killNow(running);
    await running.sidecar.exited;
    rmSync(stateDir, { recursive: true, force: true });
  }
}

interface Corruption {
  slot: Slot;
  file: string;
  how: 'truncate' | 'garbage';
}

/** Truncates one session's file at a random byte, or overwrites it with random bytes. */
function corruptOne(stateDir: string, slot: Slot, how: Corruption['how'], random: () => number): Corruption {
  const name = `${slot.sessionId}.json`;
  const file = join(stateDir, 'sessions', name);
  const size = statSync(file).size;
  if (how === 'truncate') truncateSync(file, 1 + Math.floor(random() * (size - 1)));
  else writeFileSync(file, Buffer.from(Array.from({ length: 1 + Math.floor(random() * size) }, () => Math.floor(random() * 256))));
  return { slot, file: name, how };
}

/** The level of a JSON log line; undefined for anything else (a Node warning, say). */
function levelOf(line: string): string | undefined {
  try {
    return (JSON.parse(line) as { level?: string }).level;
  } catch {
    return undefined;
  }
}

/** After a restart: what came back, against what the client knows. */
async function verify(live: RunningSidecar, slots: Slot[], inFlight: InFlight | null, corrupted: Corruption | null, deleted: string[], report: KillLoopReport, fail: (line: string) => void, notes: string[]): Promise<void> {
  const { connection } = live;
  const expectedSessions = slots.length - (corrupted ? 1 : 0);
  const { sessions } = await connection.sendRequest(Methods.serverStats);
  if (sessions !== expectedSessions) {
    report.sessionCountWrong++;
    fail(`after the restart the sidecar holds ${sessions} sessions; ${expectedSessions} expected`);
  }
  for (const slot of slots) {
    const label = `${slot.script.name} (${slot.sessionId.slice(0, 8)})`;
    if (corrupted?.slot === slot) {
      const gone = await connection.sendRequest(Methods.sessionStats, { sessionId: slot.sessionId }).then(() => false, isNotFound);
      // The log line comes while the store loads, before the handshake.
      const warned = live.sidecar.stderr.some((line) => line.includes(corrupted.file) && levelOf(line) === 'warn');
      if (!gone) fail(`${label}: its file was ${corrupted.how === 'truncate' ? 'truncated' : 'overwritten with garbage'}, yet the session is still there`);
      if (!warned) fail(`${label}: no warn line names the corrupted ${corrupted.file} (stderr: ${live.sidecar.stderr.filter((l) => l.includes('"warn"')).join(' | ') || 'no warn lines'})`);
      if (gone && warned) report.corruptionsIsolated++;
      report.turnsLostToCorruption += slot.received.length;
      notes.push(`${slot.script.name} lost to the corruption (${slot.received.length} turns)`);
      continue;
    }
    let turns: TurnStats[];
    try {
      turns = (await connection.sendRequest(Methods.sessionStats, { sessionId: slot.sessionId })).turns;
    } catch (error) {
      report.sessionsMissing++;
      report.turnsLost += slot.received.length;
      fail(`${label}: not resumed after the restart: ${message(error)}`);
      continue;
    }
    report.sessionsResumed++;
    const interrupted = inFlight?.slot === slot && !inFlight.answered;
    if (turns.length < slot.received.length) {
      report.turnsLost += slot.received.length - turns.length;
      fail(`${label}: ${turns.length} turns after the restart; ${slot.received.length} were answered`);
    }
    if (turns.length > slot.received.length + (interrupted ? 1 : 0)) {
      report.turnsAltered++;
      fail(`${label}: ${turns.length} turns after the restart, more than the ${slot.received.length} answered${interrupted ? ' + 1 interrupted' : ''}`);
    }
    for (const [i, stats] of slot.received.entries()) {
      if (i < turns.length && !isDeepStrictEqual(turns[i], stats)) {
        report.turnsAltered++;
        fail(`${label} turn ${i + 1}: persisted ${JSON.stringify(turns[i])}, answered ${JSON.stringify(stats)}`);
      }
    }
    if (interrupted && turns.length === slot.received.length + 1) {
      // The kill came after the turn was persisted but before its answer arrived: it must be whole.
      report.interruptedPersisted++;
      const persisted = turns[slot.received.length];
      const expected = slot.reference[slot.received.length];
      const whole = slot.diverged ? persisted.generatedTokens >= inFlight.tokens : persisted.generatedTokens === expected.generatedTokens && persisted.tokensSeen === expected.tokensSeen;
      if (!whole) {
        report.turnsAltered++;
        fail(`${label} turn ${slot.received.length + 1}: interrupted after ${inFlight.tokens} tokens, persisted incomplete (${persisted.generatedTokens} generated, ${persisted.tokensSeen} seen; uninterrupted: ${expected.generatedTokens}, ${expected.tokensSeen})`);
      }
      slot.received.push(persisted);
      notes.push(`the interrupted turn was persisted whole`);
    } else if (interrupted) report.interruptedAbsent++;
  }
  for (const id of deleted) {
    const back = await connection.sendRequest(Methods.sessionStats, { sessionId: id }).then(
      () => true,
      (error: unknown) => !isNotFound(error),
    );
    if (back) {
      report.deletedReturned++;
      fail(`the deleted session ${id} is back after the restart`);
    }
  }
}
