// The README packed into the .vsix, from the user guide (docs/USER.md). VS Code's extension page
// (1.117) shows a README's images only from https addresses: relative paths and data: URIs are
// stripped by its sanitizer, and it loads nothing from the extension's folder. Offline there is no
// image it can show, so the guide's screenshots (each an image on a line of its own) are left out,
// and anything else that would render broken there is refused, naming the line.

const IMAGE_LINE = /^\s*!\[[^\]]*\]\([^)]*\)\s*$/;
const LEFT_OVER = [
  [/!\[[^\]]*\]\(/, 'an image inside a paragraph (put it on a line of its own)'],
  [/<img\b/i, 'an <img> tag'],
  [/\]\((?!https:\/\/|mailto:|#)[^)]*\)/, 'a link that is not https:, mailto: or #anchor (the extension page drops it)'],
];

/** The packaged README's text for the guide's `markdown`; throws on what the page would break. */
export function vsixReadme(markdown, source = 'docs/USER.md') {
  const kept = markdown.split('\n').filter((line) => !IMAGE_LINE.test(line));
  for (const line of kept) {
    for (const [pattern, what] of LEFT_OVER) {
      if (pattern.test(line)) throw new Error(`${source}: ${what} would be broken on the extension page: ${line.trim()}`);
    }
  }
  return kept.join('\n').replace(/\n{3,}/g, '\n\n');
}
