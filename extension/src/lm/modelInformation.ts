/**
 * What the chat's model picker is told about the local model (pure; no VS Code import).
 *
 * VS Code 1.117 runs a chat participant only with a model: the one selected in the chat's picker,
 * else the default, and only a Copilot model can be the default (`getDefaultLanguageModel` of the
 * extension host). A user without Copilot therefore needs our model in the picker, and the picker
 * lists a model only when it is `isUserSelectable` (in 1.117 a field of the information, not in
 * the 1.104 typings this extension builds against) and, in agent mode (the chat's default while
 * `chat.agent.enabled` is on), only when it declares tool calling. When it is the only model
 * listed, the chat selects it by itself.
 *
 * Tool calling is declared for that reason only: the local model never calls a tool. A request
 * that offers tools gets a plain text answer (what a model that chooses no tool gives); one that
 * requires a tool call is refused (see provider.ts).
 */
import { basename } from 'node:path';
import type { ModelFolderInfo } from './modelFolder.js';

export const MODEL_ID = 'lookm-local';
export const MODEL_FAMILY = 'lookm';

export interface LocalModelInformation {
  id: string;
  name: string;
  family: string;
  version: string;
  tooltip: string;
  detail: string;
  maxInputTokens: number;
  maxOutputTokens: number;
  /** Listed in the chat's model picker (a field VS Code 1.117 reads; not in the 1.104 typings). */
  isUserSelectable: true;
  capabilities: { imageInput: boolean; toolCalling: true };
}

export interface ModelSource {
  /** The model folder (the embedded one for an empty `lookm.modelPath`; '' when there is none). */
  modelPath: string;
  embedded: boolean;
  policy: string;
  maxNewTokens: number;
}

export function localModelInformation(source: ModelSource, folder: ModelFolderInfo): LocalModelInformation {
  const label = source.embedded ? 'embedded tiny VLM' : source.modelPath ? basename(source.modelPath) : 'no model selected';
  return {
    id: MODEL_ID,
    name: `LOOK-M local (${label})`,
    family: MODEL_FAMILY,
    version: '1',
    tooltip: source.modelPath
      ? `The local ${folder.imageInput ? 'vision-language' : 'text-only'} model in ${source.modelPath}, with a LOOK-M compressed KV cache (${source.policy}).`
      : 'No local model: run "LOOK-M: Select Model…" or "LOOK-M: Download Model…".',
    detail: 'local',
    maxInputTokens: folder.contextLength || 4096,
    maxOutputTokens: source.maxNewTokens,
    isUserSelectable: true,
    capabilities: { imageInput: folder.imageInput, toolCalling: true },
  };
}
