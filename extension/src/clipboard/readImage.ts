/**
 * An image from the system clipboard. VS Code's clipboard API reads text only, so: a data URL or
 * an image file path copied as text, else the platform's own tool where one exists (wl-paste or
 * xclip on Linux, AppleScript on macOS, PowerShell on Windows). Null when there is no image or
 * the platform does not let us read it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { isImage } from '../chat/references.js';
import { imageFromDataUrl } from './dataUrl.js';

const MAX_BYTES = 20 * 1024 * 1024;

function run(command: string, args: string[]): Promise<Buffer | null> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'buffer', maxBuffer: MAX_BYTES, timeout: 5000 }, (error, stdout) => resolve(error || stdout.length === 0 ? null : stdout));
  });
}

/** Runs a platform tool that writes the clipboard's image to a file, and reads that file. */
async function viaFile(write: (file: string) => Promise<unknown>): Promise<Buffer | null> {
  const dir = await mkdtemp(join(tmpdir(), 'lookm-clipboard-'));
  const file = join(dir, 'clipboard.png');
  try {
    await write(file);
    return await readFile(file).catch(() => null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function fromPlatform(): Promise<Buffer | null> {
  switch (process.platform) {
    case 'linux':
      return (await run('wl-paste', ['--no-newline', '--type', 'image/png'])) ?? (await run('xclip', ['-selection', 'clipboard', '-target', 'image/png', '-out']));
    case 'darwin':
      return viaFile((file) =>
        run('osascript', ['-e', 'set png to (the clipboard as «class PNGf»)', '-e', `set f to open for access (POSIX file "${file}") with write permission`, '-e', 'write png to f', '-e', 'close access f']),
      );
    case 'win32':
      return viaFile((file) =>
        run('powershell', ['-NoProfile', '-STA', '-Command', `Add-Type -AssemblyName System.Windows.Forms; $i = [System.Windows.Forms.Clipboard]::GetImage(); if ($i) { $i.Save('${file.replace(/'/g, "''")}', [System.Drawing.Imaging.ImageFormat]::Png) }`]),
      );
    default:
      return null;
  }
}

export async function readClipboardImage(): Promise<Uint8Array | null> {
  const text = await vscode.env.clipboard.readText();
  const fromText = imageFromDataUrl(text);
  if (fromText) return fromText;
  const path = text.trim();
  if (path && !path.includes('\n') && isImage(vscode.Uri.file(path))) {
    const bytes = await vscode.workspace.fs.readFile(vscode.Uri.file(path)).then(
      (b) => b,
      () => null,
    );
    if (bytes) return bytes;
  }
  const bytes = await fromPlatform();
  return bytes ? new Uint8Array(bytes) : null;
}
