/**
 * The palette's answers as one Markdown text, newest first (so the answer being written is always
 * at the top of the view). Each answer keeps its question, its streamed text and a transient
 * status line (reading progress, "stopped"). Pure: no VS Code import.
 */
export interface Answer {
  readonly title: string;
  readonly question: string;
  /** The answer as streamed, then its footer or failure. */
  text: string;
  /** A line shown in italics under the text while it matters (reading progress); empty when none. */
  status: string;
}

export class AnswerLog {
  private readonly answers: Answer[] = [];

  /** `maxAnswers`: the oldest answers beyond it are dropped from the view. */
  constructor(private readonly maxAnswers = 50) {}

  get size(): number {
    return this.answers.length;
  }

  /** A new, empty answer at the top; update its fields, then render. */
  begin(title: string, question: string): Answer {
    const answer: Answer = { title, question, text: '', status: '' };
    this.answers.unshift(answer);
    this.answers.length = Math.min(this.answers.length, this.maxAnswers);
    return answer;
  }

  render(): string {
    const header = '# LOOK-M answers\n\n*Newest first. Answers of the palette commands (Explain Screenshot, Ask About File or Selection) collect here; close this view at any time: it has nothing to save.*\n';
    return [header, ...this.answers.map(renderAnswer)].join('\n');
  }
}

function renderAnswer(answer: Answer): string {
  const quoted = answer.question.split('\n').map((line) => `> ${line}`).join('\n');
  const status = answer.status ? `\n\n*${answer.status}*` : '';
  return `## ${answer.title}\n\n${quoted}\n\n${answer.text.replace(/^\s+/, '')}${status}\n`;
}
