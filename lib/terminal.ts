/**
 * Text that is safe to show on a person's terminal.
 *
 * Whatever comes from a guest (file names, log lines, an agent's stderr) is data: a name like
 * `\x1b]52;c;…\x07` would otherwise write the host's clipboard (OSC 52), retitle the window, clear
 * the screen or hide a line behind a carriage return. Every human-facing write goes through
 * `forTerminal` (Output does it), and messages that quote guest text use `safeText`, so a control
 * character is shown as its escape (`\x1b`) instead of acting. JSON output is never filtered: it
 * carries the exact bytes, escaped by JSON itself.
 */

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// deno-lint-ignore no-control-regex
const CONTROL_BUT_LINES = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** cal's own colours (picocolors' SGR sequences): the one escape a terminal write may keep. */
// deno-lint-ignore no-control-regex
const SGR = /\x1b\[[0-9;]{0,32}m/y;

function escape(c: string): string {
  const n = c.codePointAt(0)!;
  if (c === "\n") return "\\n";
  if (c === "\t") return "\\t";
  if (c === "\r") return "\\r";
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16)}`;
}

/**
 * One line of guest text made inert: every control character (newline and tab included), the
 * C1 range and the bidirectional overrides that reorder what is shown, as visible escapes.
 */
export function safeText(s: string): string {
  return s.replace(CONTROL, escape);
}

/**
 * Guest text of several lines (a log, an agent's stderr): newlines and tabs stay, every other
 * control character is escaped.
 */
export function safeLines(s: string): string {
  return s.replace(CONTROL_BUT_LINES, escape);
}

/**
 * A whole write to the terminal: keeps newlines, tabs and cal's own SGR colour sequences, and
 * escapes every other control character, so nothing that reached a message unfiltered can act.
 */
export function forTerminal(s: string): string {
  let out = "";
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === "\x1b") {
      SGR.lastIndex = i;
      const m = SGR.exec(s);
      if (m) {
        out += m[0];
        i += m[0].length;
        continue;
      }
    }
    out += c === "\n" || c === "\t" ? c : c.replace(CONTROL, escape);
    i++;
  }
  return out;
}
