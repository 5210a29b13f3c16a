/**
 * Names of workspaces and snapshots.
 *
 * A name is lowercase letters and digits in runs joined by single `-`, `_` or `.`, at most 40
 * characters. Lowercase only, because macOS file systems fold case (`My` and `my` would share a
 * folder); no doubled separators, because `--` is what joins a workspace and a snapshot in a
 * provider's machine name, which keeps those names collision-free.
 */

import { usageError } from "./errors.ts";

export const NAME_PATTERN = /^[a-z0-9]+(?:[-_.][a-z0-9]+)*$/;
export const NAME_MAX = 40;

export function nameProblem(name: string): string | undefined {
  if (name === "") return "it is empty";
  if (name.length > NAME_MAX) return `it is ${name.length} characters long (at most ${NAME_MAX})`;
  if (!NAME_PATTERN.test(name)) {
    return "only lowercase letters and digits, joined by single '-', '_' or '.', are allowed";
  }
  return undefined;
}

/** Throws a usage error (exit 2) unless `name` is a valid workspace or snapshot name. */
export function validateName(name: string, what = "workspace"): string {
  const problem = nameProblem(name);
  if (problem) {
    const shown = name.length > 60 ? JSON.stringify(name.slice(0, 60)) + "…" : JSON.stringify(name);
    throw usageError(
      `${shown} is not a valid ${what} name: ${problem}.`,
      `Choose a name like "my-${what}" (lowercase letters, digits, single '-', '_' or '.').`,
    );
  }
  return name;
}
