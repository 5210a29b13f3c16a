/**
 * Reading and moving inside guest-writable folders (the shared output folder) without ever
 * following a link the guest planted there.
 *
 * Deno has no `O_NOFOLLOW` or `openat`, so the same guarantee is built from what it has: an
 * `lstat` of the path (it must be the plain file or folder wanted), then the open, then an
 * `fstat` of the handle that must be the very same file (device and inode). A link swapped in
 * between the two is caught by the second check; nothing is read from a file that failed it.
 * Folders cal moves things into are checked the same way right before each rename.
 */

/** What identifies a file or folder on the host: device and inode, plus size and mtime. */
export interface Identity {
  kind: "file" | "dir";
  dev: number;
  ino: number;
  size: number;
  /** Milliseconds since the epoch. */
  mtimeMs: number;
}

export function identityOf(st: Deno.FileInfo): Identity | undefined {
  if (st.isSymlink || !(st.isFile || st.isDirectory)) return undefined;
  return {
    kind: st.isFile ? "file" : "dir",
    dev: st.dev ?? 0,
    ino: st.ino ?? 0,
    size: st.isFile ? st.size : 0,
    mtimeMs: st.mtime?.getTime() ?? 0,
  };
}

/** Whether `st` is still the same plain file or folder as `id` (folders: size not compared). */
export function sameAs(st: Deno.FileInfo | undefined, id: Identity): boolean {
  const now = st && identityOf(st);
  return !!now && now.kind === id.kind && now.dev === id.dev && now.ino === id.ino &&
    now.size === id.size && now.mtimeMs === id.mtimeMs;
}

export async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch {
    return undefined;
  }
}

/**
 * Opens a plain file for reading, never through a link: undefined when `path` is a link, not a
 * regular file, or was swapped between the check and the open.
 */
export async function openNoFollow(path: string): Promise<Deno.FsFile | undefined> {
  const before = await lstatOrUndefined(path);
  if (!before?.isFile) return undefined;
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch {
    return undefined;
  }
  try {
    const after = await f.stat();
    if (after.isFile && after.dev === before.dev && after.ino === before.ino) return f;
  } catch { /* fall through */ }
  f.close();
  return undefined;
}

/** Bytes [from, to) of an open file, at most `max` of them. */
export async function readAt(
  f: Deno.FsFile,
  from: number,
  to: number,
  max = 1 << 20,
): Promise<Uint8Array> {
  const n = Math.max(0, Math.min(to - from, max));
  const buf = new Uint8Array(n);
  if (!n) return buf;
  await f.seek(from, Deno.SeekMode.Start);
  let done = 0;
  while (done < n) {
    const got = await f.read(buf.subarray(done));
    if (got === null) break;
    done += got;
  }
  return buf.subarray(0, done);
}

/**
 * A folder cal writes into, checked to be a real folder (not a link) and remembered, so
 * `stillSame` can re-check it right before each rename.
 */
export interface CheckedDir {
  path: string;
  dev: number;
  ino: number;
}

/** Why `path` cannot be written into, or the checked folder. Creates it when absent. */
export async function realFolder(path: string): Promise<CheckedDir | string> {
  let st = await lstatOrUndefined(path);
  if (!st) {
    try {
      await Deno.mkdir(path); // not recursive: its parent was checked; mkdir never follows
    } catch { /* made meanwhile: judged below */ }
    st = await lstatOrUndefined(path);
  }
  if (!st) return "it cannot be created";
  if (st.isSymlink) return "it is a link";
  if (!st.isDirectory) return "it is not a folder";
  return { path, dev: st.dev ?? 0, ino: st.ino ?? 0 };
}

export async function stillSame(d: CheckedDir): Promise<boolean> {
  const st = await lstatOrUndefined(d.path);
  return !!st && st.isDirectory && !st.isSymlink && st.dev === d.dev && st.ino === d.ino;
}

/** Whether an error is a rename across filesystems (EXDEV). */
export function crossDevice(e: unknown): boolean {
  const m = e instanceof Error ? `${e.name} ${e.message}` : String(e);
  return /EXDEV|cross-device|os error 18\b/i.test(m);
}

/**
 * Copies a tree cal itself made (files, folders, links) to `to`, which must not exist: every
 * file is created new (`createNew`: an existing name, a link included, fails instead of being
 * written through).
 */
export async function copyTree(from: string, to: string): Promise<void> {
  const st = await Deno.lstat(from);
  if (st.isSymlink) {
    await Deno.symlink(await Deno.readLink(from), to);
  } else if (st.isDirectory) {
    await Deno.mkdir(to, { mode: 0o755 });
    for await (const e of Deno.readDir(from)) {
      await copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
    }
    if (st.mtime) await Deno.utime(to, st.mtime, st.mtime);
  } else if (st.isFile) {
    const src = await Deno.open(from, { read: true });
    let dst: Deno.FsFile;
    try {
      dst = await Deno.open(to, {
        write: true,
        createNew: true,
        mode: (st.mode ?? 0) & 0o111 ? 0o755 : 0o644,
      });
    } catch (e) {
      src.close();
      throw e;
    }
    await src.readable.pipeTo(dst.writable); // closes both
    if (st.mtime) await Deno.utime(to, st.mtime, st.mtime);
  }
}

/** The size of a plain file (not through a link), or undefined. */
export async function plainSize(path: string): Promise<number | undefined> {
  const st = await lstatOrUndefined(path);
  return st?.isFile ? st.size : undefined;
}

/**
 * Bytes [from, to) of a plain file, at most `max` of them, never through a link (empty when
 * `path` is a link or not a plain file).
 */
export async function readRange(
  path: string,
  from: number,
  to: number,
  max = 1 << 20,
): Promise<Uint8Array> {
  const f = await openNoFollow(path);
  if (!f) return new Uint8Array(0);
  try {
    return await readAt(f, from, to, max);
  } finally {
    f.close();
  }
}
