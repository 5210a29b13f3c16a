/**
 * Git safety: before cal throws a guest's disk away (restore, rollback, destroy), it looks for
 * work that exists only there: uncommitted changes and commits no remote has, in every repository
 * under the usual folders (linked worktrees included). Anything found is listed, and the
 * operation needs `--force` or a yes from a person at a terminal.
 */

import { CalError, ExitCode } from "./errors.ts";
import type { Guest } from "./guest/ssh.ts";
import type { Output } from "./output.ts";
import { canPrompt, confirm } from "./prompt.ts";
import type { UnsavedWork } from "./records.ts";
import { quoteArgs } from "./shell.ts";

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

/** Repositories in the guest holding work that is nowhere else. */
export async function findUnsavedWork(guest: Guest): Promise<UnsavedWork[]> {
  const r = await guest.sh(quoteArgs(["sh", "-c", SCAN]), { timeoutMs: 60_000 });
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
 * Refuses to go on while the guest holds unsaved work, unless `force` or a person says yes.
 * `guest` is undefined when the workspace is not running (its disk cannot be read then).
 */
export async function requireNoUnsavedWork(
  workspace: string,
  guest: Guest | undefined,
  action: string,
  opts: { force?: boolean },
  out: Output,
): Promise<void> {
  if (!guest) {
    out.warn(
      `"${workspace}" is not running, so its repositories were not checked for unsaved work.`,
      workspace,
    );
    return;
  }
  const found = await findUnsavedWork(guest);
  if (!found.length) return;
  const list = describeUnsaved(found);
  out.warn(`"${workspace}" has work that exists only in the workspace:\n${list}`, workspace);
  if (opts.force) return;
  if (canPrompt() && await confirm(`${action} anyway and lose it?`)) return;
  throw new CalError(`${action} would lose unsaved work in "${workspace}":\n${list}`, {
    code: "wrong-state",
    exit: ExitCode.wrongState,
    hint: "Commit and push it first (`cal-vm ssh " + workspace + "`), or pass --force to " +
      "discard it.",
    workspace,
  });
}
