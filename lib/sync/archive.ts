/** Xcode archives (.xcarchive): the app's name and bundle id, and its extensions'. */

import { basename, join } from "node:path";
import { notFound, usageError } from "../errors.ts";
import { isDict, PlistError, type PlistValue, readPlistFile } from "./plist.ts";

export interface Archive {
  path: string;
  name: string;
  /** The main app's bundle id. */
  bundleId: string;
  /** Bundle ids of the app's extensions (each needs a profile), where they could be read. */
  extensions: string[];
  /** Extensions whose Info.plist this host cannot read (binary plists without plutil). */
  unreadable: string[];
}

/** Reads an .xcarchive: its Info.plist's ApplicationProperties and the app's extensions. */
export async function readArchive(path: string): Promise<Archive> {
  const st = await Deno.stat(path).catch(() => undefined);
  if (!st) {
    throw notFound(
      `No archive at ${path}.`,
      "Pass the .xcarchive the build wrote to the output folder (`cal-sync sync` pulls others).",
    );
  }
  if (!st.isDirectory || !path.replace(/\/$/, "").endsWith(".xcarchive")) {
    throw usageError(
      `${path} is not an .xcarchive folder.`,
      "Pass the archive `xcodebuild archive` made.",
    );
  }
  const info = join(path, "Info.plist");
  let v: PlistValue;
  try {
    v = await readPlistFile(info);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw usageError(
        `${path} has no Info.plist: the archive is incomplete (still being written?).`,
        "Wait for the build to finish, or archive again.",
      );
    }
    if (e instanceof PlistError) {
      throw usageError(
        `${info} cannot be read: ${e.message}.`,
        "The archive is damaged or incomplete: archive again (`xcodebuild archive`), then sync it.",
      );
    }
    throw e;
  }
  const props = isDict(v) && isDict(v.ApplicationProperties) ? v.ApplicationProperties : undefined;
  const bundleId = props && typeof props.CFBundleIdentifier === "string"
    ? props.CFBundleIdentifier
    : "";
  const appPath = props && typeof props.ApplicationPath === "string" ? props.ApplicationPath : "";
  if (!bundleId || !appPath) {
    throw usageError(
      `${path} is not an app archive (its Info.plist names no application).`,
      "Archive an app target (`xcodebuild archive -scheme App`); frameworks cannot be exported.",
    );
  }
  const app = join(path, "Products", appPath);
  if (!(await Deno.stat(app).catch(() => undefined))?.isDirectory) {
    throw usageError(`${path} lacks its app (${join("Products", appPath)}).`, "Archive again.");
  }
  const extensions: string[] = [];
  const unreadable: string[] = [];
  for (const sub of ["PlugIns", "Extensions"]) {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(join(app, sub))) entries.push(e);
    } catch { /* none */ }
    for (
      const e of entries.filter((e) => e.name.endsWith(".appex")).sort((a, b) =>
        a.name < b.name ? -1 : 1
      )
    ) {
      const file = join(app, sub, e.name, "Info.plist");
      try {
        const x = await readPlistFile(file);
        if (isDict(x) && typeof x.CFBundleIdentifier === "string") {
          extensions.push(x.CFBundleIdentifier);
        }
      } catch {
        unreadable.push(join(sub, e.name));
      }
    }
  }
  return { path, name: basename(path, ".xcarchive"), bundleId, extensions, unreadable };
}
