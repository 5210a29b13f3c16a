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
 * carries a tar of exactly those (`tar -cf - --null -T -` in the guest, `tar -x` on the host)
 * into a hidden folder inside the output folder; then each artifact is renamed into builds/,
 * test-results/ or logs/. What was synced is remembered in the workspace's `sync.json`
 * (source path, size, mtime, file count, destination): an artifact is copied again only when one
 * of those changed or its host copy is gone.
 */

import { dirname, join } from "node:path";
import { type Config, loadConfig } from "../config.ts";
import { CalError } from "../errors.ts";
import type { Guest } from "../guest/ssh.ts";
import { PREAMBLE } from "../guest/ssh.ts";
import type { Output } from "../output.ts";
import { expandHome, paths } from "../paths.ts";
import type { ArtifactRecord } from "../records.ts";
import { exists, writeFileAtomic } from "../store.ts";
import { load, type Loaded, withGuest } from "../workspace.ts";
import { type Candidate, listGuest, type Listing } from "./listing.ts";
import { categoryOf, destinationFor, type PatternSet, patternSet, Selector } from "./patterns.ts";

export interface SyncManifest {
  version: 1;
  items: Record<string, { dest: string; bytes: number; mtime: number; files: number; at: string }>;
}

export function manifestFile(workspace: string): string {
  return join(paths.vmDir(workspace), "sync.json");
}

async function readManifest(workspace: string): Promise<SyncManifest> {
  try {
    const m = JSON.parse(await Deno.readTextFile(manifestFile(workspace)));
    if (m && m.version === 1 && typeof m.items === "object") return m;
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
 * Decides what to copy: matching candidates, their destinations, and whether each is already
 * synced. `hostHas(dest)` says whether a destination exists on the host.
 */
export async function plan(
  listing: Listing,
  set: PatternSet,
  manifest: SyncManifest,
  hostHas: (dest: string) => boolean,
): Promise<{ planned: Planned[]; incomplete: Candidate[] }> {
  const selector = new Selector(set);
  const planned: Planned[] = [];
  const incomplete: Candidate[] = [];
  const ours = new Set(Object.values(manifest.items).map((i) => i.dest));
  const assigned = new Set<string>();
  for (const c of listing.candidates) {
    const hit = selector.match(c.rel);
    if (!hit) continue;
    if (!c.complete) {
      incomplete.push(c);
      continue;
    }
    const prior = manifest.items[c.path];
    let dest = prior?.dest;
    if (!dest || assigned.has(dest)) {
      dest = await destinationFor(
        c.path,
        c.rel,
        (d) => assigned.has(d) || (ours.has(d) ? true : hostHas(d)),
      );
    }
    assigned.add(dest);
    const synced = !!prior && prior.dest === dest && prior.bytes === c.bytes &&
      prior.mtime === c.mtime && prior.files === c.files && hostHas(dest);
    planned.push({ candidate: c, dest, pattern: hit.pattern, from: hit.from, synced });
  }
  return { planned, incomplete };
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

/**
 * Streams a tar of `files` (relative to the guest's home) from the guest into `dir`: one SSH
 * connection, no per-file round trips.
 */
async function streamTar(guest: Guest, files: string[], dir: string): Promise<string> {
  // COPYFILE_DISABLE: macOS tar would otherwise add AppleDouble `._` files for extended attributes.
  const remote = 'cd "$HOME" && COPYFILE_DISABLE=1 tar -cf - --null -T -';
  const ssh = new Deno.Command("ssh", {
    args: ["-F", guest.configFile, guest.alias, PREAMBLE + remote],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let tar: Deno.ChildProcess;
  try {
    tar = new Deno.Command("tar", {
      args: ["-x", "-f", "-", "-C", dir, "--no-same-owner"],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    ssh.kill();
    throw e;
  }
  const writer = ssh.stdin.getWriter();
  const list = new TextEncoder().encode(files.map((f) => f + "\0").join(""));
  const feed = writer.write(list).then(() => writer.close()).catch(() => {});
  const pipe = ssh.stdout.pipeTo(tar.stdin).catch(() => {});
  const text = (s: ReadableStream<Uint8Array>) => new Response(s).text();
  const [sshStatus, sshErr, tarStatus, tarErr] = await Promise.all([
    ssh.status,
    text(ssh.stderr),
    tar.status,
    text(tar.stderr),
    feed,
    pipe,
  ]);
  if (sshStatus.code === 255) throw guest.sshError(sshErr);
  if (!tarStatus.success) {
    throw new CalError(
      `Unpacking the artifacts from "${guest.workspace}" failed: ${tarErr.trim()}`,
      {
        workspace: guest.workspace,
        hint: "Check free space in the output folder, then run the sync again.",
      },
    );
  }
  // GNU tar exits 1 when a file changed while it was read; the next sync takes it again.
  return sshStatus.code === 0 ? "" : sshErr.trim();
}

/** Moves `from` to `to`, replacing what is there (a folder too) with as short a gap as rename allows. */
async function replace(from: string, to: string): Promise<void> {
  const old = await Deno.lstat(to).catch(() => undefined);
  if (old?.isDirectory) {
    // A hidden name, so a watcher never mistakes the old copy for a new artifact.
    const aside = join(dirname(to), `.cal-old-${crypto.randomUUID().slice(0, 8)}`);
    await Deno.rename(to, aside);
    await Deno.rename(from, to);
    await Deno.remove(aside, { recursive: true }).catch(() => {});
  } else {
    await Deno.rename(from, to);
  }
}

export interface SyncOptions {
  /** Show what would be copied; copy nothing. */
  dryRun?: boolean;
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
      out.event("sync-list", `Looking for build artifacts in "${name}"…`, { workspace: name });
      const listing = await listGuest(guest);
      for (const s of listing.skipped) {
        out.warn(`Skipped a file whose name is not UTF-8: ${JSON.stringify(s)}`, name);
      }
      const manifest = await readManifest(name);
      await removeLeftovers(dir);
      const hostHas = new Set<string>();
      for (const cat of ["builds", "test-results", "logs"]) {
        try {
          for await (const e of Deno.readDir(join(dir, cat))) hostHas.add(`${cat}/${e.name}`);
        } catch { /* not there yet */ }
      }
      const { planned, incomplete } = await plan(listing, set, manifest, (d) => hostHas.has(d));
      for (const c of incomplete) {
        out.warn(
          `${listing.home}/${c.path} has no Info.plist yet (still being written?); skipped.`,
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
        const tmp = await Deno.makeTempDir({ dir, prefix: ".cal-sync-" });
        try {
          const warning = await streamTar(guest, todo.map((p) => p.candidate.path), tmp);
          if (warning) out.warn(`tar in the guest said: ${warning}`, name);
          for (const p of todo) {
            const from = join(tmp, p.candidate.path);
            if (!(await exists(from))) {
              out.warn(`${listing.home}/${p.candidate.path} vanished before it was copied.`, name);
              continue;
            }
            const to = join(dir, p.dest);
            await Deno.mkdir(join(dir, categoryOf(p.candidate.rel)), { recursive: true });
            await replace(from, to);
            copied.add(p);
            manifest.items[p.candidate.path] = {
              dest: p.dest,
              bytes: p.candidate.bytes,
              mtime: p.candidate.mtime,
              files: p.candidate.files,
              at: new Date().toISOString(),
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
async function removeLeftovers(dir: string): Promise<void> {
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory && e.name.startsWith(".cal-sync-")) {
        await Deno.remove(join(dir, e.name), { recursive: true }).catch(() => {});
      }
    }
  } catch { /* no output folder yet */ }
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
