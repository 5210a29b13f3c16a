/**
 * `cal-sync sync`: pulls build artifacts that were written outside the shared output folder.
 *
 * The shared folder (`/Volumes/My Shared Files/output` in the guest, the workspace's output
 * folder on the host) is the real-time path; this finds what builds left elsewhere. One way
 * only: nothing is ever written to the guest.
 *
 * Where it looks, relative to the guest user's home:
 * - `workspace/` (the cloned repositories),
 * - `output/` (a plain folder some agents write to; skipped when it is a link),
 * - `Library/Developer/Xcode/Archives/` (where `xcodebuild archive` puts archives),
 * - `Library/Developer/Xcode/DerivedData/<project>/Build/Products/` (built apps and tests) and
 *   `Library/Developer/Xcode/DerivedData/<project>/Logs/Test/` (the `.xcresult` bundles of test
 *   runs without `-resultBundlePath`); nothing else of DerivedData,
 * never entering `.git`, `node_modules`, `.gradle`, `Pods`, `.venv`, `__pycache__`,
 * `.dart_tool` or `Intermediates.noindex`, and never following links.
 *
 * What it takes: files and bundles matching `output.watch_patterns` or an installed
 * environment's `artifacts.patterns`, minus the installed environments' `artifacts.exclude`
 * (see patterns.ts for the matching rules). Bundles (.xcarchive, .app, .xcresult, ...) are taken
 * whole, and only once they have an Info.plist.
 *
 * How: one guest command lists candidates (a Perl walk, NUL-separated, with size, mtime and file
 * count; Perl because it is on every macOS and its stat is the same everywhere, unlike BSD and
 * GNU `stat`/`find -printf`); the host picks what matches and is not yet synced; one SSH stream
 * carries a tar of exactly those (`/usr/bin/tar -cf - --null -T -` in the guest, unpacked by
 * untar.ts on the host) into a staging folder cal owns (in the workspace's folder, or next to the
 * output folder when that is on another filesystem), never inside the guest-writable output
 * folder; then each artifact is moved into builds/, test-results/ or logs/. What was synced is
 * remembered in the workspace's `sync.json` (source path, size, mtime, file count, destination,
 * and the host copy's device, inode, size and mtime): an artifact is copied again only when one
 * of those changed or its host copy is gone.
 *
 * The guest is hostile (DESIGN.md) and can change the output folder at any time through the
 * share. So: its listing and its tar stream are only data (listing.ts, untar.ts); a category
 * folder that is a link (or not a folder) is refused and reported, checked again right before
 * every move; a destination is replaced only while it is still the very file or folder cal put
 * there (device and inode, size, mtime), otherwise the artifact gets another name; a new file is
 * hard-linked into place (never over a name that appeared meanwhile).
 */

import { dirname, join } from "node:path";
import { type Config, loadConfig } from "../config.ts";
import type { Guest } from "../guest/ssh.ts";
import type { Output } from "../output.ts";
import { expandHome, paths } from "../paths.ts";
import type { ArtifactRecord } from "../records.ts";
import { writeFileAtomic } from "../store.ts";
import { safeText } from "../terminal.ts";
import { load, type Loaded, withGuest } from "../workspace.ts";
import { boundedText, type Candidate, listGuest, type Listing, relPathProblem } from "./listing.ts";
import {
  type CheckedDir,
  copyTree,
  crossDevice,
  type Identity,
  identityOf,
  lstatOrUndefined,
  realFolder,
  sameAs,
  stillSame,
} from "./nofollow.ts";
import {
  baseName,
  type Category,
  categoryOf,
  destinationFor,
  type PatternSet,
  patternSet,
  Selector,
} from "./patterns.ts";
import { type ExtractResult, extractTar } from "./untar.ts";

export interface SyncItem {
  dest: string;
  bytes: number;
  mtime: number;
  files: number;
  at: string;
  /** The host copy as cal left it (absent in manifests of older versions). */
  host?: Identity;
}

export interface SyncManifest {
  version: 1;
  items: Record<string, SyncItem>;
}

const CATEGORIES: Category[] = ["builds", "test-results", "logs"];

/** Whether a manifest's destination is one cal could have written: `<category>/<one name>`. */
function plainDest(d: unknown): boolean {
  if (typeof d !== "string") return false;
  const i = d.indexOf("/");
  return i > 0 && (CATEGORIES as string[]).includes(d.slice(0, i)) &&
    !d.slice(i + 1).includes("/") && !relPathProblem(d);
}

export function manifestFile(workspace: string): string {
  return join(paths.vmDir(workspace), "sync.json");
}

async function readManifest(workspace: string): Promise<SyncManifest> {
  try {
    const m = JSON.parse(await Deno.readTextFile(manifestFile(workspace)));
    if (m && m.version === 1 && m.items && typeof m.items === "object") {
      for (const [k, v] of Object.entries(m.items)) {
        if (!v || !plainDest((v as SyncItem).dest)) delete m.items[k];
      }
      return m;
    }
  } catch { /* absent or unreadable: start afresh */ }
  return { version: 1, items: {} };
}

/** The workspace's host output folder. */
export function outputDir(w: Loaded, config: Config): string {
  return w.vm.output_dir ?? join(expandHome(config.output.sync_dir), w.vm.name);
}

/** One planned copy. */
export interface Planned {
  candidate: Candidate;
  dest: string;
  pattern: string;
  from: string;
  /** Already on the host, unchanged. */
  synced: boolean;
}

/**
 * What is at a destination on the host: nothing, what cal put there (still the same file or
 * folder), or something else (the guest's, through the share, or a link). `true` and `false`
 * are shorthands: present (cal's when its manifest names it), absent.
 */
export type HostState = "absent" | "ours" | "other" | boolean;

/**
 * Decides what to copy: matching candidates, their destinations, and whether each is already
 * synced. `host(dest)` says what is at a destination on the host. `blocked` are artifacts with
 * no free name left (their names taken by what cal did not put there).
 */
export async function plan(
  listing: Listing,
  set: PatternSet,
  manifest: SyncManifest,
  host: (dest: string) => HostState,
): Promise<{ planned: Planned[]; incomplete: Candidate[]; blocked: Candidate[] }> {
  const selector = new Selector(set);
  const planned: Planned[] = [];
  const incomplete: Candidate[] = [];
  const blocked: Candidate[] = [];
  const ours = new Set(Object.values(manifest.items).map((i) => i.dest));
  const state = (d: string): "absent" | "ours" | "other" => {
    const s = host(d);
    if (s === true) return ours.has(d) ? "ours" : "other";
    return s === false ? "absent" : s;
  };
  const assigned = new Set<string>();
  for (const c of listing.candidates) {
    const hit = selector.match(c.rel);
    if (!hit) continue;
    if (!c.complete) {
      incomplete.push(c);
      continue;
    }
    const prior = manifest.items[c.path];
    // Taken for this artifact: by another artifact, by what cal did not put there, or recorded
    // for another source.
    const taken = (d: string) =>
      assigned.has(d) || state(d) === "other" || (ours.has(d) && d !== prior?.dest);
    // A recorded destination is reused only while it is free or still what cal put there.
    let dest: string | undefined = prior?.dest;
    if (dest && taken(dest)) dest = undefined;
    if (!dest) {
      dest = await destinationFor(c.path, c.rel, taken);
      if (taken(dest)) {
        blocked.push(c);
        continue;
      }
    }
    assigned.add(dest);
    const synced = !!prior && prior.dest === dest && prior.bytes === c.bytes &&
      prior.mtime === c.mtime && prior.files === c.files && state(dest) === "ours";
    planned.push({ candidate: c, dest, pattern: hit.pattern, from: hit.from, synced });
  }
  return { planned, incomplete, blocked };
}

/** The patterns for a workspace: config, plus its installed environments' `artifacts`. */
export async function workspacePatterns(
  guest: Guest,
  w: Loaded,
  config: Config,
  out: Output,
): Promise<PatternSet> {
  // The hook into the environment plugins: the registry's manifests of what the guest's
  // markers say is installed (the workspace's wanted list when the markers cannot be read).
  const envs: { name: string; artifacts?: { patterns: string[]; exclude?: string[] } }[] = [];
  try {
    const { loadRegistry } = await import("../environments/registry.ts");
    const { readGuestState } = await import("../environments/state.ts");
    const registry = await loadRegistry();
    let names: string[];
    try {
      names = [...(await readGuestState(guest)).installed.keys()];
    } catch {
      names = w.vm.environments ?? [];
    }
    for (const n of names.sort()) {
      const m = registry.manifest(n);
      if (m) envs.push({ name: n, artifacts: m.artifacts });
    }
  } catch (e) {
    out.warn(
      `Could not read the environment plugins (${(e as Error).message}); ` +
        "using output.watch_patterns only.",
      w.vm.name,
    );
  }
  return patternSet(config.output.watch_patterns, envs);
}

/** The guest command that archives the names on its stdin: system tar, none of the guest's environment. */
const TAR_COMMAND = 'cd "$HOME" && exec /usr/bin/env -i HOME="$HOME" ' +
  // COPYFILE_DISABLE: macOS tar would otherwise add AppleDouble `._` files for extended attributes.
  "PATH=/usr/bin:/bin:/usr/sbin:/sbin COPYFILE_DISABLE=1 /usr/bin/tar -cf - --null -T -";

/**
 * Streams a tar of `files` (relative to the guest's home) from the guest into `dir`: one SSH
 * connection, no per-file round trips. Returns what untar skipped, and what the guest's tar
 * said when it did not finish cleanly.
 */
async function streamTar(
  guest: Guest,
  files: Map<string, "file" | "bundle">,
  dir: string,
): Promise<{ result: ExtractResult; warning: string }> {
  const ssh = new Deno.Command("ssh", {
    args: ["-F", guest.configFile, guest.alias, TAR_COMMAND],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = ssh.stdin.getWriter();
  // `./` first: GNU tar would read a name that starts with a dash as an option.
  const list = new TextEncoder().encode([...files.keys()].map((f) => `./${f}\0`).join(""));
  const feed = writer.write(list).then(() => writer.close()).catch(() => {});
  const stderr = boundedText(ssh.stderr);
  let result: ExtractResult;
  try {
    result = await extractTar(ssh.stdout, dir, files);
  } finally {
    try {
      ssh.kill("SIGKILL"); // it has said all cal listens to
    } catch { /* already gone */ }
  }
  const [status, err] = await Promise.all([ssh.status, stderr, feed]);
  if (status.code === 255 && !result.skipped && !(await hasEntries(dir))) {
    throw guest.sshError(err);
  }
  // GNU tar exits 1 when a file changed while it was read; the next sync takes it again.
  return { result, warning: status.success || status.signal ? "" : err.trim() };
}

async function hasEntries(dir: string): Promise<boolean> {
  for await (const _ of Deno.readDir(dir)) return true;
  return false;
}

const hidden = (prefix: string) => `${prefix}${crypto.randomUUID().slice(0, 8)}`;

/**
 * Puts the staged `src` at `to` in the checked folder `cd`. `cur` is what is at `to` now: cal's
 * own earlier copy (replaced) or nothing (a file is hard-linked, so a name that appeared
 * meanwhile is never overwritten).
 */
async function placeOnce(
  src: string,
  to: string,
  cd: CheckedDir,
  cur: Deno.FileInfo | undefined,
): Promise<void> {
  if (!(await stillSame(cd))) throw new Error(`${cd.path} changed (now a link?)`);
  const st = await Deno.lstat(src);
  if (cur?.isDirectory) {
    // A hidden name, so a watcher never mistakes the old copy for a new artifact.
    const aside = join(cd.path, hidden(".cal-old-"));
    await Deno.rename(to, aside);
    try {
      await Deno.rename(src, to);
    } catch (e) {
      await Deno.rename(aside, to).catch(() => {});
      throw e;
    }
    await Deno.remove(aside, { recursive: true }).catch(() => {});
  } else if (cur) {
    await Deno.rename(src, to);
  } else if (st.isFile) {
    await Deno.link(src, to);
    await Deno.remove(src);
  } else {
    await Deno.rename(src, to);
  }
}

/** placeOnce, copying first (into a hidden name in `cd`) when `src` is on another filesystem. */
async function place(
  src: string,
  to: string,
  cd: CheckedDir,
  cur: Deno.FileInfo | undefined,
): Promise<void> {
  try {
    return await placeOnce(src, to, cd, cur);
  } catch (e) {
    if (!crossDevice(e)) throw e;
  }
  const tmp = join(cd.path, hidden(".cal-in-"));
  try {
    await copyTree(src, tmp);
    await placeOnce(tmp, to, cd, cur);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/**
 * Where a sync stages: a folder cal owns on the output folder's filesystem, so artifacts are
 * renamed into place rather than copied: the workspace's own folder, else the output folder's
 * parent (not shared with the guest).
 */
async function stagingParent(name: string, dir: string): Promise<string> {
  const own = paths.vmDir(name);
  const [a, b] = [await lstatOrUndefined(own), await lstatOrUndefined(dir)];
  if (!a || !b || a.dev === b.dev) return own;
  const beside = join(dirname(dir), ".cal-sync-staging");
  await Deno.mkdir(beside, { recursive: true, mode: 0o700 });
  const c = await lstatOrUndefined(beside);
  return c?.isDirectory && !c.isSymlink && c.dev === b.dev ? beside : own;
}

export interface SyncOptions {
  /** Show what would be copied; copy nothing. */
  dryRun?: boolean;
}

/**
 * What is at the destinations a sync may use (`names`, relative to the output folder), without
 * following a link; and the category folders that cannot be used. Only those names are looked
 * at, never a whole folder the guest may have filled.
 */
async function hostView(dir: string, names: Set<string>): Promise<{
  entries: Map<string, Deno.FileInfo>;
  refused: Map<Category, string>;
}> {
  const entries = new Map<string, Deno.FileInfo>();
  const refused = new Map<Category, string>();
  for (const cat of CATEGORIES) {
    const st = await lstatOrUndefined(join(dir, cat));
    if (st && (st.isSymlink || !st.isDirectory)) {
      refused.set(cat, st.isSymlink ? "it is a link" : "it is not a folder");
    }
  }
  for (const d of names) {
    if (refused.has(d.slice(0, d.indexOf("/")) as Category)) continue;
    const info = await lstatOrUndefined(join(dir, d));
    if (info) entries.set(d, info);
  }
  return { entries, refused };
}

/** Every destination plan() may look at for the listing: recorded, plain and tagged names. */
async function destinations(listing: Listing, manifest: SyncManifest): Promise<Set<string>> {
  const names = new Set<string>();
  for (const item of Object.values(manifest.items)) names.add(item.dest);
  for (const c of listing.candidates) {
    names.add(`${categoryOf(c.rel)}/${baseName(c.rel)}`);
    names.add(await destinationFor(c.path, c.rel, () => true));
  }
  return names;
}

/** Whether `st` (at `dest`) is still what the manifest says cal put there. */
function isOurs(manifest: SyncManifest, dest: string, st: Deno.FileInfo): boolean {
  if (st.isSymlink || !(st.isFile || st.isDirectory)) return false;
  const item = Object.values(manifest.items).find((i) => i.dest === dest);
  if (!item) return false;
  // Older manifests recorded no identity: a plain file or folder is taken as cal's.
  return item.host ? sameAs(st, item.host) : true;
}

/** One sync of a running workspace; returns a record per matching artifact. */
export async function syncWorkspace(
  name: string,
  opts: SyncOptions,
  out: Output,
  config?: Config,
): Promise<ArtifactRecord[]> {
  const cfg = config ?? await loadConfig();
  const w = await load(name);
  const dir = outputDir(w, cfg);
  return await withSyncLock(name, out, () =>
    withGuest(w, async (guest) => {
      const set = await workspacePatterns(guest, w, cfg, out);
      const selector = new Selector(set);
      out.event("sync-list", `Looking for build artifacts in "${name}"…`, { workspace: name });
      const listing = await listGuest(guest, (rel) => !!selector.match(rel));
      const at = (c: Candidate) => safeText(`${listing.home}/${c.path}`);
      if (listing.skipped.length) {
        out.warn(
          `Skipped ${listing.skipped.length} file(s) whose name is not UTF-8, e.g. ${
            safeText(JSON.stringify(listing.skipped[0]))
          }.`,
          name,
        );
      }
      if (listing.rejected) {
        out.warn(
          `The guest's listing had ${listing.rejected} entr${
            listing.rejected === 1 ? "y" : "ies"
          } that are not plain paths under the search roots; ignored: ${
            safeText(listing.rejectedExamples.join(", "))
          }.`,
          name,
        );
      }
      if (listing.truncated) {
        out.warn(
          `The guest's listing was cut short (${listing.truncated}): artifacts past that point ` +
            "were not looked at. Remove what builds leave behind, then sync again.",
          name,
        );
      }
      const manifest = await readManifest(name);
      await removeLeftovers(name, dir);
      const view = await hostView(dir, await destinations(listing, manifest));
      for (const [cat, why] of view.refused) {
        out.warn(
          `${join(dir, cat)} is not used: ${why} (the guest can change the shared folder). ` +
            `Nothing is copied into it; remove it (\`rm ${join(dir, cat)}\`), then sync again.`,
          name,
        );
      }
      const host = (d: string): HostState => {
        const st = view.entries.get(d);
        if (!st) {
          return view.refused.has(d.slice(0, d.indexOf("/")) as Category) ? "other" : "absent";
        }
        return isOurs(manifest, d, st) ? "ours" : "other";
      };
      const all = await plan(listing, set, manifest, host);
      const planned = all.planned.filter((p) => !view.refused.has(categoryOf(p.candidate.rel)));
      for (const c of all.incomplete) {
        out.warn(`${at(c)} has no Info.plist yet (still being written?); skipped.`, name);
      }
      for (const c of all.blocked) {
        if (view.refused.has(categoryOf(c.rel))) continue;
        out.warn(
          `${at(c)} was not copied: its names in the output folder are taken by files cal did ` +
            "not put there (written through the shared folder?). Move those away, then sync again.",
          name,
        );
      }
      const todo = planned.filter((p) => !p.synced);
      const copied = new Set<Planned>();
      if (todo.length && !opts.dryRun) {
        const bytes = todo.reduce((n, p) => n + p.candidate.bytes, 0);
        out.event(
          "sync-copy",
          `Copying ${todo.length} artifact${todo.length === 1 ? "" : "s"} (${human(bytes)})…`,
          { workspace: name, count: todo.length, bytes },
        );
        await Deno.mkdir(dir, { recursive: true });
        await Deno.mkdir(paths.vmDir(name), { recursive: true });
        const tmp = await Deno.makeTempDir({
          dir: await stagingParent(name, dir),
          prefix: ".cal-sync-",
        });
        const folders = new Map<Category, CheckedDir | string>();
        try {
          const wanted = new Map(todo.map((p) => [p.candidate.path, p.candidate.type] as const));
          const { result, warning } = await streamTar(guest, wanted, tmp);
          if (warning) out.warn(`tar in the guest said: ${safeText(warning.slice(0, 2000))}`, name);
          if (result.skipped) {
            out.warn(
              `Left out ${result.skipped} member(s) of the guest's archive that are not plain ` +
                `files or folders of what was asked for: ${safeText(result.reasons.join("; "))}.`,
              name,
            );
          }
          if (result.broken) {
            out.warn(
              `The guest's archive ended early (${result.broken}); the rest is skipped.`,
              name,
            );
          }
          for (const p of todo) {
            const from = join(tmp, p.candidate.path);
            const st = await lstatOrUndefined(from);
            if (!st || (p.candidate.type === "file" ? !st.isFile : !st.isDirectory)) {
              out.warn(`${at(p.candidate)} vanished before it was copied.`, name);
              continue;
            }
            const cat = categoryOf(p.candidate.rel);
            let cd = folders.get(cat);
            if (!cd) folders.set(cat, cd = await realFolder(join(dir, cat)));
            if (typeof cd === "string") {
              out.warn(
                `${join(dir, cat)} is not used: ${cd}; ${at(p.candidate)} not copied.`,
                name,
              );
              continue;
            }
            const to = join(dir, p.dest);
            const cur = await lstatOrUndefined(to);
            if (cur && !isOurs(manifest, p.dest, cur)) {
              out.warn(
                `${safeText(to)} changed since it was planned (not cal's copy); ` +
                  `left it alone, ${at(p.candidate)} not copied.`,
                name,
              );
              continue;
            }
            try {
              await place(from, to, cd, cur);
            } catch (e) {
              out.warn(
                `Could not move ${at(p.candidate)} into place: ${(e as Error).message}`,
                name,
              );
              continue;
            }
            const now = await lstatOrUndefined(to);
            copied.add(p);
            manifest.items[p.candidate.path] = {
              dest: p.dest,
              bytes: p.candidate.bytes,
              mtime: p.candidate.mtime,
              files: p.candidate.files,
              at: new Date().toISOString(),
              ...(now && identityOf(now) ? { host: identityOf(now) } : {}),
            };
          }
        } finally {
          await Deno.remove(tmp, { recursive: true }).catch(() => {});
          if (copied.size) {
            await writeFileAtomic(manifestFile(name), JSON.stringify(manifest, null, 2) + "\n");
          }
        }
      }
      return planned.map((p): ArtifactRecord => ({
        kind: "artifact",
        workspace: name,
        path: join(dir, p.dest),
        category: categoryOf(p.candidate.rel),
        bytes: p.candidate.bytes,
        source: `${listing.home}/${p.candidate.path}`,
        new: opts.dryRun ? !p.synced : copied.has(p),
        pattern: p.pattern,
        pattern_from: p.from,
      }));
    }));
}

/** Removes staging folders an interrupted sync left (the caller holds the sync lock). */
async function removeLeftovers(name: string, dir: string): Promise<void> {
  for (const parent of [paths.vmDir(name), join(dirname(dir), ".cal-sync-staging")]) {
    try {
      for await (const e of Deno.readDir(parent)) {
        if (e.isDirectory && e.name.startsWith(".cal-sync-")) {
          await Deno.remove(join(parent, e.name), { recursive: true }).catch(() => {});
        }
      }
    } catch { /* none yet */ }
  }
}

/** Holds the workspace's sync lock (one sync at a time; other cal commands are not blocked). */
async function withSyncLock<T>(name: string, out: Output, fn: () => Promise<T>): Promise<T> {
  await Deno.mkdir(paths.vmDir(name), { recursive: true });
  const file = await Deno.open(join(paths.vmDir(name), "sync.lock"), {
    create: true,
    write: true,
    truncate: false,
  });
  try {
    const timer = setTimeout(
      () =>
        out.event("waiting", `Waiting for another sync of "${name}" to finish…`, {
          workspace: name,
        }),
      300,
    );
    try {
      await file.lock(true);
    } finally {
      clearTimeout(timer);
    }
    return await fn();
  } finally {
    file.close();
  }
}

export function human(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) n /= 1024, i++;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** `sync --watch`: syncs every `intervalS` seconds until `signal` aborts. */
export async function syncLoop(
  name: string,
  intervalS: number,
  out: Output,
  onRecords: (rs: ArtifactRecord[], first: boolean) => void,
  signal: AbortSignal,
): Promise<void> {
  const config = await loadConfig();
  let first = true;
  while (!signal.aborted) {
    const rs = await syncWorkspace(name, {}, out, config);
    onRecords(first ? rs : rs.filter((r) => r.new), first);
    first = false;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, intervalS * 1000);
      signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
    });
  }
}
