/**
 * The environment plugins cal knows: the core ones shipped in `plugins/environments/<name>/` and
 * community ones from `~/.cal/environments/plugins/community/<name>/`, each a `manifest.yaml`
 * loaded and validated the same way. A community plugin cannot replace a core one (that is an
 * error naming its file), and a manifest's `name` must match its folder.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CalError, ExitCode, usageError } from "../errors.ts";
import { paths } from "../paths.ts";
import { InvalidFile } from "../yaml.ts";
import { type Manifest, parseManifest } from "./manifest.ts";

export type Source = "core" | "community";

export interface Plugin {
  manifest: Manifest;
  source: Source;
  file: string;
}

export const CORE_DIR = fileURLToPath(new URL("../../plugins/environments/", import.meta.url));

export function communityDir(): string {
  return join(paths.environmentsDir(), "plugins", "community");
}

export class Registry {
  constructor(readonly plugins: ReadonlyMap<string, Plugin>) {}

  names(): string[] {
    return [...this.plugins.keys()];
  }

  get(name: string): Plugin | undefined {
    return this.plugins.get(name);
  }

  manifest(name: string): Manifest | undefined {
    return this.plugins.get(name)?.manifest;
  }

  /** The plugin named `name`; unknown → exit 2 listing the known ones. */
  require(name: string): Plugin {
    const p = this.plugins.get(name);
    if (!p) {
      throw usageError(
        `Unknown environment "${name}".`,
        `Known environments: ${this.names().join(", ")}.`,
      );
    }
    return p;
  }
}

/** Reads every `<dir>/<name>/manifest.yaml`, sorted by name. */
export async function loadDir(dir: string, source: Source): Promise<Plugin[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if ((e.isDirectory || e.isSymlink) && !e.name.startsWith(".")) names.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const plugins: Plugin[] = [];
  for (const folder of names.sort()) {
    const file = join(dir, folder, "manifest.yaml");
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) continue;
      throw e;
    }
    const manifest = parseManifest(text, file);
    if (manifest.name !== folder) {
      const { line, col } = keyPosition(text, "name");
      throw new InvalidFile(
        file,
        line,
        col,
        `name: "${manifest.name}" does not match its folder "${folder}"`,
      );
    }
    plugins.push({ manifest, source, file });
  }
  return plugins;
}

function keyPosition(text: string, key: string): { line: number; col: number } {
  const lines = text.split("\n");
  const i = lines.findIndex((l) => l.startsWith(`${key}:`));
  return i < 0 ? { line: 1, col: 1 } : { line: i + 1, col: 1 };
}

/** Core plugins, then community ones. */
export async function loadRegistry(
  dirs: { core?: string; community?: string } = {},
): Promise<Registry> {
  const plugins = new Map<string, Plugin>();
  for (const p of await loadDir(dirs.core ?? CORE_DIR, "core")) plugins.set(p.manifest.name, p);
  for (const p of await loadDir(dirs.community ?? communityDir(), "community")) {
    const core = plugins.get(p.manifest.name);
    if (core) {
      throw new CalError(
        `${p.file}: a community plugin cannot replace the core environment "${p.manifest.name}".`,
        {
          code: "invalid-config",
          exit: ExitCode.usage,
          hint: "Give it another name (its folder and its `name:`), and use that name.",
        },
      );
    }
    plugins.set(p.manifest.name, p);
  }
  return new Registry(plugins);
}
