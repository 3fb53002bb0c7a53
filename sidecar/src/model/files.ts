/**
 * Opening a model folder's files for reading: regular files only (symlinks followed, as the
 * Hugging Face cache links snapshots to blobs). A FIFO would block the whole process in `open`
 * and a device such as /dev/zero never ends, so both are refused before a byte is read. Errors
 * name the file, never its contents.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { CheckpointError } from './checkpointError.js';

/** Opens `file` without blocking on a FIFO and checks it is a regular file; returns its fd and size. */
export function openRegularFile(file: string): { fd: number; size: number } {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    fd = openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CheckpointError(`${basename(file)}: cannot open ${file}${code ? ` (${code})` : ''}`);
  }
  const stat = fstatSync(fd);
  if (!stat.isFile()) {
    closeSync(fd);
    throw new CheckpointError(`${basename(file)}: ${file} is not a regular file`);
  }
  return { fd, size: stat.size };
}

/** Reads exactly `length` bytes at `position` of an open file, or fails naming the file. */
export function readExactly(fd: number, file: string, length: number, position: number): Buffer {
  const bytes = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const read = readSync(fd, bytes, done, length - done, position + done);
    if (read === 0) throw new CheckpointError(`${basename(file)}: truncated: ${position + done} bytes where ${position + length} were expected`);
    done += read;
  }
  return bytes;
}
