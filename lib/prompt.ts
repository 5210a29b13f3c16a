/**
 * Asking a person. cal prompts only when both stdin and stderr are terminals; otherwise the
 * command must say yes up front (`--yes`), and refuses with exit 2 rather than hang or guess.
 */

import { usageError } from "./errors.ts";

export function canPrompt(): boolean {
  return Deno.stdin.isTerminal() && Deno.stderr.isTerminal();
}

/** Asks a yes/no question (default no); without a terminal, refuses unless `yes` was given. */
export async function confirm(question: string, opts: { yes?: boolean; flag?: string } = {}) {
  if (opts.yes) return true;
  if (!canPrompt()) {
    throw usageError(
      `${question.replace(/\?$/, "")}: cal needs a confirmation and there is no terminal to ask.`,
      `Pass ${opts.flag ?? "--yes"} to confirm.`,
    );
  }
  await Deno.stderr.write(new TextEncoder().encode(`${question} [y/N] `));
  const buf = new Uint8Array(256);
  const n = await Deno.stdin.read(buf);
  const answer = new TextDecoder().decode(buf.subarray(0, n ?? 0)).trim().toLowerCase();
  return answer === "y" || answer === "yes";
}
