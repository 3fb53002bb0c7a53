/**
 * The conversations the kill loop holds: pictures (several at once, then more in later turns),
 * `name = value` files and a mix, phrased the way the embedded model was trained to read them.
 * Each slot of the loop replays one of them from its first turn whenever it finished it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SessionChatParams } from '../../sidecar/src/protocol/index.js';

export type TurnInput = Omit<SessionChatParams, 'sessionId'>;

export interface Script {
  name: string;
  turns: TurnInput[];
}

export function loadScripts(root: string, fileLines = Infinity): Script[] {
  const samples = join(root, 'media/samples');
  const image = (name: string) => ({ data: readFileSync(join(samples, name)).toString('base64'), name });
  const file = (name: string) => ({ name, text: readFileSync(join(samples, name), 'utf8').split('\n').slice(0, fileLines).join('\n') });
  return [
    {
      name: 'pictures',
      turns: [
        { text: 'What colour is the shape in image 2?', images: [image('red-square.png'), image('blue-circle.png')] },
        { text: 'And which digit is written in image 1?' },
        { text: 'Which shape is shown in image 3?', images: [image('green-triangle.png')] },
        { text: 'And which digit is written in image 2?' },
        { text: 'Describe every picture so far, one by one, in detail.' },
      ],
    },
    {
      name: 'files',
      turns: [
        { text: 'What is the value of `retries`?', files: [file('service.conf')] },
        { text: 'And what is the value of `port`?' },
        { text: 'What does this file set HANDLER_3_TIMEOUT to?', files: [file('settings.py')] },
        { text: 'And what is the value of `seed`?' },
      ],
    },
    {
      name: 'mixed',
      turns: [
        { text: 'Which word is written in the image?', images: [image('green-triangle.png')] },
        { text: 'What is the value of `host`?', files: [file('service.conf')] },
        { text: 'What colour is the shape in image 2?', images: [image('blue-circle.png')] },
        { text: 'Repeat everything you have been told so far.' },
      ],
    },
  ];
}
