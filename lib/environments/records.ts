/** The records `cal-env` prints: environments (known or not) and templates. */

import type { EnvironmentRecord, TemplateRecord } from "../records.ts";
import type { Marker } from "./state.ts";
import type { Plugin } from "./registry.ts";
import { loadTemplates } from "./templates.ts";

/** "12GB" → "~12 GB". */
export function estimate(size: string | undefined): string {
  if (!size) return "-";
  const m = size.match(/^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/);
  return m ? `~${m[1]} ${m[2].toUpperCase()}` : `~${size}`;
}

/** A measured size in KB, the way `env list` shows it. */
export function formatKb(kb: number): string {
  if (kb >= 1024 * 1024) return `${(kb / 1024 / 1024).toFixed(1)} GB`;
  if (kb >= 1024) return `${Math.round(kb / 1024)} MB`;
  return `${kb} KB`;
}

export function environmentRecord(
  p: Plugin,
  extra: {
    workspace?: string;
    status?: EnvironmentRecord["status"];
    marker?: Marker;
    detail?: string;
  } = {},
): EnvironmentRecord {
  const m = p.manifest;
  const marker = extra.marker;
  return {
    kind: "environment",
    ...(extra.workspace ? { workspace: extra.workspace } : {}),
    environment: m.name,
    display_name: m.display_name,
    status: extra.status ?? "available",
    size: marker?.size_kb !== undefined && marker.size_kb > 0
      ? formatKb(marker.size_kb)
      : estimate(m.size_estimate),
    description: m.description ?? m.display_name,
    provides: m.provides ?? [],
    requires: m.requires ?? [],
    recommends: m.recommends ?? [],
    source: p.source,
    version: marker?.version ?? m.version,
    ...(marker?.variant ? { variant: marker.variant } : {}),
    ...(marker?.installed_at ? { installed_at: marker.installed_at } : {}),
    ...(extra.detail ? { detail: extra.detail } : {}),
  };
}

/** A record for a name no plugin defines any more (it was asked for, or installed, earlier). */
export function unknownRecord(name: string): EnvironmentRecord {
  return {
    kind: "environment",
    environment: name,
    display_name: name,
    status: "available",
    size: "-",
    description: "(no plugin)",
    provides: [],
    requires: [],
    recommends: [],
    source: "community",
    version: "?",
  };
}

/** Every template, built-in and your own. */
export async function listTemplates(): Promise<TemplateRecord[]> {
  return [...(await loadTemplates()).values()].map(({ template: t, source }) => ({
    kind: "template",
    template: t.name,
    description: t.description,
    ...(t.base_image ? { base_image: t.base_image } : {}),
    environments: t.environments ?? [],
    ...(t.resources ? { resources: t.resources } : {}),
    source,
  }));
}
