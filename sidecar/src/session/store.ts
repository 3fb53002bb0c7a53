/**
 * Conversations persisted under the state directory, so a restarted sidecar resumes every one of
 * them by re-prefill: `sessions/<id>.json` (written atomically: a temporary file, then a rename)
 * and `images/<sha256>` (each image once, whatever the number of sessions showing it).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { Conversation, type ImageStore, type PersistedConversation } from './conversation.js';

function writeAtomically(file: string, data: string | Uint8Array): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, data);
  renameSync(temporary, file);
}

class DiskImageStore implements ImageStore {
  constructor(private readonly dir: string) {}
  get(hash: string): Uint8Array | undefined {
    const file = join(this.dir, hash);
    return /^[0-9a-f]{64}$/.test(hash) && existsSync(file) ? readFileSync(file) : undefined;
  }
  put(hash: string, bytes: Uint8Array): void {
    const file = join(this.dir, hash);
    if (!existsSync(file)) writeAtomically(file, bytes);
  }
}

export class SessionStore {
  readonly images: ImageStore;
  private readonly sessionsDir: string;

  constructor(
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.sessionsDir = join(stateDir, 'sessions');
    const imagesDir = join(stateDir, 'images');
    mkdirSync(this.sessionsDir, { recursive: true });
    mkdirSync(imagesDir, { recursive: true });
    this.images = new DiskImageStore(imagesDir);
  }

  save(conversation: Conversation): void {
    writeAtomically(join(this.sessionsDir, `${conversation.id}.json`), JSON.stringify(conversation.toJSON()));
  }

  delete(id: string): void {
    rmSync(join(this.sessionsDir, `${id}.json`), { force: true });
  }

  /** Every persisted conversation; an unreadable file is logged and left where it is. */
  loadAll(): Conversation[] {
    const conversations: Conversation[] = [];
    for (const name of readdirSync(this.sessionsDir).filter((n) => n.endsWith('.json'))) {
      try {
        const data = JSON.parse(readFileSync(join(this.sessionsDir, name), 'utf8')) as PersistedConversation;
        if (data.version !== 1 || typeof data.id !== 'string' || !Array.isArray(data.segments)) throw new Error('not a version-1 conversation');
        conversations.push(Conversation.restore(data, this.images));
      } catch (error) {
        this.log.log('warn', 'persisted session skipped', { file: name, error: error instanceof Error ? error.message : String(error) });
      }
    }
    return conversations;
  }
}
