/**
 * The host-side cache of a guest's environments (`environments.yaml` beside vm.yaml): what the
 * guest last said was installed or failed, so `cal-env list` can answer for a stopped workspace.
 */

import { join } from "node:path";
import { z } from "zod";
import { paths } from "../paths.ts";
import { writeFileAtomic } from "../store.ts";
import { readYamlFile, toYaml } from "../yaml.ts";
import type { GuestState, Marker } from "./state.ts";

const CacheFile = z.strictObject({
  updated_at: z.string(),
  installed: z.record(z.string(), z.looseObject({ version: z.string() })),
  failed: z.record(z.string(), z.string()).optional(),
});

const cacheFile = (ws: string) => join(paths.vmDir(ws), "environments.yaml");

export async function saveCache(ws: string, state: GuestState): Promise<void> {
  const installed: Record<string, Omit<Marker, "name">> = {};
  for (const [name, { name: _n, ...rest }] of state.installed) installed[name] = rest;
  await writeFileAtomic(
    cacheFile(ws),
    toYaml({
      updated_at: new Date().toISOString(),
      installed,
      failed: Object.fromEntries(state.failed),
    }),
  );
}

export async function readCache(ws: string): Promise<GuestState | undefined> {
  const c = await readYamlFile(cacheFile(ws), CacheFile);
  if (!c) return undefined;
  return {
    installed: new Map(
      Object.entries(c.installed).map(([name, m]) => [name, { ...m, name } as Marker]),
    ),
    failed: new Map(Object.entries(c.failed ?? {})),
    progress: new Map(),
  };
}
