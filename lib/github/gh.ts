/**
 * Running `gh` and git inside the guest, and reading their failures.
 *
 * The GitHub host is configuration (`github.host`, or `--hostname`), handed to gh as GH_HOST in
 * the remote command's environment; when nothing names one, gh's own default (and any GH_HOST
 * already set in the guest) is left alone. Each failure kind gets its own message and exit code,
 * and nothing ever resets, force-pushes or otherwise discards local work.
 */

import { CalError, ExitCode, notFound, wrongState } from "../errors.ts";
import type { Guest } from "../guest/ssh.ts";
import { reason, type RunResult } from "../process.ts";

export interface GhOptions {
  /** GitHub host (github.com, a GHES host, github.localhost); undefined leaves gh's default. */
  host?: string;
  stdin?: string;
  cwd?: string;
}

/** argv for a guest command with GH_HOST set when a host was chosen, run in `cwd`. */
function wrap(argv: string[], o: GhOptions): string[] {
  const env = o.host
    ? ["env", `GH_HOST=${o.host}`, "GH_PROMPT_DISABLED=1"]
    : ["env", "GH_PROMPT_DISABLED=1"];
  return o.cwd
    ? [...env, "sh", "-c", 'cd "$1" && shift && exec "$@"', "cal-cd", o.cwd, ...argv]
    : [...env, ...argv];
}

export function gh(guest: Guest, args: string[], o: GhOptions = {}): Promise<RunResult> {
  return guest.exec(wrap(["gh", ...args], o), { stdin: o.stdin, timeoutMs: 300_000 });
}

export function git(
  guest: Guest,
  cwd: string,
  args: string[],
  o: GhOptions = {},
): Promise<RunResult> {
  return guest.exec(wrap(["git", ...args], { ...o, cwd }), { stdin: o.stdin, timeoutMs: 300_000 });
}

const NETWORK =
  // The last two: cal's egress proxy could not reach the upstream (it answers 502).
  /Could not resolve host|could not resolve|no such host|Connection refused|connection refused|Failed to connect|Network is unreachable|timed out|dial tcp|connection reset|error connecting to|returned error: 502|Bad Gateway/i;

/**
 * A tool the guest lacks, as shells and env(1) report it: `sh: 1: git: not found`,
 * `bash: line 1: gh: command not found`, `cal-cd: 1: exec: git: not found`,
 * `zsh:1: command not found: gh`, `env: 'gh': No such file or directory`. Case-sensitive on
 * purpose: `HTTP 404: Not Found` is GitHub's answer, not a shell's.
 */
const MISSING_TOOL = [
  /(?:^|: )(?:exec: )?([\w.+-]+): (?:command )?not found$/m,
  /command not found: ([\w.+-]+)$/m,
  /^env: ['‘"]?([\w.+-]+)['’"]?: No such file or directory$/m,
];

/** The repository (or the token's view of it) is missing; never a shell's "not found". */
const REPO_NOT_FOUND =
  /Repository not found|Could not resolve to a Repository|HTTP 404|repository '[^']*' not found/i;

/**
 * A token GitHub accepted that lacks a permission for what was asked. gh checks a classic
 * token's scopes at login, but a fine-grained token (the recommended kind) shows what it may do
 * only when it is refused: git gets a 403 on push, the API says "Resource not accessible".
 */
const PERMISSION_DENIED =
  /The requested URL returned error: 403|Permission to \S+ denied|Write access to repository not granted|Resource not accessible by (?:personal access token|integration)|does not have the correct permissions to execute/i;

/** The fine-grained permission a refused call needed, from what cal was doing and the answer. */
function permissionFor(what: string, text: string): string {
  if (
    /^Pushing\b|Write access|Permission to \S+ denied|git-receive-pack/i.test(what + "\n" + text)
  ) {
    return "Contents: read and write";
  }
  if (/^gh pr\b|pull request/i.test(what) || /createPullRequest|\/pulls\b/i.test(text)) {
    return "Pull requests: read and write";
  }
  return "Contents: read";
}

/** The line that says why access was refused, without git's `remote: ` prefix. */
function deniedLine(text: string, fallback: string): string {
  const line = text.split("\n").map((l) => l.trim()).find((l) =>
    /Permission to \S+ denied|Write access to repository not granted|Resource not accessible|does not have the correct permissions/i
      .test(l)
  );
  return line?.replace(/^remote:\s*/, "") ?? fallback;
}

/** Maps a failed gh/git call onto cal's errors. `what` says what cal was doing. */
export function ghError(what: string, r: RunResult, workspace: string): CalError {
  const text = r.stderr + "\n" + r.stdout;
  const line = reason(r);
  for (const said of r.stderr.split("\n").map((l) => l.trim())) {
    const tool = MISSING_TOOL.map((re) => re.exec(said)?.[1]).find(Boolean);
    if (!tool) continue;
    return new CalError(
      `${what}: \`${tool}\` is not installed in workspace "${workspace}" (${said}).`,
      {
        code: "tool-missing",
        exit: ExitCode.failed,
        hint: `Install it in the guest, e.g. with Homebrew: \`cal-vm ssh ${workspace} 'brew ` +
          `install ${/^(git|gh)$/.test(tool) ? "git gh" : tool}'\` (on Linux, the guest's ` +
          "package manager), then run the command again.",
        workspace,
      },
    );
  }
  if (/missing required scope/i.test(text)) {
    const scopes = /missing required scopes?\s*(.*)/i.exec(text)?.[1]?.trim() ?? "";
    return new CalError(
      `${what}: the token is missing a permission it needs (${scopes || line}).`,
      {
        code: "usage",
        exit: ExitCode.usage,
        hint: "Use a token with repository access to Contents (read and write), Pull requests " +
          "(read and write) and Metadata (read); a classic token needs the repo and read:org scopes.",
        workspace,
      },
    );
  }
  if (PERMISSION_DENIED.test(text)) {
    const needed = permissionFor(what, text);
    return new CalError(
      `${what}: the token is missing a permission it needs (${deniedLine(text, line)}).`,
      {
        code: "usage",
        exit: ExitCode.usage,
        hint: `Give the token ${needed} on this repository (a fine-grained token's Repository ` +
          "permissions; the repository must be among those it can access; a classic token needs " +
          `the repo scope; its account needs that access too), then log in again: \`cal-gh auth login ${workspace} --token-stdin\`. ` +
          "Nothing was changed on GitHub.",
        workspace,
      },
    );
  }
  if (REPO_NOT_FOUND.test(text)) {
    return notFound(
      `${what}: the repository was not found (${line}).`,
      "Check the owner/name, and that the token can see it.",
      workspace,
    );
  }
  if (NETWORK.test(text)) {
    return new CalError(`${what}: the guest cannot reach GitHub (${line}).`, {
      code: "network",
      hint: "Check the workspace's network (`cal-vm health " + workspace + "`) and retry; " +
        "nothing was changed.",
      workspace,
    });
  }
  if (/non-fast-forward|\[rejected\]|fetch first|Updates were rejected/i.test(text)) {
    return wrongState(
      `${what}: the remote has commits this branch does not (the push was rejected).`,
      "Nothing was lost. Integrate them in the guest (`cal-vm ssh " + workspace +
        " 'cd ~/workspace/REPO && git pull --rebase'`), then push again; cal never force-pushes.",
      workspace,
      "push-rejected",
    );
  }
  if (
    /Authentication failed|could not read Username|HTTP 401|Bad credentials|not logged in|authentication required|gh auth login/i
      .test(text)
  ) {
    return new CalError(`${what}: GitHub refused the credentials (${line}).`, {
      code: "auth-failed",
      hint: `Log in inside the workspace: \`cal-gh auth login ${workspace}\` (or --token-stdin).`,
      workspace,
    });
  }
  return new CalError(`${what} failed: ${line}`, { code: "failed", workspace });
}
