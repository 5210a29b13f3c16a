/**
 * Where a workspace's policy comes from, and the policy it adds up to.
 *
 * The effective policy = the default presets + config `isolation.network` + the workspace's own
 * file, `<vmDir>/network.json` (its own file, not vm.yaml, so `net allow` can change it while
 * the proxy runs: the proxy re-reads it when its mtime changes).
 */

import { join } from "node:path";
import { z } from "zod";
import { CalError, ExitCode, usageError } from "../errors.ts";
import { paths } from "../paths.ts";
import { readVm, writeFileAtomic } from "../store.ts";
import { loadConfig } from "../config.ts";
import { MODES, type NetworkMode, type Policy, type Rule } from "./policy.ts";
import {
  DEFAULT_PRESETS,
  entryProblem,
  type PresetContext,
  presetHosts,
  presetNames,
} from "./presets.ts";

export const WorkspaceNetwork = z.strictObject({
  mode: z.enum(MODES).optional(),
  allow: z.array(z.string()).default([]),
  deny: z.array(z.string()).default([]),
});
export type WorkspaceNetwork = z.infer<typeof WorkspaceNetwork>;

export interface NetworkConfig {
  mode?: NetworkMode;
  allow?: string[];
  deny?: string[];
}

export const networkFile = (name: string) => join(paths.vmDir(name), "network.json");

/** Expands `@preset` entries into rules whose source says which layer and preset they came from. */
function expand(entries: readonly string[], layer: string, ctx: PresetContext): Rule[] {
  return entries.flatMap((e): Rule[] => {
    if (!e.startsWith("@")) return [{ pattern: e, source: layer }];
    const name = e.slice(1);
    if (name === "registries") {
      // One source per registry, so the log says which registry a connection was for.
      return presetNames().filter((n) => !["agent", "github", "registries"].includes(n))
        .flatMap((n) => expand([`@${n}`], layer, ctx))
        .concat((ctx.environmentHosts ?? []).map((h) => ({ pattern: h, source: `${layer} @env` })));
    }
    return (presetHosts(name, ctx) ?? []).map((h) => ({ pattern: h, source: `${layer} ${e}` }));
  });
}

/** The policy a workspace's proxy enforces. Pure: the inputs are already read. */
export function effectivePolicy(
  config: NetworkConfig,
  ws: WorkspaceNetwork,
  ctx: PresetContext,
): Policy {
  return {
    mode: ws.mode ?? config.mode ?? "allowlist",
    allow: [
      ...expand(DEFAULT_PRESETS, "default", ctx),
      ...expand(config.allow ?? [], "config", ctx),
      ...expand(ws.allow, "workspace", ctx),
    ],
    deny: [...expand(config.deny ?? [], "config", ctx), ...expand(ws.deny, "workspace", ctx)],
  };
}

/** The workspace's own file; absent means nothing of its own. A damaged file is an error. */
export async function readWorkspaceNetwork(name: string): Promise<WorkspaceNetwork> {
  const file = networkFile(name);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { allow: [], deny: [] };
    throw e;
  }
  const bad = (why: string) =>
    new CalError(`${file} is not a valid network policy: ${why}.`, {
      code: "invalid-config",
      exit: ExitCode.usage,
      hint: `Fix or delete it (\`cal-vm net ${name}\` then shows the policy it falls back to).`,
    });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw bad((e as Error).message);
  }
  const parsed = WorkspaceNetwork.safeParse(data);
  if (!parsed.success) {
    throw bad(
      parsed.error.issues.map((i) => `${i.path.join(".") || "file"}: ${i.message}`).join("; "),
    );
  }
  for (const entry of [...parsed.data.allow, ...parsed.data.deny]) {
    const problem = entryProblem(entry);
    if (problem) throw bad(problem);
  }
  return parsed.data;
}

export async function writeWorkspaceNetwork(name: string, ws: WorkspaceNetwork): Promise<void> {
  await writeFileAtomic(networkFile(name), JSON.stringify(ws, null, 2) + "\n", 0o600);
}

/** The preset context of a workspace: its agent's hosts and the GitHub host in use. */
export async function presetContext(name: string, githubHost?: string): Promise<PresetContext> {
  const vm = await readVm(name);
  let agentHosts: string[] = [];
  if (vm.agent) {
    const { getAgent } = await import("../agents/registry.ts");
    agentHosts = await getAgent(vm.agent).then((a) => a.hosts ?? [], () => []);
  }
  return { agentHosts, ...(githubHost ? { githubHost } : {}) };
}

/** Reads everything a workspace's policy depends on and adds it up. */
export async function loadPolicy(name: string): Promise<Policy> {
  const config = await loadConfig();
  const [ws, ctx] = await Promise.all([
    readWorkspaceNetwork(name),
    presetContext(name, config.github.host),
  ]);
  return effectivePolicy(config.network, ws, ctx);
}

/** The files `loadPolicy` reads: when none of their mtimes changed, the policy did not either. */
export function policyFiles(name: string): string[] {
  return [networkFile(name), paths.vmFile(name), paths.config()];
}

/** Validates entries for a verb; the first bad one is a usage error. */
export function checkEntries(entries: string[]): void {
  for (const e of entries) {
    const problem = entryProblem(e);
    if (problem) {
      throw usageError(
        `"${e}" cannot be a network rule: ${problem}.`,
        "Give a host (example.com), a wildcard (*.example.com), an IP or CIDR, each with an optional :port, or a @preset.",
      );
    }
  }
}

/**
 * The policy of a running workspace, re-read when one of its files changes (an mtime and size
 * check per call, so `net allow` takes effect on the next connection with no restart). Returns
 * the same object while nothing changed. A file that cannot be read throws: the proxy then
 * refuses everything and says why, rather than fall back to something more open.
 */
export function watchPolicy(name: string): () => Promise<Policy> {
  let stamp = "";
  let policy: Promise<Policy> | undefined;
  return async () => {
    const stats = await Promise.all(
      policyFiles(name).map((f) =>
        Deno.stat(f).then((s) => `${s.mtime?.getTime()}:${s.size}:${s.ino}`, () => "-")
      ),
    );
    const now = stats.join("|");
    if (now !== stamp || !policy) {
      stamp = now;
      policy = loadPolicy(name);
      // A failed read is retried on the next connection.
      policy.catch(() => (stamp = ""));
    }
    return await policy;
  };
}
