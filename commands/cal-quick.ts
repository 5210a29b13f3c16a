/**
 * cal-quick (`cal quick`): the main job in one command: workspace, clone on a new branch, the
 * agent's work (or a command), and the commit, pushed or opened as a pull request on request.
 *
 *   cal quick WS --repo OWNER/REPO [--branch B] (--prompt P [--agent A] | --command C)
 *                [--message M] [--push] [--pr] [--provider tart|sandbox]
 */

import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import {
  collect,
  type Context,
  networkMode,
  newContext,
  outputOptions,
  rootProgram,
  runAsProcess,
  runProgram,
} from "../lib/cli.ts";
import { usageError } from "../lib/errors.ts";
import { quick } from "../lib/quick.ts";

function provider(v: string): "tart" | "sandbox" {
  if (v !== "tart" && v !== "sandbox") {
    throw new InvalidArgumentError("--provider is tart or sandbox.");
  }
  return v;
}

export function program(ctx: Context): Command {
  const out = ctx.out;
  const p = rootProgram(
    "cal-quick",
    "The main job in one command: workspace, clone, agent, commit.",
  );
  outputOptions(
    p.argument("<workspace>", "workspace name (created if it does not exist)")
      .requiredOption("--repo <owner/name>", "the repository to work on")
      .option(
        "--branch <name>",
        "the new branch for the work (default: <repo>-<date>-<time>, prefixed agent/)",
      )
      .option("--prompt <text>", "what the agent should do (headless)")
      .option("--agent <name>", "which agent (default: the workspace's active one)")
      .option("--autonomous", "the agent's full-permission mode (the VM is the boundary)")
      .option(
        "--command <line>",
        "run this shell command line in the repository instead of an agent",
      )
      .option("-m, --message <text>", "the commit message (default: the prompt's first line)")
      .option("--push", "push the branch")
      .option("--pr", "push and open a pull request")
      .option("--provider <name>", "tart or sandbox, for a new workspace", provider)
      .option(
        "--network <mode>",
        "for a new workspace: allowlist (default), open or none",
        networkMode,
      )
      .option(
        "--allow <pattern>",
        "for a new workspace: also allow this host, *.domain, IP/CIDR[:port] or @preset (repeatable)",
        collect,
      )
      .option(
        "--pass-key",
        "put the real agent key into the guest where cal's proxy cannot keep it on the host",
      ),
  ).action(async (ws, o) => {
    if (!o.prompt && o.command === undefined) {
      throw usageError(
        "Tell cal what to do.",
        'Pass --prompt "..." for the agent, or --command "...".',
      );
    }
    if (o.prompt && o.command !== undefined) {
      throw usageError("--prompt and --command exclude each other.", "Pass one.");
    }
    const rs = await quick(ws, { ...o, repo: o.repo }, await ctx.config(), out);
    out.records(
      rs,
      (rs) =>
        rs.map((r) =>
          r.kind === "pr"
            ? `Pull request: ${r.url}`
            : r.kind === "repo" && r.commit
            ? `Committed ${r.commit.slice(0, 7)} on ${r.branch}${r.pushed ? " (pushed)" : ""}`
            : ""
        ).filter(Boolean).join("\n"),
    );
  });
  return p;
}

export async function main(args: string[]): Promise<number> {
  const ctx = newContext(args);
  return await runProgram(program(ctx), args, ctx);
}

if (import.meta.main) await runAsProcess(main);
