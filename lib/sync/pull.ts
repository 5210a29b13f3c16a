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
 * - `Library/Developer/Xcode/DerivedData/<project>/Build/Products/` (built apps and tests;
 *   nothing else of DerivedData),
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
import { quoteArgs } from "../shell.ts";
import { exists, writeFileAtomic } from "../store.ts";
import { load, type Loaded, withGuest } from "../workspace.ts";
import {
  BUNDLE_EXTENSIONS,
  categoryOf,
  destinationFor,
  type PatternSet,
  patternSet,
  Selector,
} from "./patterns.ts";

/** Search roots, relative to the guest's home (globs allowed; see the module's docs). */
export const GUEST_ROOTS = [
  "workspace",
  "output",
  "Library/Developer/Xcode/Archives",
  "Library/Developer/Xcode/DerivedData/*/Build/Products",
];

/** Folders never entered: big, and never artifacts. */
export const PRUNED = [
  ".git",
  "node_modules",
  ".gradle",
  "Pods",
  ".venv",
  "__pycache__",
  ".dart_tool",
  "Intermediates.noindex",
];

/**
 * The guest's listing walk. Prints `home\t$HOME\0`, then per root `root\t<root>\0`, then per
 * candidate `<f|b>\t<bytes>\t<mtime>\t<files>\t<has Info.plist>\t<path>\0` (paths relative to
 * the home). Arguments: bundle extensions, pruned names (comma-separated), then the roots.
 */
export const LISTING_SCRIPT = String.raw`
use strict; use warnings;
my ($bx, $pr, @roots) = @ARGV;
my %bundle = map { lc($_) => 1 } split /,/, $bx;
my %prune = map { $_ => 1 } split /,/, $pr;
binmode STDOUT;
chdir $ENV{HOME} or die "no home: $!\n";
print "home\t$ENV{HOME}\0";
sub entries { my ($d) = @_; opendir(my $h, $d) or return (); my @e = sort grep { $_ ne '.' && $_ ne '..' } readdir $h; closedir $h; return @e; }
sub total { my ($d, $z, $m, $c) = @_;
  for my $n (entries($d)) { my $p = "$d/$n"; my @s = lstat($p) or next;
    $$m = $s[9] if $s[9] > $$m;
    if (-d _) { total($p, $z, $m, $c); } elsif (-f _) { $$z += $s[7]; $$c++; } } }
sub walk { my ($d) = @_;
  for my $n (entries($d)) { my $p = "$d/$n"; my @s = lstat($p) or next;
    if (-d _) {
      next if $prune{$n};
      if ($n =~ /\.([^.]+)$/ && $bundle{lc $1}) {
        my ($z, $m, $c) = (0, $s[9], 0); total($p, \$z, \$m, \$c);
        my $pl = (-f "$p/Info.plist" || -f "$p/Contents/Info.plist" || -f "$p/Resources/Info.plist") ? 1 : 0;
        print "b\t$z\t$m\t$c\t$pl\t$p\0";
      } else { walk($p); }
    } elsif (-f _) { print "f\t$s[7]\t$s[9]\t1\t0\t$p\0"; } } }
for my $root (@roots) {
  for my $r (sort glob($root)) { next if -l $r || ! -d $r; print "root\t$r\0"; walk($r); }
}
`;

export interface Candidate {
  type: "file" | "bundle";
  bytes: number;
  /** Seconds since the epoch. */
  mtime: number;
  files: number;
  /** Bundles: whether an Info.plist exists (a bundle without one is still being written). */
  complete: boolean;
  /** Relative to the guest's home. */
  path: string;
  /** Relative to its search root (what patterns match). */
  rel: string;
}

export interface Listing {
  home: string;
  candidates: Candidate[];
  /** Names the listing could not carry faithfully (not UTF-8). */
  skipped: string[];
}

/** Parses the listing script's output. */
export function parseListing(text: string): Listing {
  const listing: Listing = { home: "", candidates: [], skipped: [] };
  let root = "";
  for (const rec of text.split("\0")) {
    if (!rec) continue;
    if (rec.startsWith("home\t")) {
      listing.home = rec.slice(5);
      continue;
    }
    if (rec.startsWith("root\t")) {
      root = rec.slice(5);
      continue;
    }
    const parts = rec.split("\t");
    if (parts.length < 6 || (parts[0] !== "f" && parts[0] !== "b")) continue;
    const path = parts.slice(5).join("\t");
    if (path.includes("\uFFFD")) {
      listing.skipped.push(path);
      continue;
    }
    const rel = root && path.startsWith(root + "/") ? path.slice(root.length + 1) : path;
    listing.candidates.push({
      type: parts[0] === "b" ? "bundle" : "file",
      bytes: Number(parts[1]),
      mtime: Number(parts[2]),
      files: Number(parts[3]),
      complete: parts[0] === "f" || parts[4] === "1",
      path,
      rel,
    });
  }
  return listing;
}

/** What was synced before, kept in the workspace's folder. */
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
    const { readGuestState } = await import("../environments/install.ts");
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

async function listGuest(guest: Guest): Promise<Listing> {
  const cmd = quoteArgs([
    "perl",
    "-e",
    LISTING_SCRIPT,
    BUNDLE_EXTENSIONS.join(","),
    PRUNED.join(","),
    ...GUEST_ROOTS,
  ]);
  const r = await guest.sh(cmd, { timeoutMs: 300_000 });
  if (r.code !== 0) {
    const said = r.stderr.trim().split("\n").pop() ?? "";
    throw new CalError(
      `Could not list the build outputs in "${guest.workspace}": ${said || `exit ${r.code}`}.`,
      {
        workspace: guest.workspace,
        hint: /perl: (command )?not found|No such file/.test(r.stderr)
          ? "cal's listing needs /usr/bin/perl in the guest (macOS ships it)."
          : `Check the guest with \`cal-vm ssh ${guest.workspace}\`.`,
      },
    );
  }
  return parseListing(r.stdout);
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
