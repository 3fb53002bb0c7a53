/** What the user attached to a chat request, as the sidecar takes it: image bytes (base64) and file text. */
import { basename, extname } from 'node:path';
import * as vscode from 'vscode';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff']);
/** Text beyond this is cut, and the cut is said in the text the model sees. */
const MAX_FILE_CHARS = 400_000;

export interface Attachments {
  images: { data: string; name: string }[];
  files: { name: string; text: string }[];
}

export function isImage(uri: vscode.Uri): boolean {
  return IMAGE_EXTENSIONS.has(extname(uri.path).toLowerCase());
}

function fileText(name: string, text: string): { name: string; text: string } {
  return text.length > MAX_FILE_CHARS ? { name, text: `${text.slice(0, MAX_FILE_CHARS)}\n[... cut: ${text.length - MAX_FILE_CHARS} more characters]` } : { name, text };
}

export async function readAttachment(uri: vscode.Uri, into: Attachments): Promise<void> {
  const bytes = await vscode.workspace.fs.readFile(uri);
  if (isImage(uri)) into.images.push({ data: Buffer.from(bytes).toString('base64'), name: basename(uri.path) });
  else into.files.push(fileText(vscode.workspace.asRelativePath(uri), new TextDecoder().decode(bytes)));
}

function isUriAndRange(value: unknown): value is { uri: vscode.Uri; range: vscode.Range } {
  return !!value && typeof value === 'object' && 'uri' in value && value.uri instanceof vscode.Uri && 'range' in value && value.range instanceof vscode.Range;
}

/** Images, files, selections (locations) and pasted binary data referenced by a chat request. */
export async function collectAttachments(references: readonly vscode.ChatPromptReference[]): Promise<Attachments> {
  const attachments: Attachments = { images: [], files: [] };
  for (const reference of references) {
    const value = reference.value;
    // The implicit context of the active editor comes as a plain { uri, range } (an open image too).
    const location = value instanceof vscode.Location ? value : isUriAndRange(value) ? new vscode.Location(value.uri, value.range) : undefined;
    if (value instanceof vscode.Uri || (location && isImage(location.uri))) {
      await readAttachment(value instanceof vscode.Uri ? value : location!.uri, attachments);
    } else if (location) {
      const document = await vscode.workspace.openTextDocument(location.uri);
      const { start, end } = location.range;
      attachments.files.push(fileText(`${vscode.workspace.asRelativePath(location.uri)}:${start.line + 1}-${end.line + 1}`, document.getText(location.range)));
    } else if (typeof value === 'string') {
      attachments.files.push(fileText(reference.modelDescription ?? reference.id, value));
    } else if (value && typeof value === 'object' && 'mimeType' in value && 'data' in value && typeof value.data === 'function') {
      // Pasted images (ChatReferenceBinaryData in newer VS Code versions).
      const data = (await (value.data as () => Thenable<Uint8Array>)()) ?? new Uint8Array();
      attachments.images.push({ data: Buffer.from(data).toString('base64'), name: String(value.mimeType) });
    }
  }
  return attachments;
}
