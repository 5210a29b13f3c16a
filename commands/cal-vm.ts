/**
 * cal-vm: workspace lifecycle. Thin: parses arguments, calls lib/, emits records.
 *
 *   cal-vm init NAME [--cpu N] [--memory MB] [--disk GB] [--image REF] [--provider P]
 *               [--template T] [--env E]... [--agent A]
 *   cal-vm start|stop|destroy|status|ip|health NAME|-
 *   cal-vm ssh NAME [COMMAND]      cal-vm exec NAME -- ARGV...
 *   cal-vm list                    cal-vm cleanup [--stopped] [--all] [--cache]
 */

import { Command } from "@commander-js/extra-typings";
import pc from "picocolors";
import {
  collect,
  type Context,
  MAX_TIMEOUT_S,
  namesOrStdin,
  networkMode,
  newContext,
  outputOptions,
  positiveInt,
  rootProgram,
  runAsProcess,
  runProgram,
} from "../lib/cli.ts";
import { wrongState } from "../lib/errors.ts";
import { health, list, status } from "../lib/inspect.ts";
import { init, start, stop } from "../lib/lifecycle.ts";
import { planInit } from "../lib/environments/templates.ts";
import { getAgent } from "../lib/agents/registry.ts";
import { ago, table } from "../lib/output.ts";
import { PROVIDERS } from "../lib/providers/registry.ts";
import type { CheckRecord, RepoRecord, WorkspaceRecord } from "../lib/records.ts";
import { repoStatuses, repoText } from "../lib/github/status.ts";
import { quoteArgs } from "../lib/shell.ts";
import { cleanup, destroy } from "../lib/teardown.ts";
import { connect, load, type Loaded } from "../lib/workspace.ts";
import type { Guest } from "../lib/guest/ssh.ts";
import { netCommand } from "./vm_net.ts";
import { modeWords } from "../lib/network/manage.ts";

const stateColor = (s: string) =>
  s === "running"
    ? pc.green(s)
    : s === "stopped"
    ? s
    : s === "suspended"
    ? pc.yellow(s)
    : pc.red(s);

export function workspaceTable(rs: WorkspaceRecord[]): string {
  if (!rs.length) return "No workspaces yet. Create one with `cal-vm init NAME`.";
  return table(
    ["name", "state", "provider", "cpu", "memory", "disk", "size", "created"],
    rs.map((r) => [
      r.workspace,
      stateColor(r.state),
      r.provider,
      String(r.cpu),
      `${r.memory} MB`,
      `${r.disk} GB`,
      r.size_gb === undefined ? "-" : `${r.size_gb} GB`,
      ago(r.created_at),
    ]),
  ) + rs.filter((r) => r.problem).map((r) => `\n${r.workspace}: ${r.problem}`).join("");
}

export function statusText(r: WorkspaceRecord): string {
  const lines = [
    `VM: ${r.workspace} (${stateColor(r.state)})`,
    ...(r.ip ? [`IP: ${r.ip}`] : []),
    `Provider: ${r.provider} (${r.vm})`,
    ...(r.isolation ? [`Isolation: ${r.isolation}`] : []),
    ...(r.network ? [`Network: ${modeWords(r.network)}`] : []),
    `Resources: ${r.cpu} CPU, ${r.memory} MB memory, ${r.disk} GB disk` +
    (r.size_gb !== undefined ? ` (${r.size_gb} GB used on the host)` : ""),
    `Image: ${r.base_image}`,
    `Agent: ${r.agent ?? "(none)"}`,
    `Environments: ${r.environments.length ? r.environments.join(", ") : "(none)"}`,
    `Created: ${ago(r.created_at)}`,
  ];
  if (r.problem) lines.push(pc.red(`Problem: ${r.problem}`));
  return lines.join("\n");
}

function checksText(rs: CheckRecord[]): string {
  return rs.map((c) => `${c.ok ? pc.green("✓") : pc.red("✗")} ${c.check}: ${c.detail}`).join("\n");
}

export function program(ctx: Context): Command {
  const out = ctx.out;
  const p = rootProgram("cal-vm", "Create, start, stop and inspect isolated workspaces.");

  outputOptions(
    p.command("init").description("create a workspace: a new VM cloned from the base image")
      .argument("<name>", "workspace name (lowercase letters, digits, - _ .)")
      .option("--cpu <n>", "CPU cores", positiveInt("--cpu", 1024))
      .option("--memory <mb>", "memory in MB", positiveInt("--memory", 16 * 1024 * 1024))
      .option("--disk <gb>", "disk size in GB", positiveInt("--disk", 1024 * 1024))
      .option("--image <ref>", "base image (default from config)")
      .option("--provider <name>", `where the workspace runs: ${PROVIDERS.join(", ")}`)
      .option(
        "--network <mode>",
        "egress: allowlist (default: only what the policy allows, through cal's proxy), " +
          "open (the host's network as it is) or none",
        networkMode,
      )
      .option(
        "--allow <pattern>",
        "also allow this host, *.domain, IP or CIDR (with :port) or @preset (repeatable)",
        collect,
      )
      .option("--template <name>", "start from a VM template (`cal-env templates` lists them)")
      .option(
        "--env <environment>",
        "an environment to install on first start (repeatable)",
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option("--agent <name>", "the workspace's agent"),
  ).action(async (name, o) => {
    if (o.provider && !(PROVIDERS as readonly string[]).includes(o.provider)) {
      const { usageError } = await import("../lib/errors.ts");
      throw usageError(`Unknown provider "${o.provider}".`, `Use one of: ${PROVIDERS.join(", ")}.`);
    }
    const plan = await planInit(o.template, o.env ?? []);
    if (o.agent) await getAgent(o.agent); // unknown agent: exit 2 listing the known ones
    const r = await init(name, await ctx.config(), {
      ...(plan.template ? { template: plan.template } : {}),
      environments: plan.environments,
      ...(o.agent ? { agent: o.agent } : {}),
      settings: {
        ...(o.cpu ? { cpu: o.cpu } : {}),
        ...(o.memory ? { memory: o.memory } : {}),
        ...(o.disk ? { disk_size: o.disk } : {}),
        ...(o.image ? { base_image: o.image } : {}),
        ...(o.provider ? { provider: o.provider as "tart" | "sandbox" } : {}),
      },
      ...(o.network ? { network: o.network } : {}),
      ...(o.allow ? { allow: o.allow } : {}),
    }, out);
    out.records(
      [r],
      ([r]) =>
        `Created workspace "${r.workspace}" (${r.provider} VM ${r.vm}: ${r.cpu} CPU, ${r.memory} MB, ` +
        `${r.disk} GB).\nStart it with \`cal-vm start ${r.workspace}\`` +
        (r.environments.length
          ? `; it installs ${r.environments.join(", ")} on first start.`
          : "."),
    );
  });

  outputOptions(
    p.command("start").description("start a workspace and wait until SSH works")
      .argument("<name>", "workspace name, or - for records on stdin")
      .option("--headless", "no window (the default)")
      .option("--vnc", "also start a VNC server for the GUI")
      .option(
        "--timeout <seconds>",
        "how long to wait for the guest",
        positiveInt("--timeout", MAX_TIMEOUT_S),
      ),
  ).action(async (name, o) => {
    for (const n of await namesOrStdin(name)) {
      const r = await start(n, await ctx.config(), { vnc: o.vnc, timeout: o.timeout }, out);
      out.records(
        [r],
        ([r]) =>
          `Workspace "${r.workspace}" is running at ${r.ip}. Connect with \`cal-vm ssh ${r.workspace}\`.`,
      );
    }
  });

  outputOptions(
    p.command("stop").description("flush the guest's disks and stop the workspace")
      .argument("<name>", "workspace name, or - for records on stdin")
      .option("--force", "stop at once, without flushing the guest's disks"),
  ).action(async (name, o) => {
    for (const n of await namesOrStdin(name)) {
      const r = await stop(n, { force: o.force }, out);
      out.records([r], ([r]) => `Stopped workspace "${r.workspace}".`);
    }
  });

  outputOptions(
    p.command("destroy").description("delete a workspace, its VM, its snapshots and metadata")
      .argument("<name>", "workspace name, or - for records on stdin")
      .option("-y, --yes", "do not ask for confirmation")
      .option("--force", "stop a running workspace first"),
  ).action(async (name, o) => {
    for (const n of await namesOrStdin(name)) {
      const r = await destroy(n, { yes: o.yes, force: o.force }, out);
      out.records([r], ([r]) => `Destroyed workspace "${r.workspace}".`);
    }
  });

  outputOptions(p.command("list").alias("ls").description("list workspaces"))
    .action(async () => {
      out.records(await list(), workspaceTable);
    });

  outputOptions(
    p.command("status").description(
      "show a workspace's state, address, resources, agent, environments and repositories",
    )
      .argument("<name>", "workspace name, or - for records on stdin"),
  ).action(async (name) => {
    for (const n of await namesOrStdin(name)) {
      const r = await status(n);
      // Repositories live in the guest: only a running workspace can report them.
      const repos = r.state === "running" ? await repoStatuses(n) : [];
      out.records([r, ...repos], ([r, ...repos]) =>
        statusText(r as WorkspaceRecord) +
        (repos.length ? `\nRepos:\n${(repos as RepoRecord[]).map(repoText).join("\n")}` : ""));
    }
  });

  outputOptions(
    p.command("ip").description("print a running workspace's IP address")
      .argument("<name>", "workspace name"),
  ).action(async (arg, o) => {
    for (const name of await namesOrStdin(arg)) {
      const w = await load(name);
      const ep = await w.provider.endpoint(w.machine);
      const info = ep ? undefined : await w.provider.get(w.machine);
      if (!ep) {
        throw wrongState(
          `Workspace "${name}" has no IP address (${info?.state ?? "its machine is gone"}).`,
          `Start it with \`cal-vm start ${name}\`.`,
          name,
        );
      }
      // A scalar, like `tart ip`: plain text unless --json is asked for explicitly.
      if (o.json) out.record({ ...(await status(name)), ip: ep.host });
      else out.raw(ep.host + "\n");
    }
  });

  p.command("ssh").description("open a shell in the workspace, or run one command line")
    .argument("<name>", "workspace name")
    .argument("[command...]", "a command line for the guest's shell (quote it as one argument)")
    .action(async (name, words) => {
      const w = await load(name);
      const guest = await connect(w);
      ctx.exitCode = await guest.interactive(words.length ? words.join(" ") : undefined);
      if (ctx.exitCode === 255) await explain255(w, guest);
    });

  p.command("exec").description("run a program in the workspace, arguments passed exactly")
    .argument("<name>", "workspace name")
    .argument("<argv...>", "the program and its arguments (put -- before them)")
    .action(async (name, argv) => {
      const w = await load(name);
      const guest = await connect(w);
      ctx.exitCode = await guest.interactive(quoteArgs(argv));
      if (ctx.exitCode === 255) await explain255(w, guest);
    });

  outputOptions(
    p.command("health").description("check that a workspace is up and reachable")
      .argument("<name>", "workspace name, or - for records on stdin"),
  ).action(async (name) => {
    for (const n of await namesOrStdin(name)) {
      const checks = await health(n, await ctx.config());
      out.records(checks, checksText);
      if (checks.some((c) => !c.ok)) ctx.exitCode = 1;
    }
  });

  outputOptions(
    p.command("cleanup").description("remove half-made workspaces and machines left behind")
      .option("--stopped", "also destroy every stopped workspace")
      .option("--all", "destroy every workspace (running ones are stopped)")
      .option("--cache", "also prune image caches unused for 30 days")
      .option("-y, --yes", "do not ask for confirmation"),
  ).action(async (o) => {
    const providers = [...PROVIDERS];
    const removed = await cleanup(o, providers, out);
    out.records(
      removed,
      (rs) => rs.length ? rs.map((r) => `Destroyed workspace "${r.workspace}".`).join("\n") : "",
    );
  });

  p.addCommand(netCommand(ctx));
  return p;
}

/**
 * ssh exits 255 both for its own failures and for a remote command's `exit 255`: find out which,
 * and turn ssh's failures into cal's errors (not running: exit 4; refused: exit 1 with a hint).
 */
async function explain255(w: Loaded, guest: Guest) {
  const info = await w.provider.get(w.machine);
  if (info?.state !== "running") {
    throw wrongState(
      `Workspace "${w.vm.name}" is not running (${info?.state ?? "its machine is gone"}).`,
      `Start it with \`cal-vm start ${w.vm.name}\`.`,
      w.vm.name,
    );
  }
  const probe = await guest.probe();
  if (!probe.ok) throw guest.sshError(probe.reason);
}

export async function main(args: string[]): Promise<number> {
  const ctx = newContext(args);
  return await runProgram(program(ctx), args, ctx);
}

if (import.meta.main) await runAsProcess(main);
