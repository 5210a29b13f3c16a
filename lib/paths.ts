/**
 * Where cal keeps its state on the host: `~/.cal` (moved by `CAL_HOME`), laid out as in the
 * spec's "Directory Structure (Host)", and the artifact folder `~/cal-output`.
 */

import { join } from "node:path";

export function homeDir(): string {
  const home = Deno.env.get("HOME");
  if (!home) throw new Error("HOME is not set");
  return home;
}

/** Expands a leading `~` or `~/` to the user's home folder. */
export function expandHome(p: string): string {
  if (p === "~") return homeDir();
  if (p.startsWith("~/")) return join(homeDir(), p.slice(2));
  return p;
}

export function calHome(): string {
  return Deno.env.get("CAL_HOME") || join(homeDir(), ".cal");
}

export const paths = {
  config: () => join(calHome(), "config.yaml"),
  vmsDir: () => join(calHome(), "isolation", "vms"),
  vmDir: (name: string) => join(calHome(), "isolation", "vms", name),
  vmFile: (name: string) => join(calHome(), "isolation", "vms", name, "vm.yaml"),
  templatesDir: () => join(calHome(), "isolation", "templates"),
  logsDir: () => join(calHome(), "isolation", "logs"),
  agentsDir: () => join(calHome(), "agents"),
  environmentsDir: () => join(calHome(), "environments"),
};
