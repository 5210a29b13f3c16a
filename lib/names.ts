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

/** The provider's machine name for a workspace: prefixed, so cal never touches VMs it did not make. */
export function machineName(workspace: string): string {
  return `cal-${workspace}`;
}

/** A snapshot's machine: `cal-<workspace>--<snapshot>` (names never hold `--`, so no collisions). */
export function snapshotMachine(workspace: string, snapshot: string): string {
  return `${machineName(workspace)}--${snapshot}`;
}

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

/**
 * The guest account cal logs in as: a POSIX login name (the rule `isolation.defaults.vm.user`
 * has), at most 32 characters. It becomes an ssh config line, so nothing else may pass.
 */
export const USER_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;

export function userProblem(user: string): string | undefined {
  if (USER_PATTERN.test(user)) return undefined;
  return CONTROL.test(user) || /\s/.test(user)
    ? "a user name has no spaces, newlines or control characters"
    : "a user name is lowercase letters, digits, '_' and '-' (at most 32, not starting with a digit)";
}

/**
 * git's own rules for a branch name (git check-ref-format --branch): no control characters,
 * spaces or `~^:?*[\`, no `..`, `@{`, `//`, no part starting with `.` or ending in `.lock`, not
 * starting with `-` and not ending in `/` or `.`.
 */
export function branchProblem(b: string): string | undefined {
  const bad = b === "" || b === "@" || b.length > 255 || CONTROL.test(b) ||
    /[\s~^:?*[\\]/.test(b) || /\.\.|@\{|\/\//.test(b) || /^-|[/.]$/.test(b) ||
    b.split("/").some((part) => part.startsWith(".") || part.endsWith(".lock"));
  return bad ? "not a branch name git accepts" : undefined;
}

/**
 * A repository's address as cal records it: `host/owner/repo`, a URL git fetches (https, ssh,
 * git, file), `user@host:path`, or a local path. Never an option (`-…`), whitespace or a control
 * character: it may reach a command line.
 */
export function repoUrlProblem(url: string): string | undefined {
  if (
    url === "" || url.length > 2048 || CONTROL.test(url) || /\s/.test(url) || url.startsWith("-")
  ) {
    return "a repository address has no spaces or control characters and does not start with '-'";
  }
  const shapes = [
    /^(?:https?|ssh|git|file):\/\/\S+$/,
    /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+$/,
    /^[A-Za-z0-9][A-Za-z0-9.-]*(?::\d+)?\/\S+$/,
    /^\/\S*$/,
  ];
  return shapes.some((s) => s.test(url))
    ? undefined
    : "a repository address like github.com/owner/app or https://host/owner/app.git";
}

/** One line of plain text (an image reference, a version): no control characters, no option. */
export function wordProblem(s: string): string | undefined {
  if (s === "" || s.length > 512 || CONTROL.test(s) || /\s/.test(s) || s.startsWith("-")) {
    return "one word without spaces or control characters, not starting with '-'";
  }
  return undefined;
}
