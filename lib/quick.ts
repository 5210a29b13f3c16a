/**
 * `cal quick`: the main job in one command (the spec's "Quick start"): make the workspace if it
 * does not exist, start it, clone the repository onto a new branch, let the agent work (or run a
 * command in the repository), and commit the result, pushing it and opening a pull request when
 * asked. Each step is the same library call the single verbs make, so it stops at the first
 * failure with that verb's message and exit code; what was done stays done.
 */

import type { Config } from "./config.ts";
import { runAgent } from "./agents/run.ts";
import { resolveCredentials } from "./agents/credentials.ts";
import { getAgent } from "./agents/registry.ts";
import { CalError, usageError } from "./errors.ts";
import { noLogin } from "./github/api.ts";
import { hostToken } from "./github/token.ts";
import type { NetworkMode } from "./network/policy.ts";
import { readVm } from "./store.ts";
import { reason } from "./process.ts";
import { checkRepoSlug, clone, commit } from "./github/repos.ts";
import { init, start } from "./lifecycle.ts";
import type { Output } from "./output.ts";
import type { CalRecord } from "./records.ts";
import { exists } from "./store.ts";
import { paths } from "./paths.ts";
import { quote } from "./shell.ts";
import { connect, load } from "./workspace.ts";

export interface QuickOptions {
  repo: string;
  branch?: string;
  agent?: string;
  prompt?: string;
  /** A shell command line to run in the repository instead of an agent. */
  command?: string;
  provider?: "tart" | "sandbox";
  message?: string;
  push?: boolean;
  pr?: boolean;
  autonomous?: boolean;
  /** Put the real agent key into the guest where cal's proxy cannot swap it (a warning). */
  passKey?: boolean;
  /** For a new workspace: its egress mode and extra allowed rules. */
  network?: NetworkMode;
  allow?: string[];
}

/**
 * Every credential the job will need, checked before anything is made or changed: the agent's
 * key (on the host, never in the guest) and a GitHub login (the host's, which the broker uses,
 * or the workspace's own).
 */
async function checkCredentials(name: string, o: QuickOptions, config: Config): Promise<void> {
  const vm = await readVm(name).catch(() => undefined);
  if (o.command === undefined) {
    const agent = o.agent ?? vm?.agent;
    if (!agent) {
      throw usageError(
        `cal quick needs to know which agent runs in "${name}".`,
        "Pass --agent (e.g. --agent claude-code), or --command to run a command instead.",
      );
    }
    await resolveCredentials(await getAgent(agent)); // a missing key: exit 2, saying where to put it
  }
  const host = config.github.host ?? "github.com";
  if (!vm?.github?.authenticated && !(await hostToken(host))) {
    throw noLogin(host, name, " Nothing was created.");
  }
}

export async function quick(
  name: string,
  o: QuickOptions,
  config: Config,
  out: Output,
): Promise<CalRecord[]> {
  const repoName = checkRepoSlug(o.repo); // before anything is made
  await checkCredentials(name, o, config);
  const records: CalRecord[] = [];
  if (!(await exists(paths.vmDir(name)))) {
    records.push(
      await init(name, config, {
        settings: o.provider ? { provider: o.provider } : {},
        ...(o.agent ? { agent: o.agent } : {}),
        ...(o.network ? { network: o.network } : {}),
        ...(o.allow ? { allow: o.allow } : {}),
      }, out),
    );
  }
  let w = await load(name);
  if ((await w.provider.get(w.machine))?.state !== "running") {
    records.push(await start(name, config, {}, out));
  }
  w = await load(name);
  if (!(w.vm.github?.repos ?? []).some((r) => r.name === repoName)) {
    records.push(
      await clone(
        name,
        { repo: o.repo, newBranch: o.branch ?? `${repoName}-${stamp()}` },
        config,
        out,
      ),
    );
  }
  if (o.command !== undefined) {
    const guest = await connect(await load(name));
    const dir = `${await guest.home()}/workspace/${repoName}`;
    out.event("command", `Running in ~/workspace/${repoName}: ${o.command}`, { workspace: name });
    const r = await guest.sh(`cd ${quote(dir)} && ${o.command}`, {
      onLine: (line) => out.event("output", line, { workspace: name }),
    });
    if (r.code !== 0) {
      throw new CalError(
        `The command failed in "${name}" (exit ${r.code}): ${reason(r)}`,
        {
          hint: "Nothing was committed; inspect the workspace with `cal-vm ssh " + name + "`.",
          workspace: name,
        },
      );
    }
  } else {
    const run = await runAgent(
      name,
      {
        agent: o.agent,
        prompt: o.prompt,
        autonomous: o.autonomous,
        yes: true,
        repo: repoName,
        ...(o.passKey ? { passKey: true } : {}),
      },
      config,
      out,
    );
    if (run) records.push(run);
    if (run && run.exit !== 0) {
      throw new CalError(`The agent exited with ${run.exit}; nothing was committed.`, {
        workspace: name,
      });
    }
  }
  const message = o.message ?? (o.prompt ? o.prompt.split("\n")[0] : `cal quick: ${o.command}`);
  records.push(
    ...await commit(name, { message, repo: repoName, push: o.push, pr: o.pr }, config, out),
  );
  return records;
}

function stamp(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${
    p(d.getMinutes())
  }`;
}
