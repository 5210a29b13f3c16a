/**
 * The `cal-vm net` verbs' logic: show a workspace's policy, change its own rules and mode, read
 * and follow its decision log. Changes go to `<vmDir>/network.json` under the workspace's lock;
 * a running proxy picks them up on its next connection.
 */

import type { ConnectionRecord, NetworkRecord } from "../records.ts";
import { ConfigFile, loadConfig } from "../config.ts";
import { paths } from "../paths.ts";
import { readYamlFile } from "../yaml.ts";
import { readVm, withLock } from "../store.ts";
import { proxyPid } from "./daemon.ts";
import { type Entry, followLog, logFile, readLog } from "./log.ts";
import type { NetworkMode } from "./policy.ts";
import {
  checkEntries,
  effectivePolicy,
  loadPolicy,
  presetContext,
  readWorkspaceNetwork,
  type WorkspaceNetwork,
  writeWorkspaceNetwork,
} from "./settings.ts";

export async function show(name: string): Promise<NetworkRecord> {
  await readVm(name);
  const config = await loadConfig();
  const ws = await readWorkspaceNetwork(name);
  const policy = effectivePolicy(config.network, ws, await presetContext(name, config.github.host));
  return {
    kind: "network",
    workspace: name,
    mode: policy.mode,
    mode_from: ws.mode
      ? "workspace"
      : (await readYamlFile(paths.config(), ConfigFile))?.isolation?.network?.mode
      ? "config"
      : "default",
    allow: policy.allow,
    deny: policy.deny,
    proxy_running: proxyPid(name) !== undefined,
  };
}

async function update(name: string, fn: (ws: WorkspaceNetwork) => void): Promise<NetworkRecord> {
  await withLock(name, async () => {
    await readVm(name);
    const ws = await readWorkspaceNetwork(name);
    fn(ws);
    await writeWorkspaceNetwork(name, ws);
  });
  return await show(name);
}

/** Adds patterns to the workspace's allow list (and takes them off its own deny list). */
export function allow(name: string, patterns: string[]): Promise<NetworkRecord> {
  checkEntries(patterns);
  return update(name, (ws) => {
    ws.deny = ws.deny.filter((p) => !patterns.includes(p));
    for (const p of patterns) if (!ws.allow.includes(p)) ws.allow.push(p);
  });
}

/** Adds patterns to the workspace's deny list (and takes them off its own allow list). */
export function deny(name: string, patterns: string[]): Promise<NetworkRecord> {
  checkEntries(patterns);
  return update(name, (ws) => {
    ws.allow = ws.allow.filter((p) => !patterns.includes(p));
    for (const p of patterns) if (!ws.deny.includes(p)) ws.deny.push(p);
  });
}

export function setMode(name: string, mode: NetworkMode): Promise<NetworkRecord> {
  return update(name, (ws) => {
    ws.mode = mode;
  });
}

/**
 * The workspace's first policy, for `init --network MODE --allow PATTERN` (the providers'
 * and init's hook): written only with what was given.
 */
export async function initPolicy(
  name: string,
  opts: { mode?: NetworkMode; allow?: string[]; deny?: string[] },
): Promise<void> {
  checkEntries([...(opts.allow ?? []), ...(opts.deny ?? [])]);
  await writeWorkspaceNetwork(name, {
    ...(opts.mode ? { mode: opts.mode } : {}),
    allow: opts.allow ?? [],
    deny: opts.deny ?? [],
  });
}

/**
 * A deny rule from the config that overrides one of `patterns` (so `net allow` cannot take
 * effect), for a warning.
 */
export async function configDenies(patterns: string[]): Promise<string[]> {
  const config = await loadConfig();
  return patterns.filter((p) => config.network.deny.includes(p));
}

const toRecord = (name: string, e: Entry): ConnectionRecord => ({
  kind: "connection",
  workspace: name,
  time: e.time,
  host: e.host,
  port: e.port,
  decision: e.decision,
  rule: e.rule,
  ...(e.source ? { source: e.source } : {}),
  ...(e.reason ? { reason: e.reason } : {}),
});

export async function logRecords(name: string): Promise<ConnectionRecord[]> {
  await readVm(name);
  return (await readLog(logFile(name))).map((e) => toRecord(name, e));
}

export async function follow(
  name: string,
  onRecord: (r: ConnectionRecord) => void,
  signal: AbortSignal,
): Promise<void> {
  await readVm(name);
  await followLog(logFile(name), (e) => onRecord(toRecord(name, e)), signal);
}

/**
 * The mode a workspace's next start gives it: network.json's, else its pre-policy `--network
 * host|none` (vm.yaml options), else the config's, else allowlist. What start, status and the
 * launch screen all go by.
 */
export async function effectiveMode(name: string, initNetwork?: unknown): Promise<NetworkMode> {
  const { mode } = await loadPolicy(name);
  if (
    !(await readWorkspaceNetwork(name)).mode && (initNetwork === "host" || initNetwork === "none")
  ) {
    return initNetwork === "host" ? "open" : "none";
  }
  return mode;
}

/** How the launch screen, the banner and status word a mode. */
export function modeWords(mode: NetworkMode): string {
  return mode === "allowlist"
    ? "allowlist (out only through cal's proxy)"
    : mode === "none"
    ? "none (nothing goes out)"
    : "OPEN: the agent reaches whatever the host can";
}
