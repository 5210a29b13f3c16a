/**
 * The agents cal knows: the built-in plugins and community plugins from `~/.cal/agents/*.ts`,
 * which load exactly like built-in ones (a default-exported AgentPlugin).
 */

import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import claudeCode from "../../plugins/agents/claude-code.ts";
import codex from "../../plugins/agents/codex.ts";
import cursorCli from "../../plugins/agents/cursor-cli.ts";
import gemini from "../../plugins/agents/gemini.ts";
import opencode from "../../plugins/agents/opencode.ts";
import { CalError, ExitCode, usageError } from "../errors.ts";
import { paths } from "../paths.ts";
import type { AgentPlugin } from "./plugin.ts";

export const BUILTIN: AgentPlugin[] = [claudeCode, opencode, cursorCli, codex, gemini];

export interface LoadedAgent {
  plugin: AgentPlugin;
  source: "builtin" | "community";
  file?: string;
}

const REQUIRED = [
  "name",
  "displayName",
  "binaries",
  "install",
  "versionArgs",
  "credentials",
  "env",
];
const FUNCTIONS = ["parseVersion", "configure", "args", "parseHeadless"];

function check(p: unknown, file: string): AgentPlugin {
  const o = p as Record<string, unknown>;
  const missing = [
    ...REQUIRED.filter((k) => o?.[k] === undefined),
    ...FUNCTIONS.filter((k) => typeof o?.[k] !== "function"),
  ];
  if (missing.length) {
    throw new CalError(`${file}: not an agent plugin; missing ${missing.join(", ")}.`, {
      code: "invalid-config",
      exit: ExitCode.usage,
      hint: "Default-export an object shaped like plugins/agents/claude-code.ts.",
    });
  }
  return p as AgentPlugin;
}

/** Every agent: built-in ones, then community plugins (which cannot shadow a built-in name). */
export async function allAgents(): Promise<LoadedAgent[]> {
  const agents: LoadedAgent[] = BUILTIN.map((plugin) => ({ plugin, source: "builtin" }));
  const dir = paths.agentsDir();
  let entries: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".ts")) entries.push(e.name);
    }
  } catch { /* no community folder */ }
  entries = entries.sort();
  for (const name of entries) {
    const file = resolve(join(dir, name));
    let mod: { default?: unknown };
    try {
      mod = await import(pathToFileURL(file).href);
    } catch (e) {
      throw new CalError(
        `Could not load the agent plugin ${file}: ${e instanceof Error ? e.message : e}`,
        {
          code: "invalid-config",
          exit: ExitCode.usage,
          hint: "Fix the plugin (run `deno check` on it) or move it out of ~/.cal/agents.",
        },
      );
    }
    const plugin = check(mod.default, file);
    if (agents.some((a) => a.plugin.name === plugin.name)) continue;
    agents.push({ plugin, source: "community", file });
  }
  return agents;
}

/** The plugin named `name`; unknown → exit 2 listing the known ones. */
export async function getAgent(name: string): Promise<AgentPlugin> {
  const all = await allAgents();
  const found = all.find((a) => a.plugin.name === name);
  if (!found) {
    throw usageError(
      `Unknown agent "${name}".`,
      `Known agents: ${all.map((a) => a.plugin.name).join(", ")}.`,
    );
  }
  return found.plugin;
}
