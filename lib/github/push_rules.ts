/**
 * The rules a push through cal's GitHub broker must keep, one ref update at a time (the
 * commands of git-receive-pack): only a branch, only the workspace's own (the agent prefix, or
 * one cal created for it), never a protected branch or the remote's default, never a deletion,
 * never a force update. Pure: the broker's pre-receive hook feeds it what real git says.
 */

/** Never pushed to, whatever the config lists besides. */
export const ALWAYS_PROTECTED = ["main", "master", "develop"];

export const ZERO = "0000000000000000000000000000000000000000";

export interface PushRules {
  /** The agent prefix (`agent/`). */
  prefix: string;
  /** Branches cal created or checked out for the workspace. */
  own: string[];
  /** `github.protected_branches` from the config (ALWAYS_PROTECTED count besides). */
  protected: string[];
  /** The remote's default branch, when known. */
  defaultBranch?: string;
}

export interface RefUpdate {
  ref: string;
  old: string;
  new: string;
}

export type Rule =
  | "not-a-branch"
  | "protected-branch"
  | "default-branch"
  | "not-own-branch"
  | "no-deletion"
  | "no-force";

export interface Refusal {
  ref: string;
  rule: Rule;
  /** What was refused and what to do instead, one line. */
  message: string;
}

const AGENT_BRANCH = (rules: PushRules) => `${rules.prefix}my-change`;

/**
 * Whether `u` may go upstream. `fastForward` says whether the new commit contains the old one
 * (only asked for an update of an existing branch).
 */
export function checkUpdate(
  u: RefUpdate,
  rules: PushRules,
  fastForward: () => boolean,
): Refusal | undefined {
  const instead = `push your work to a branch of your own instead: git push origin HEAD:${
    AGENT_BRANCH(rules)
  }`;
  if (!u.ref.startsWith("refs/heads/")) {
    return {
      ref: u.ref,
      rule: "not-a-branch",
      message: `${u.ref} is not a branch; cal's broker pushes branches only (${instead})`,
    };
  }
  const branch = u.ref.slice("refs/heads/".length);
  if (branch === rules.defaultBranch) {
    return {
      ref: u.ref,
      rule: "default-branch",
      message: `"${branch}" is the remote's default branch; nothing in a workspace pushes to it ` +
        `(${instead}, then open a pull request)`,
    };
  }
  if (ALWAYS_PROTECTED.includes(branch) || rules.protected.includes(branch)) {
    return {
      ref: u.ref,
      rule: "protected-branch",
      message: `"${branch}" is a protected branch (${instead}, then open a pull request)`,
    };
  }
  if (!branch.startsWith(rules.prefix) && !rules.own.includes(branch)) {
    return {
      ref: u.ref,
      rule: "not-own-branch",
      message: `"${branch}" is not this workspace's branch (its own start with ` +
        `"${rules.prefix}"; ${instead})`,
    };
  }
  if (u.new === ZERO) {
    return {
      ref: u.ref,
      rule: "no-deletion",
      message: `deleting "${branch}" is refused; delete branches on GitHub yourself if you must`,
    };
  }
  if (u.old !== ZERO && !fastForward()) {
    return {
      ref: u.ref,
      rule: "no-force",
      message: `"${branch}" would lose commits the remote has (a force update is refused); ` +
        `integrate them first: git pull --rebase, then push again`,
    };
  }
  return undefined;
}

/** The rule in a few words, for the ref's own line of `git push` (`! [remote rejected] ...`). */
export function shortReason(rule: Rule, prefix: string): string {
  const own = `push to ${prefix}... instead`;
  return "cal: " + {
    "not-a-branch": `${rule}: only branches are pushed`,
    "protected-branch": `${rule}: ${own} and open a pull request`,
    "default-branch": `${rule}: ${own} and open a pull request`,
    "not-own-branch": `${rule}: ${own}`,
    "no-deletion": `${rule}: deleting a branch is refused`,
    "no-force": `${rule}: a force update is refused; git pull --rebase first`,
  }[rule];
}
