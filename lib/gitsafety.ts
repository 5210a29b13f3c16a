/**
 * Git safety: before cal throws a guest's disk away (restore, rollback, destroy), it looks for
 * work that exists only there: uncommitted changes and commits no remote has, in every repository
 * under the usual folders (linked worktrees included). Anything found is listed, and the
 * operation needs `--force` or a yes from a person at a terminal; so does a restore over a
 * workspace nobody can look into (stopped: its disk cannot be read; running but unreachable).
 */

import { CalError, ExitCode } from "./errors.ts";
import type { Guest } from "./guest/ssh.ts";
import type { Output } from "./output.ts";
import type { MachineState } from "./provider.ts";
import { canPrompt, confirm } from "./prompt.ts";
import { reason } from "./process.ts";
import type { UnsavedWork } from "./records.ts";
import { quoteArgs } from "./shell.ts";
import { connect, type Loaded } from "./workspace.ts";

/** POSIX sh (the login shell may be zsh, whose unmatched globs are errors). */
const SCAN = `
for top in "$HOME/workspace" "$HOME/code" "$HOME/projects" "$HOME/repos"; do
  [ -d "$top" ] && find "$top" -maxdepth 5 -name .git -print -prune 2>/dev/null
done | while IFS= read -r g; do
  r=$(dirname "$g")
  c=$(git -C "$r" status --porcelain 2>/dev/null | wc -l | tr -d ' ')
  u=$(git -C "$r" log --branches --not --remotes --oneline 2>/dev/null | wc -l | tr -d ' ')
  printf '%s\\t%s\\t%s\\n' "$r" "$c" "$u"
done`;

/** The most of the guest's answer cal reads: far more than any real list of repositories. */
const MAX_ANSWER = 4 * 1024 * 1024;

/**
 * Repositories in the guest holding work that is nowhere else. The guest is hostile: the shell
 * is the system's (an `sh` first on the guest's PATH is the guest's own program), and its answer
 * is cut by the system's head, so a guest that answers gigabytes cannot make cal hold them.
 */
export async function findUnsavedWork(guest: Guest): Promise<UnsavedWork[]> {
  const r = await guest.sh(
    `${quoteArgs(["/bin/sh", "-c", SCAN])} 2>/dev/null | /usr/bin/head -c ${MAX_ANSWER + 1}`,
    { timeoutMs: 60_000 },
  );
  if (new TextEncoder().encode(r.stdout).length > MAX_ANSWER) {
    throw new CalError(
      `Looking for unsaved work in "${guest.workspace}" failed: its answer was larger than ${
        MAX_ANSWER / 1024 / 1024
      } MB.`,
      { workspace: guest.workspace },
    );
  }
  if (r.code !== 0) {
    // Never "nothing unsaved" from a look that did not happen.
    throw new CalError(`Looking for unsaved work in "${guest.workspace}" failed: ${reason(r)}`, {
      workspace: guest.workspace,
    });
  }
  const found: UnsavedWork[] = [];
  for (const line of r.stdout.split("\n")) {
    const [repo, changes, unpushed] = line.split("\t");
    if (!repo || changes === undefined) continue;
    const w = { repo, changes: Number(changes) || 0, unpushed: Number(unpushed) || 0 };
    if (w.changes || w.unpushed) found.push(w);
  }
  return found;
}

export function describeUnsaved(found: UnsavedWork[]): string {
  return found.map((w) => {
    const parts = [];
    if (w.changes) parts.push(`${w.changes} uncommitted change${w.changes === 1 ? "" : "s"}`);
    if (w.unpushed) parts.push(`${w.unpushed} unpushed commit${w.unpushed === 1 ? "" : "s"}`);
    return `  ${w.repo}: ${parts.join(", ")}`;
  }).join("\n");
}

/**
 * What a look for unsaved work found: the work (possibly none), or why nobody could look
 * (`unchecked`), which has been said as a warning.
 */
export interface UnsavedCheck {
  found: UnsavedWork[];
  unchecked?: "not running" | "unreachable";
}

/**
 * Looks for unsaved work in a workspace. A stopped workspace's disk cannot be read; a running
 * one whose SSH fails (the damage a rollback is for may be just that) cannot be looked into:
 * either way a warning says so, and the caller decides.
 */
export async function checkUnsavedWork(
  w: Loaded,
  running: boolean,
  out: Output,
): Promise<UnsavedCheck> {
  const name = w.vm.name;
  if (!running) {
    out.warn(
      `"${name}" is not running, so its repositories were not checked for unsaved work.`,
      name,
    );
    return { found: [], unchecked: "not running" };
  }
  try {
    const found = await findUnsavedWork(await connect(w));
    if (found.length) {
      out.warn(
        `"${name}" has work that exists only in the workspace:\n${describeUnsaved(found)}`,
        name,
      );
    }
    return { found };
  } catch (e) {
    if (!(e instanceof CalError)) throw e;
    out.warn(`"${name}" could not be checked for unsaved work: ${e.message}`, name);
    return { found: [], unchecked: "unreachable" };
  }
}

/**
 * Refuses to go on while the guest holds unsaved work, or may (it is stopped, so its disk cannot
 * be read, or running but unreachable), unless `force` or a person says yes. A workspace whose
 * machine is gone has nothing to lose.
 */
export async function requireNoUnsavedWork(
  w: Loaded,
  state: MachineState | undefined,
  action: string,
  opts: { force?: boolean },
  out: Output,
): Promise<void> {
  if (state === undefined) return;
  const name = w.vm.name;
  const { found, unchecked } = await checkUnsavedWork(w, state === "running", out);
  if (opts.force || (!found.length && !unchecked)) return;
  const lose = unchecked ? "lose any unsaved work" : "lose it";
  if (canPrompt() && await confirm(`${action} anyway and ${lose}?`)) return;
  const why = unchecked === "not running"
    ? "it is not running, so its repositories could not be checked"
    : "it is running but cannot be reached, so its repositories were not checked";
  throw new CalError(
    unchecked
      ? `${action} might lose unsaved work in "${name}": ${why}.`
      : `${action} would lose unsaved work in "${name}":\n${describeUnsaved(found)}`,
    {
      code: "wrong-state",
      exit: ExitCode.wrongState,
      hint: unchecked === "not running"
        ? `Start it (\`cal-vm start ${name}\`) so cal can look, or pass --force to go on without.`
        : unchecked
        ? "Pass --force to go on without the check."
        : "Commit and push it first (`cal-vm ssh " + name + "`), or pass --force to discard it.",
      workspace: name,
    },
  );
}
