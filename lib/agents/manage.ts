/** Installing, detecting, updating, choosing and configuring agents in a workspace. */

import type { Config } from "../config.ts";
import { CalError, ExitCode, usageError, wrongState } from "../errors.ts";
import { reason } from "../process.ts";
import type { Guest } from "../guest/ssh.ts";
import type { Output } from "../output.ts";
import type { AgentRecord } from "../records.ts";
import { updateVm, type VmFile } from "../store.ts";
import { connect, load, type Loaded } from "../workspace.ts";
import { configureAgent } from "./configure.ts";
import type { AgentContext, AgentPlugin } from "./plugin.ts";
import { allAgents, getAgent } from "./registry.ts";

export interface Detected {
  binary: string;
  version?: string;
}

/** Finds the agent's binary in the guest (preferred name first) and its version. */
export async function detect(guest: Guest, plugin: AgentPlugin): Promise<Detected | undefined> {
  const script =
    'for b in "$@"; do if command -v "$b" >/dev/null 2>&1; then echo "$b"; exit 0; fi; done; exit 3';
  const found = await guest.exec(["sh", "-c", script, "cal-detect", ...plugin.binaries]);
  if (found.code !== 0) return undefined;
  const binary = found.stdout.trim().split("\n")[0];
  const v = await guest.exec([binary, ...plugin.versionArgs], { timeoutMs: 60_000 });
  return { binary, version: plugin.parseVersion(v.stdout + "\n" + v.stderr) };
}

/** Where the agent works: the chosen (or first) cloned repository, else ~/workspace. */
export async function workdirOf(guest: Guest, vm: VmFile, repo?: string): Promise<string> {
  const home = await guest.home();
  const repos = vm.github?.repos ?? [];
  if (repo) {
    if (!repos.some((r) => r.name === repo)) {
      throw usageError(
        `Workspace "${vm.name}" has no repository named "${repo}".`,
        repos.length
          ? `Its repositories: ${repos.map((r) => r.name).join(", ")}.`
          : "Clone one first.",
      );
    }
    return `${home}/workspace/${repo}`;
  }
  if (repos[0]) return `${home}/workspace/${repos[0].name}`;
  await guest.exec(["mkdir", "-p", `${home}/workspace`]);
  return `${home}/workspace`;
}

/** This workspace's agent_config for the agent over the global `agents:` block. */
export function agentSettings(vm: VmFile, config: Config, name: string): Record<string, unknown> {
  return { ...(config.agents[name] ?? {}), ...(vm.agent_config?.[name] ?? {}) };
}

export async function contextFor(
  w: Loaded,
  guest: Guest,
  plugin: AgentPlugin,
  config: Config,
  opts: { repo?: string; version?: string; credentials?: Record<string, string> } = {},
): Promise<AgentContext> {
  return {
    home: await guest.home(),
    workdir: await workdirOf(guest, w.vm, opts.repo),
    settings: agentSettings(w.vm, config, plugin.name),
    version: opts.version,
    credentials: Object.keys(opts.credentials ?? {}),
  };
}

/** The record of an agent in a workspace, from what was detected in the guest. */
async function agentRecord(
  vm: VmFile,
  plugin: AgentPlugin,
  d: Detected | undefined,
): Promise<AgentRecord> {
  const source = (await allAgents()).find((a) => a.plugin.name === plugin.name)?.source ??
    "builtin";
  const method = vm.agents?.[plugin.name]?.method;
  return {
    kind: "agent",
    workspace: vm.name,
    agent: plugin.name,
    display_name: plugin.displayName,
    installed: !!d,
    ...(d?.version ? { version: d.version } : {}),
    ...(method ? { method } : {}),
    active: vm.agent === plugin.name,
    source,
  };
}

export async function listAgents(name: string): Promise<AgentRecord[]> {
  const w = await load(name);
  const guest = await connect(w);
  const records: AgentRecord[] = [];
  for (const { plugin } of await allAgents()) {
    records.push(await agentRecord(w.vm, plugin, await detect(guest, plugin)));
  }
  return records;
}

async function runScript(guest: Guest, script: string, out: Output, ws: string) {
  return await guest.exec(["sh", "-c", script], {
    onLine: (line) => out.event("progress", line, { workspace: ws }),
    timeoutMs: 30 * 60_000,
  });
}

export async function installAgent(
  name: string,
  agentName: string,
  opts: { method?: string },
  out: Output,
): Promise<AgentRecord> {
  const plugin = await getAgent(agentName);
  const methods = opts.method
    ? plugin.install.filter((m) => m.name === opts.method)
    : plugin.install;
  if (!methods.length) {
    throw usageError(
      `${plugin.displayName} has no install method "${opts.method}".`,
      `Methods: ${plugin.install.map((m) => m.name).join(", ")}.`,
    );
  }
  const w = await load(name);
  const guest = await connect(w);
  const failures: string[] = [];
  for (const m of methods) {
    out.event("install", `Installing ${plugin.displayName} (${m.describe})…`, { workspace: name });
    const r = await runScript(guest, m.script, out, name);
    const d = r.code === 0 ? await detect(guest, plugin) : undefined;
    if (d) {
      await updateVm(name, (vm) => {
        vm.agents = {
          ...vm.agents,
          [plugin.name]: {
            method: m.name,
            ...(d.version ? { version: d.version } : {}),
            installed_at: new Date().toISOString(),
          },
        };
        vm.agent ??= plugin.name;
      });
      return await agentRecord((await load(name)).vm, plugin, d);
    }
    const said = failureLine(r.stderr + "\n" + r.stdout) ?? `exit ${r.code}`;
    failures.push(`${m.name}: ${r.code === 0 ? "installed nothing cal can find on PATH" : said}`);
    out.warn(`${m.name} install of ${plugin.displayName} failed: ${failures.at(-1)}`, name);
  }
  throw new CalError(
    `Could not install ${plugin.displayName} in "${name}":\n  ${failures.join("\n  ")}`,
    {
      hint:
        `Check the guest's network, or pick a method: \`cal-agent install ${name} ${plugin.name} --method ${
          plugin.install.map((m) => m.name).join("|")
        }\`.`,
      workspace: name,
    },
  );
}

export async function updateAgent(
  name: string,
  agentName: string,
  out: Output,
): Promise<AgentRecord> {
  const plugin = await getAgent(agentName);
  const w = await load(name);
  const guest = await connect(w);
  const before = await detect(guest, plugin);
  if (!before) throw notInstalled(plugin, name);
  const method = w.vm.agents?.[plugin.name]?.method ?? plugin.install[0].name;
  const script = plugin.update?.[method] ?? plugin.install.find((m) => m.name === method)?.script;
  if (!script) throw new CalError(`${plugin.displayName} has no update for method "${method}".`);
  out.event("update", `Updating ${plugin.displayName} (${method})…`, { workspace: name });
  const r = await runScript(guest, script, out, name);
  if (r.code !== 0) {
    throw new CalError(
      `Updating ${plugin.displayName} failed: ${reason(r)}`,
      {
        hint: "The installed version is unchanged.",
        workspace: name,
      },
    );
  }
  const d = await detect(guest, plugin);
  await updateVm(name, (vm) => {
    vm.agents = {
      ...vm.agents,
      [plugin.name]: {
        method,
        ...(d?.version ? { version: d.version } : {}),
        installed_at: new Date().toISOString(),
      },
    };
  });
  out.event("update", `${plugin.displayName} ${before.version ?? "?"} → ${d?.version ?? "?"}`, {
    workspace: name,
  });
  return await agentRecord((await load(name)).vm, plugin, d);
}

/** The most telling line of an installer's output: its reason, else its last line. */
export function failureLine(text: string): string | undefined {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.find((l) =>
    /reason:|ERR!|^Error:|error code|not found|No such|Permission denied/i.test(l)
  ) ??
    lines.pop();
}

export function notInstalled(plugin: AgentPlugin, ws: string): CalError {
  return new CalError(`${plugin.displayName} is not installed in "${ws}".`, {
    code: "wrong-state",
    exit: ExitCode.wrongState,
    hint: `Install it: \`cal-agent install ${ws} ${plugin.name}\`.`,
    workspace: ws,
  });
}

export async function useAgent(name: string, agentName: string): Promise<VmFile> {
  const plugin = await getAgent(agentName);
  return await updateVm(name, (vm) => {
    vm.agent = plugin.name;
  });
}

export async function configureInWorkspace(
  name: string,
  agentName: string | undefined,
  config: Config,
  opts: { repo?: string },
): Promise<{ agent: string; files: string[] }> {
  const w = await load(name);
  const chosen = agentName ?? w.vm.agent;
  if (!chosen) {
    throw wrongState(
      `Workspace "${name}" has no active agent.`,
      `Choose one: \`cal-agent use ${name} claude-code\`.`,
      name,
    );
  }
  const plugin = await getAgent(chosen);
  const guest = await connect(w);
  const d = await detect(guest, plugin);
  const ctx = await contextFor(w, guest, plugin, config, { repo: opts.repo, version: d?.version });
  return { agent: plugin.name, files: await configureAgent(guest, plugin, ctx) };
}
