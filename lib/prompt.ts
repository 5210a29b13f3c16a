/**
 * Asking a person. cal prompts only when both stdin and stderr are terminals; otherwise the
 * command must say yes up front (`--yes`), and refuses with exit 2 rather than hang or guess.
 */

import { CalError, ExitCode, usageError } from "./errors.ts";

export function canPrompt(): boolean {
  return Deno.stdin.isTerminal() && Deno.stderr.isTerminal();
}

/** Asks a yes/no question (default no); without a terminal, refuses unless `yes` was given. */
export async function confirm(question: string, opts: { yes?: boolean; flag?: string } = {}) {
  if (opts.yes) return true;
  if (!canPrompt()) {
    throw usageError(
      `cal needs a confirmation and there is no terminal to ask: ${question}`,
      `Pass ${opts.flag ?? "--yes"} to confirm.`,
    );
  }
  await Deno.stderr.write(new TextEncoder().encode(`${question} [y/N] `));
  const buf = new Uint8Array(256);
  const n = await Deno.stdin.read(buf);
  const answer = new TextDecoder().decode(buf.subarray(0, n ?? 0)).trim().toLowerCase();
  return answer === "y" || answer === "yes";
}

/**
 * What a command ends with when the person answered no: exit 2 as the README says for "no
 * confirmation", told as what was kept (Output prints no `error:` for it: nothing failed).
 */
export function declined(message: string, workspace?: string): CalError {
  return new CalError(message, {
    code: "declined",
    exit: ExitCode.usage,
    hint: "Nothing was changed.",
    workspace,
  });
}
