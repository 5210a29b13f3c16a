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
  /Could not resolve host|could not resolve|no such host|Connection refused|connection refused|Failed to connect|Network is unreachable|timed out|dial tcp|connection reset|error connecting to/i;

/** Maps a failed gh/git call onto cal's errors. `what` says what cal was doing. */
export function ghError(what: string, r: RunResult, workspace: string): CalError {
  const text = r.stderr + "\n" + r.stdout;
  const line = reason(r);
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
  if (/Could not resolve to a Repository|repository not found|not found|HTTP 404/i.test(text)) {
    return notFound(
      `${what}: the repository was not found (${line}).`,
      "Check the owner/name, and that the token can see it.",
      workspace,
    );
  }
  if (NETWORK.test(text)) {
    return new CalError(`${what}: the guest cannot reach GitHub (${line}).`, {
      code: "failed",
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
    );
  }
  if (
    /Authentication failed|could not read Username|HTTP 401|Bad credentials|not logged in|authentication required|gh auth login/i
      .test(text)
  ) {
    return new CalError(`${what}: GitHub refused the credentials (${line}).`, {
      code: "failed",
      hint: `Log in inside the workspace: \`cal-gh auth login ${workspace}\` (or --token-stdin).`,
      workspace,
    });
  }
  return new CalError(`${what} failed: ${line}`, { code: "failed", workspace });
}
