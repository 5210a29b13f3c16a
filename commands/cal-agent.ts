/**
 * cal-agent: agents in a workspace, and running them. Thin: parses arguments, calls lib/.
 *
 *   cal-agent list WS      cal-agent install|update WS AGENT [--method M]     cal-agent use WS AGENT
 *   cal-agent configure WS [AGENT]
 *   cal-agent run WS [--agent A] [--prompt P] [--autonomous] [--yes] [--timeout S] [--repo R] [--pass-key]
 */

import type { Command } from "@commander-js/extra-typings";
import pc from "picocolors";
import {
  type Context,
  MAX_TIMEOUT_S,
  namesOrStdin,
  newContext,
  outputOptions,
  positiveInt,
  rootProgram,
  runAsProcess,
  runProgram,
} from "../lib/cli.ts";
import {
  configureInWorkspace,
  installAgent,
  listAgents,
  updateAgent,
  useAgent,
} from "../lib/agents/manage.ts";
import { runAgent } from "../lib/agents/run.ts";
import { table } from "../lib/output.ts";
import type { AgentRecord } from "../lib/records.ts";

function agentTable(rs: AgentRecord[]): string {
  return table(
    ["agent", "installed", "version", "active", "source"],
    rs.map((r) => [
      r.agent,
      r.installed ? pc.green("yes") : "no",
      r.version ?? "-",
      r.active ? "●" : "",
      r.source,
    ]),
  );
}

export function program(ctx: Context): Command {
  const out = ctx.out;
  const p = rootProgram(
    "cal-agent",
    "Install, choose, configure and run coding agents in a workspace.",
  );

  outputOptions(
    p.command("list").alias("ls").description("the agents cal knows, and which are installed")
      .argument("<workspace>", "workspace name"),
  ).action(async (ws) => {
    const rs = [];
    for (const n of await namesOrStdin(ws)) rs.push(...await listAgents(n));
    out.records(rs, agentTable);
  });

  outputOptions(
    p.command("install").description("install an agent in the workspace")
      .argument("<workspace>", "workspace name")
      .argument(
        "<agent>",
        "claude-code, opencode, cursor-cli, codex, gemini, or a community plugin",
      )
      .option("--method <name>", "install method (default: the recommended one, then fallbacks)"),
  ).action(async (ws, agent, o) => {
    const r = await installAgent(ws, agent, { method: o.method }, out);
    out.records(
      [r],
      ([r]) => `Installed ${r.display_name} ${r.version ?? ""} in "${ws}" (${r.method}).`,
    );
  });

  outputOptions(
    p.command("update").description("update an installed agent the way it was installed")
      .argument("<workspace>", "workspace name")
      .argument("<agent>", "agent name"),
  ).action(async (ws, agent) => {
    const r = await updateAgent(ws, agent, out);
    out.records([r], ([r]) => `${r.display_name} is at ${r.version ?? "an unknown version"}.`);
  });

  outputOptions(
    p.command("use").description("make an agent the workspace's active one")
      .argument("<workspace>", "workspace name")
      .argument("<agent>", "agent name"),
  ).action(async (ws, agent) => {
    const vm = await useAgent(ws, agent);
    const recs = (await listAgents(ws)).filter((r) => r.agent === vm.agent);
    for (const r of recs) {
      if (!r.installed) {
        out.warn(
          `${r.display_name} is not installed yet: \`cal-agent install ${ws} ${r.agent}\`.`,
          ws,
        );
      }
    }
    out.records(recs, () => `"${ws}" now uses ${vm.agent}.`);
  });

  outputOptions(
    p.command("configure").description("write the agent's config and permission files in the guest")
      .argument("<workspace>", "workspace name")
      .argument("[agent]", "agent name (default: the active one)")
      .option("--repo <name>", "the repository the agent works in"),
  ).action(async (ws, agent, o) => {
    const r = await configureInWorkspace(ws, agent, await ctx.config(), { repo: o.repo });
    out.text(`Configured ${r.agent}: ${r.files.join(", ")}`);
  });

  outputOptions(
    p.command("run").description("run the agent: interactive, or headless with --prompt")
      .argument("<workspace>", "workspace name")
      .option("--agent <name>", "agent to run (default: the workspace's active one)")
      .option("--prompt <text>", "run headless with this prompt and report a run record")
      .option("--autonomous", "the agent's own full-permission mode (the VM is the boundary)")
      .option("-y, --yes", "skip the launch confirmation")
      .option(
        "--timeout <seconds>",
        "headless: stop the agent after this long (exit 124)",
        positiveInt("--timeout", MAX_TIMEOUT_S),
      )
      .option("--repo <name>", "the repository to work in (default: the first cloned)")
      .option("--no-snapshot", "skip the session-start snapshot")
      .option(
        "--pass-key",
        "put the real agent key into the guest when cal's proxy cannot keep it on the host",
      ),
  ).action(async (ws, o) => {
    const r = await runAgent(
      ws,
      {
        agent: o.agent,
        prompt: o.prompt,
        autonomous: o.autonomous,
        yes: o.yes,
        timeout: o.timeout,
        repo: o.repo,
        noSnapshot: o.snapshot === false,
        passKey: o.passKey,
      },
      await ctx.config(),
      out,
    );
    if (!r) return;
    ctx.exitCode = r.exit;
    if (r.mode === "headless") {
      out.records(
        [r],
        ([r]) => r.result ?? `${r.agent} exited with ${r.exit} after ${r.duration_s} s.`,
      );
    } else if (out.json) out.record(r);
  });

  return p;
}

export async function main(args: string[]): Promise<number> {
  const ctx = newContext(args);
  return await runProgram(program(ctx), args, ctx);
}

if (import.meta.main) await runAsProcess(main);
