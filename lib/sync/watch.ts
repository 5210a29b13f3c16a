/**
 * `cal-sync watch`: watches a workspace's host output folder, runs hooks once per finished
 * artifact, and streams build logs.
 *
 * Finished means: a file (non-empty) or bundle whose size, mtime and file count have not changed
 * for the debounce window, and, for a bundle (.xcarchive, .app, .xcresult, ...), one that has an
 * Info.plist. Deno.watchFs wakes the scan early (its raw events are only a hint, several per
 * write); a poll catches what it misses (shared folders do not always report guest writes).
 * Artifacts already there when the watch starts count as seen; one that changes later (a rebuild)
 * is finished again and fires again. Names starting with a dot are ignored (sync's staging
 * folder is one), and bundles are never searched inside.
 *
 * The folder is the guest's to write (it is shared): links are never followed (not for the scan,
 * not for an Info.plist, not for a log, and a hook never runs on a path that has become a link),
 * logs are read in bounded chunks with long lines cut (logs.ts), and names are data for the
 * command to show escaped.
 */

import { join, relative } from "node:path";
import type { ArtifactRecord, HookRecord } from "../records.ts";
import { type HookRun, runHook } from "./hooks.ts";
import { LineBuffer, readLines } from "./logs.ts";
import { lstatOrUndefined } from "./nofollow.ts";
import {
  type ArtifactType,
  artifactType,
  baseName,
  categoryOf,
  isBundleName,
  patternSet,
  Selector,
  WATCHED_TYPES,
} from "./patterns.ts";

export type HookName = "on-archive" | "on-ipa" | "on-apk" | "on-any";

/** Which hook a type of artifact triggers (besides on-any). */
export const HOOK_FOR: Partial<Record<ArtifactType, HookName>> = {
  xcarchive: "on-archive",
  ipa: "on-ipa",
  apk: "on-apk",
  aab: "on-apk",
};

export interface WatchOptions {
  workspace: string;
  dir: string;
  /** Extra artifact patterns (output.watch_patterns); the WATCHED_TYPES are always watched. */
  patterns: string[];
  hooks: Partial<Record<HookName, string>>;
  debounceMs: number;
  /** Stream build logs (`*.log` in the folder). */
  logs: boolean;
  signal: AbortSignal;
  onArtifact(r: ArtifactRecord): void;
  onHook(r: HookRecord): void;
  onLog(file: string, line: string): void;
  /** Where hooks' stdout goes. */
  hookStdout: "inherit" | ((chunk: Uint8Array) => void);
  /** Where hooks' stderr goes (default: inherited). */
  hookStderr?: "inherit" | ((chunk: Uint8Array) => void);
  /** Runs a hook (replaceable in tests). */
  run?: typeof runHook;
}

export interface Seen {
  type: "file" | "bundle";
  bytes: number;
  mtimeMs: number;
  files: number;
  complete: boolean;
}

/** Wakes a waiting loop when the watched folder reports anything. */
class Waker {
  private watcher?: Deno.FsWatcher;
  private pending = false;
  private wake?: () => void;

  constructor(dir: string) {
    try {
      this.watcher = Deno.watchFs(dir, { recursive: true });
      this.pump(this.watcher);
    } catch { /* polling alone still works */ }
  }

  private async pump(w: Deno.FsWatcher) {
    try {
      for await (const _ of w) {
        this.pending = true;
        this.wake?.();
      }
    } catch { /* closed */ }
  }

  /** Resolves at the next event (or at once if one came since the last wait), or after `ms`. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wake = undefined;
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done);
      this.wake = done;
    });
  }

  close() {
    try {
      this.watcher?.close();
    } catch { /* already */ }
  }
}

async function bundleTotals(dir: string, into: Seen): Promise<void> {
  let entries: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(dir)) entries.push(e);
  } catch {
    entries = [];
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    const st = await Deno.lstat(p).catch(() => undefined);
    if (!st) continue;
    into.mtimeMs = Math.max(into.mtimeMs, st.mtime?.getTime() ?? 0);
    if (st.isDirectory) await bundleTotals(p, into);
    else if (st.isFile) into.bytes += st.size, into.files++;
  }
}

async function isFile(p: string): Promise<boolean> {
  return (await lstatOrUndefined(p))?.isFile ?? false;
}

/**
 * Scans `dir`: artifacts matching `selector` (relative path → what they look like now) and log
 * files (relative path → size).
 */
export async function scan(
  dir: string,
  selector: Selector,
): Promise<{ artifacts: Map<string, Seen>; logs: Map<string, number> }> {
  const artifacts = new Map<string, Seen>();
  const logs = new Map<string, number>();
  async function walk(d: string) {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(d)) entries.push(e);
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith(".") || e.isSymlink) continue;
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (e.isDirectory) {
        if (!isBundleName(e.name)) {
          if ((await lstatOrUndefined(p))?.isDirectory) await walk(p);
          continue;
        }
        if (!selector.match(rel)) continue;
        const st = await Deno.lstat(p).catch(() => undefined);
        if (!st) continue;
        const seen: Seen = {
          type: "bundle",
          bytes: 0,
          mtimeMs: st.mtime?.getTime() ?? 0,
          files: 0,
          complete: false,
        };
        await bundleTotals(p, seen);
        seen.complete = await isFile(join(p, "Info.plist")) ||
          await isFile(join(p, "Contents", "Info.plist")) ||
          await isFile(join(p, "Resources", "Info.plist"));
        artifacts.set(rel, seen);
      } else if (e.isFile) {
        const st = await Deno.lstat(p).catch(() => undefined);
        if (!st) continue;
        if (e.name.endsWith(".log")) logs.set(rel, st.size);
        if (selector.match(rel)) {
          artifacts.set(rel, {
            type: "file",
            bytes: st.size,
            mtimeMs: st.mtime?.getTime() ?? 0,
            files: 1,
            complete: st.size > 0,
          });
        }
      }
    }
  }
  await walk(dir);
  return { artifacts, logs };
}

const signature = (s: Seen) => `${s.bytes}:${s.mtimeMs}:${s.files}:${s.complete}`;

interface Tracked {
  sig: string;
  /** When this process last saw it change. */
  since: number;
  /** The signature it was last reported finished with (or seen with at start). */
  done?: string;
  seen: Seen;
}

/** Tails growing log files, line by line. */
class LogTail {
  private offsets = new Map<string, { offset: number; buf: LineBuffer }>();
  constructor(private dir: string, private onLine: (file: string, line: string) => void) {}

  /** Starts each file already there at its end (only new lines are streamed). */
  prime(sizes: Map<string, number>) {
    for (const [rel, size] of sizes) this.offsets.set(rel, { offset: size, buf: new LineBuffer() });
  }

  async update(sizes: Map<string, number>) {
    for (const [rel, size] of sizes) {
      let st = this.offsets.get(rel);
      if (!st) this.offsets.set(rel, st = { offset: 0, buf: new LineBuffer() });
      if (size < st.offset) st.offset = 0, st.buf.reset(); // truncated or replaced
      if (size === st.offset) continue;
      // At most 8 MB per file per round: the rest comes on the next.
      st.offset = await readLines(
        join(this.dir, rel),
        st.offset,
        size,
        st.buf,
        (l) => this.onLine(rel, l),
        8 << 20,
      );
    }
    for (const rel of [...this.offsets.keys()]) if (!sizes.has(rel)) this.offsets.delete(rel);
  }
}

/** Watches until `signal` aborts; resolves after the hook that is running (if any) ends. */
export async function watch(o: WatchOptions): Promise<void> {
  await Deno.mkdir(o.dir, { recursive: true });
  const selector = new Selector(
    patternSet([...WATCHED_TYPES.map((t) => `*.${t}`), ...o.patterns], []),
  );
  const run = o.run ?? runHook;
  const tracked = new Map<string, Tracked>();
  const tail = new LogTail(o.dir, o.onLog);
  const queue: { rel: string; hook: HookName; template: string }[] = [];
  let running: Promise<void> | undefined;

  const drain = async () => {
    while (queue.length && !o.signal.aborted) {
      const job = queue.shift()!;
      const path = join(o.dir, job.rel);
      // Swapped for a link (or gone) since it was seen: the hook would act on what it points at.
      const now = await lstatOrUndefined(path);
      if (!now || now.isSymlink || !(now.isFile || now.isDirectory)) continue;
      let r: HookRun;
      try {
        r = await run(
          job.template,
          path,
          {
            CAL_WORKSPACE: o.workspace,
            CAL_ARTIFACT_TYPE: artifactType(baseName(job.rel)),
          },
          o.hookStdout,
          o.hookStderr,
        );
      } catch {
        r = { exit: 127, seconds: 0 };
      }
      o.onHook({
        kind: "hook",
        workspace: o.workspace,
        hook: job.hook,
        path,
        command: job.template,
        exit: r.exit,
        duration_s: r.seconds,
      });
    }
    running = undefined;
  };

  const finished = (rel: string, s: Seen) => {
    const type = artifactType(baseName(rel));
    o.onArtifact({
      kind: "artifact",
      workspace: o.workspace,
      path: join(o.dir, rel),
      category: categoryOf(rel),
      bytes: s.bytes,
      new: true,
      type,
    });
    const specific = HOOK_FOR[type];
    for (const hook of [specific, "on-any" as const]) {
      const template = hook && o.hooks[hook];
      if (hook && template) queue.push({ rel, hook, template });
    }
    running ??= drain();
  };

  const first = await scan(o.dir, selector);
  const start = Date.now();
  for (const [rel, seen] of first.artifacts) {
    const sig = signature(seen);
    tracked.set(rel, { sig, since: start, done: seen.complete ? sig : undefined, seen });
  }
  if (o.logs) tail.prime(first.logs);

  const waker = new Waker(o.dir);
  try {
    while (!o.signal.aborted) {
      const pending = [...tracked.values()].some((t) => t.done !== t.sig);
      await waker.wait(pending ? Math.max(50, Math.min(250, o.debounceMs / 4)) : 1000, o.signal);
      if (o.signal.aborted) break;
      const now = Date.now();
      const { artifacts, logs } = await scan(o.dir, selector);
      for (const [rel, seen] of artifacts) {
        const sig = signature(seen);
        let t = tracked.get(rel);
        if (!t) tracked.set(rel, t = { sig, since: now, seen });
        else if (t.sig !== sig) t.sig = sig, t.since = now, t.seen = seen;
        if (t.done !== t.sig && seen.complete && now - t.since >= o.debounceMs) {
          t.done = t.sig;
          finished(rel, seen);
        }
      }
      for (const rel of [...tracked.keys()]) if (!artifacts.has(rel)) tracked.delete(rel);
      if (o.logs) await tail.update(logs);
    }
  } finally {
    waker.close();
    queue.length = 0;
    await running;
  }
}
