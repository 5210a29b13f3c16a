/**
 * Snapshots: copies of a workspace's machine (Tart clones: copy-on-write on APFS, so instant and
 * small), named `cal-<workspace>--<snapshot>`. Names never contain `--`, so two workspaces'
 * snapshot machines can never collide. Each snapshot is recorded in the workspace's vm.yaml.
 *
 * Consistency first: a running workspace is flushed and stopped before it is copied, and started
 * again afterwards. Restore copies the snapshot to a temporary machine before the workspace's
 * machine is deleted, so a failed copy leaves both the workspace and the snapshot intact.
 */

import type { Config } from "./config.ts";
import { CalError, notFound, wrongState } from "./errors.ts";
import { requireNoUnsavedWork } from "./gitsafety.ts";
import { startMachine, stopMachine, usable } from "./lifecycle.ts";
import { snapshotMachine, validateName } from "./names.ts";
import type { Output } from "./output.ts";
import type { MachineInfo } from "./provider.ts";
import type { DiskUsageRecord, SnapshotRecord } from "./records.ts";
import { killPoint, listNames, type SnapshotEntry, withLock, writeVm } from "./store.ts";
import { load, type Loaded, machineName } from "./workspace.ts";

export { snapshotMachine };

/** The temporary machine a restore copies into; `.` keeps it out of the snapshot namespace. */
const restoringMachine = (workspace: string) => `${machineName(workspace)}--.restoring`;

function toRecord(w: Loaded, s: SnapshotEntry, info?: MachineInfo): SnapshotRecord {
  return {
    kind: "snapshot",
    workspace: w.vm.name,
    snapshot: s.name,
    created_at: s.created_at,
    auto: !!s.auto,
    vm: s.vm ?? snapshotMachine(w.vm.name, s.name),
    ...(info?.sizeGb !== undefined ? { size_gb: info.sizeGb } : {}),
    ...(s.source_state ? { source_state: s.source_state } : {}),
    ...(s.status === "creating"
      ? {
        problem: "its create was interrupted; `cal-snap create " + w.vm.name + " --name " +
          s.name + "` again finishes it, `cal-snap delete` or `cal-vm cleanup` removes it",
      }
      : {}),
  };
}

/** Refuses a workspace an interrupted init or destroy left (a restore's is what restore finishes). */
function ready(w: Loaded): void {
  if (w.vm.status !== "ready") usable(w);
}

export interface Timed<T> {
  record: T;
  seconds: number;
}

const since = (t0: number) => Math.round((performance.now() - t0) / 100) / 10;

/**
 * Takes a snapshot; the caller holds the workspace's lock. The snapshot is recorded (`creating`)
 * before the workspace is stopped or copied, so a kill at any point leaves an entry `list` shows
 * and `delete`/`cleanup` remove, and the same create run again finishes it.
 */
async function createLocked(
  w: Loaded,
  snapshot: string,
  auto: boolean,
  config: Config,
  out: Output,
): Promise<SnapshotRecord> {
  usable(w);
  const name = w.vm.name;
  const target = snapshotMachine(name, snapshot);
  const earlier = (w.vm.snapshots ?? []).find((s) => s.name === snapshot);
  if (earlier && earlier.status !== "creating") {
    throw wrongState(
      `Workspace "${name}" already has a snapshot named "${snapshot}".`,
      `Pick another name, or delete it first: \`cal-snap delete ${name} --name ${snapshot}\`.`,
      name,
    );
  }
  const info = await w.provider.get(w.machine);
  if (!info) {
    throw notFound(
      `Workspace "${name}"'s machine ${w.machine} is gone; there is nothing to snapshot.`,
      `Restore a snapshot (\`cal-snap restore ${name} --name NAME\`) or destroy the workspace.`,
      name,
    );
  }
  // Under the lock, an unfinished entry or an unrecorded copy is a killed create's: redo it.
  if (await w.provider.get(target)) {
    out.event("cleanup", `Removing ${target}, left by an interrupted snapshot create…`, {
      workspace: name,
    });
    await w.provider.delete(target);
  }
  // A killed create stopped a running workspace: this one starts it again afterwards.
  const wasRunning = info.state === "running" || earlier?.source_state === "running";
  const entry: SnapshotEntry = {
    name: snapshot,
    created_at: new Date().toISOString(),
    vm: target,
    auto,
    source_state: earlier?.source_state ?? info.state,
    status: "creating",
  };
  const others = (w.vm.snapshots ?? []).filter((s) => s.name !== snapshot);
  w.vm.snapshots = [...others, entry];
  await writeVm(w.vm);
  killPoint("snapshot-create:recorded");
  try {
    if (info.state === "running") {
      out.event(
        "interrupt",
        `Stopping "${name}" for a consistent snapshot: the session is interrupted and resumes ` +
          "after the copy.",
        { workspace: name },
      );
      await stopMachine(w, false, out);
      killPoint("snapshot-create:stopped");
    }
    out.event("snapshot", `Copying ${w.machine} to ${target}…`, { workspace: name });
    try {
      await w.provider.clone(w.machine, target);
    } catch (e) {
      // Nothing was made: the entry goes again.
      w.vm.snapshots = others;
      await writeVm(w.vm).catch(() => {});
      throw e;
    }
    killPoint("snapshot-create:copied");
    delete entry.status;
    await writeVm(w.vm);
  } finally {
    if (wasRunning && (await w.provider.get(w.machine))?.state !== "running") {
      await startMachine(w, config, {}, out);
    }
  }
  return toRecord(w, entry, await w.provider.get(target));
}

/**
 * Takes a snapshot named `snapshot`, or, when it is undefined, an automatic session snapshot
 * (named from the configured prefix and the time, and pruned by the configured policy).
 */
export async function createSnapshot(
  name: string,
  snapshot: string | undefined,
  config: Config,
  out: Output,
): Promise<Timed<SnapshotRecord>> {
  validateName(name);
  if (snapshot !== undefined) validateName(snapshot, "snapshot");
  return await withLock(name, async () => {
    const t0 = performance.now();
    const w = await load(name);
    const auto = snapshot === undefined;
    const snap = snapshot ?? sessionName(
      config.snapshots.snapshot_prefix,
      (w.vm.snapshots ?? []).map((s) => s.name),
    );
    const record = await createLocked(w, snap, auto, config, out);
    if (auto) await pruneLocked(w, policy(config), out);
    return { record, seconds: since(t0) };
  });
}

/** `session-2026-01-17-1430`: the prefix and the local time, made unique if needed. */
export function sessionName(prefix: string, taken: string[], now = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  const base = `${prefix}-${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())}-` +
    `${p(now.getHours())}${p(now.getMinutes())}`;
  let name = base;
  for (let i = 2; taken.includes(name); i++) name = `${base}-${i}`;
  return validateName(name, "snapshot");
}

/**
 * The session-start snapshot the agent launcher takes when the config asks for it (followed by
 * pruning auto-snapshots beyond `max_auto_snapshots`). Returns undefined when disabled.
 */
export async function autoSnapshot(
  name: string,
  config: Config,
  out: Output,
): Promise<SnapshotRecord | undefined> {
  if (!config.snapshots.auto_snapshot_on_session_start) return undefined;
  return (await createSnapshot(name, undefined, config, out)).record;
}

/** Snapshots of one workspace, or of all when `name` is undefined. */
export async function listSnapshots(name?: string): Promise<SnapshotRecord[]> {
  const names = name === undefined ? await listNames() : [validateName(name)];
  const records: SnapshotRecord[] = [];
  const sizes = new Map<string, Map<string, MachineInfo>>();
  for (const n of names) {
    const w = await load(n).catch((e) => {
      if (name !== undefined) throw e;
      return undefined; // --all skips workspaces whose metadata cannot be read
    });
    if (!w) continue;
    let byName = sizes.get(w.vm.provider);
    if (!byName) {
      byName = new Map((await w.provider.list()).map((m) => [m.name, m]));
      sizes.set(w.vm.provider, byName);
    }
    for (const s of w.vm.snapshots ?? []) {
      records.push(toRecord(w, s, byName.get(s.vm ?? snapshotMachine(n, s.name))));
    }
  }
  return records.sort((a, b) => b.created_at.localeCompare(a.created_at));
}

function findEntry(w: Loaded, snapshot: string): SnapshotEntry {
  const s = (w.vm.snapshots ?? []).find((x) => x.name === snapshot);
  if (!s) {
    const known = (w.vm.snapshots ?? []).map((x) => x.name);
    throw notFound(
      `Workspace "${w.vm.name}" has no snapshot named "${snapshot}".`,
      known.length
        ? `Its snapshots: ${known.join(", ")}.`
        : `It has no snapshots; take one with \`cal-snap create ${w.vm.name} --name NAME\`.`,
      w.vm.name,
    );
  }
  return s;
}

export interface RestoreOptions {
  /** Restore even when the guest holds unsaved work. */
  force?: boolean;
}

/**
 * Restores a snapshot; the caller holds the lock. The workspace is marked `restoring` before it
 * is stopped, and the snapshot copied to a temporary machine before the workspace's machine is
 * replaced: a kill at any point leaves a workspace that says to run the restore again (which
 * starts it again if it was running), with the snapshot intact and at most a temporary copy that
 * the restore or `cleanup` removes.
 */
async function restoreLocked(
  w: Loaded,
  snapshot: string,
  opts: RestoreOptions,
  config: Config,
  out: Output,
): Promise<SnapshotRecord> {
  const name = w.vm.name;
  const entry = findEntry(w, snapshot);
  if (entry.status === "creating") {
    throw wrongState(
      `Snapshot "${snapshot}" of "${name}" was never finished: its create was interrupted.`,
      `Take it again (\`cal-snap create ${name} --name ${snapshot}\`) or delete it ` +
        `(\`cal-snap delete ${name} --name ${snapshot}\`).`,
      name,
    );
  }
  const source = entry.vm ?? snapshotMachine(name, snapshot);
  // Never touch the workspace before the copy's source is known to exist.
  if (!(await w.provider.get(source))) {
    throw notFound(
      `Snapshot "${snapshot}" of "${name}" is recorded, but its machine ${source} is gone.`,
      `Remove the record with \`cal-snap delete ${name} --name ${snapshot}\`.`,
      name,
    );
  }
  const info = await w.provider.get(w.machine);
  // A killed restore stopped a running workspace: this one starts it again afterwards.
  const wasRunning = info?.state === "running" || !!w.vm.restoring?.resume;
  await requireNoUnsavedWork(w, info?.state, `Restoring "${snapshot}"`, opts, out);
  // From here a kill leaves a workspace that says its restore was interrupted (and how to finish).
  w.vm.restoring = {
    snapshot,
    at: new Date().toISOString(),
    ...(wasRunning ? { resume: true } : {}),
  };
  await writeVm(w.vm);
  if (info?.state === "running") await stopMachine(w, true, out);
  killPoint("restore:stopped");

  const temp = restoringMachine(name);
  if (await w.provider.get(temp)) await w.provider.delete(temp); // left by a failed restore
  out.event("restore", `Copying ${source} back…`, { workspace: name });
  try {
    await w.provider.clone(source, temp);
  } catch (e) {
    // The workspace is untouched: bring it back as it was before failing.
    delete w.vm.restoring;
    await writeVm(w.vm).catch(() => {});
    if (wasRunning && info) await startMachine(w, config, {}, out).catch(() => {});
    const err = e instanceof CalError ? e : new CalError(String(e));
    throw new CalError(`Restoring "${snapshot}" failed while copying it: ${err.message}`, {
      code: err.code,
      exit: err.exit,
      hint: `The workspace${info ? "" : "'s (already missing) machine"} and the snapshot are ` +
        `unchanged; retry with \`cal-snap restore ${name} --name ${snapshot}\`.`,
      workspace: name,
    });
  }
  killPoint("restore:copied");
  try {
    if (await w.provider.get(w.machine)) await w.provider.delete(w.machine);
    killPoint("restore:deleted");
    await w.provider.rename(temp, w.machine);
  } catch (e) {
    const err = e instanceof CalError ? e : new CalError(String(e));
    throw new CalError(`Restoring "${snapshot}" failed: ${err.message}`, {
      code: err.code,
      exit: err.exit,
      hint: `The snapshot is intact; retry with \`cal-snap restore ${name} --name ${snapshot}\`.`,
      workspace: name,
    });
  }
  killPoint("restore:renamed");
  delete w.vm.restoring;
  await writeVm(w.vm);
  if (wasRunning) await startMachine(w, config, {}, out);
  return toRecord(w, entry, await w.provider.get(source));
}

export async function restoreSnapshot(
  name: string,
  snapshot: string,
  opts: RestoreOptions,
  config: Config,
  out: Output,
): Promise<Timed<SnapshotRecord>> {
  validateName(name);
  validateName(snapshot, "snapshot");
  return await withLock(name, async () => {
    const t0 = performance.now();
    const w = await load(name);
    ready(w);
    const record = await restoreLocked(w, snapshot, opts, config, out);
    return { record, seconds: since(t0) };
  });
}

/** Restores the newest session-start (auto) snapshot. */
export async function rollback(
  name: string,
  opts: RestoreOptions,
  config: Config,
  out: Output,
): Promise<Timed<SnapshotRecord>> {
  validateName(name);
  return await withLock(name, async () => {
    const t0 = performance.now();
    const w = await load(name);
    ready(w);
    const latest = (w.vm.snapshots ?? []).filter((s) => s.auto)
      .sort((a, b) => b.created_at.localeCompare(a.created_at))[0];
    if (!latest) {
      throw notFound(
        `Workspace "${name}" has no session-start snapshot to roll back to.`,
        `See its snapshots with \`cal-snap list ${name}\` and restore one by name.`,
        name,
      );
    }
    const record = await restoreLocked(w, latest.name, opts, config, out);
    return { record, seconds: since(t0) };
  });
}

/** Deletes a snapshot's machine and its entry; the caller holds the lock. */
export async function deleteLocked(
  w: Loaded,
  entry: SnapshotEntry,
  out: Output,
): Promise<SnapshotRecord> {
  const m = entry.vm ?? snapshotMachine(w.vm.name, entry.name);
  if (await w.provider.get(m)) {
    out.event("delete", `Deleting ${m}…`, { workspace: w.vm.name });
    await w.provider.delete(m);
  }
  w.vm.snapshots = (w.vm.snapshots ?? []).filter((s) => s.name !== entry.name);
  await writeVm(w.vm);
  return { ...toRecord(w, entry), deleted: true };
}

export async function deleteSnapshot(
  name: string,
  snapshot: string,
  out: Output,
): Promise<SnapshotRecord> {
  validateName(name);
  validateName(snapshot, "snapshot");
  return await withLock(name, async () => {
    const w = await load(name);
    const m = snapshotMachine(name, snapshot);
    if (!(w.vm.snapshots ?? []).some((s) => s.name === snapshot) && await w.provider.get(m)) {
      // A copy an interrupted create (of an older cal) made but never recorded.
      out.event("delete", `Deleting ${m} (a snapshot copy that was never recorded)…`, {
        workspace: name,
      });
      await w.provider.delete(m);
      return { ...toRecord(w, { name: snapshot, created_at: "", vm: m }), deleted: true };
    }
    return await deleteLocked(w, findEntry(w, snapshot), out);
  });
}

export interface CleanupPolicy {
  /** Only automatic (session-start) snapshots are candidates. */
  autoOnly?: boolean;
  /** Delete candidates older than this many milliseconds. */
  olderThanMs?: number;
  /** Keep at most this many automatic snapshots (the newest). */
  maxAuto?: number;
}

/** The configured policy: `max_auto_snapshots` and `auto_cleanup_after_days`. */
export function policy(config: Config): CleanupPolicy {
  const days = config.snapshots.auto_cleanup_after_days;
  return {
    autoOnly: true,
    maxAuto: config.snapshots.max_auto_snapshots,
    ...(days > 0 ? { olderThanMs: days * 86_400_000 } : {}),
  };
}

async function pruneLocked(
  w: Loaded,
  p: CleanupPolicy,
  out: Output,
  now = Date.now(),
): Promise<SnapshotRecord[]> {
  const all = [...(w.vm.snapshots ?? [])].sort((a, b) => b.created_at.localeCompare(a.created_at));
  const doomed = new Set<SnapshotEntry>();
  for (const s of all) {
    if (p.autoOnly && !s.auto) continue;
    if (p.olderThanMs !== undefined && now - Date.parse(s.created_at) > p.olderThanMs) {
      doomed.add(s);
    }
  }
  if (p.maxAuto !== undefined) {
    all.filter((s) => s.auto).slice(p.maxAuto).forEach((s) => doomed.add(s));
  }
  if (p.autoOnly && p.olderThanMs === undefined && p.maxAuto === undefined) {
    all.filter((s) => s.auto).forEach((s) => doomed.add(s));
  }
  const removed: SnapshotRecord[] = [];
  for (const s of doomed) removed.push(await deleteLocked(w, s, out));
  return removed;
}

/** Deletes snapshots by policy, for one workspace or (name undefined) all of them. */
export async function cleanupSnapshots(
  name: string | undefined,
  p: CleanupPolicy,
  out: Output,
): Promise<SnapshotRecord[]> {
  const names = name === undefined ? await listNames() : [validateName(name)];
  const removed: SnapshotRecord[] = [];
  for (const n of names) {
    await withLock(n, async () => {
      const w = await load(n).catch((e) => {
        if (name !== undefined) throw e;
        out.warn(`Skipped "${n}": ${e instanceof Error ? e.message : e}`, n);
        return undefined;
      });
      if (w) removed.push(...await pruneLocked(w, p, out));
    });
  }
  return removed;
}

/** Parses `7d`, `12h`, `30m`, `2w` into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*([mhdw])$/.exec(text.trim());
  if (!m) {
    throw new CalError(`"${text}" is not a duration.`, {
      code: "usage",
      exit: 2,
      hint: "Use a number and a unit: 30m, 12h, 7d or 2w.",
    });
  }
  const unit = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as "m"];
  return Number(m[1]) * unit;
}

/** What a workspace occupies on the host, from the provider's machine listing. */
export async function diskUsage(name: string): Promise<DiskUsageRecord> {
  const w = await load(name);
  const byName = new Map((await w.provider.list()).map((m) => [m.name, m]));
  const vmGb = byName.get(w.machine)?.sizeGb ?? 0;
  const snaps = w.vm.snapshots ?? [];
  const snapGb = snaps.reduce(
    (sum, s) => sum + (byName.get(s.vm ?? snapshotMachine(name, s.name))?.sizeGb ?? 0),
    0,
  );
  return {
    kind: "disk-usage",
    workspace: name,
    vm_gb: vmGb,
    snapshots_gb: snapGb,
    snapshots: snaps.length,
    total_gb: vmGb + snapGb,
  };
}
