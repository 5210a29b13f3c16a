/**
 * Removing workspaces: `destroy` one, `cleanup` many, and the debris a killed cal can leave
 * (half-made or half-destroyed workspaces, unfinished snapshots, temporary copies, machines
 * whose workspace is gone, folders without their vm.yaml).
 *
 * Destroy marks the workspace `destroying` before it deletes anything, so a kill halfway leaves
 * a workspace that says so and that the same destroy (or cleanup) finishes.
 */

import { basename } from "node:path";
import { notFound, wrongState } from "./errors.ts";
import { stopMachine } from "./lifecycle.ts";
import { validateName } from "./names.ts";
import type { Output } from "./output.ts";
import { paths } from "./paths.ts";
import { confirm, declined } from "./prompt.ts";
import type { Provider } from "./provider.ts";
import { getProvider } from "./providers/registry.ts";
import type { WorkspaceRecord } from "./records.ts";
import { deleteLocked } from "./snapshots.ts";
import {
  exists,
  killPoint,
  listNames,
  removalLeftovers,
  removeRemovalLeftover,
  removeVmDir,
  withLock,
  writeVm,
} from "./store.ts";
import { load, type Loaded, machineName, toRecord } from "./workspace.ts";
import { checkUnsavedWork } from "./gitsafety.ts";

export interface DestroyOptions {
  yes?: boolean;
  /** Stop a running workspace first instead of refusing. */
  force?: boolean;
}

/** Machines that belong to a workspace besides its own: its snapshots' and temporary copies. */
async function machinesOf(w: Loaded): Promise<string[]> {
  const names = new Set<string>();
  for (const s of w.vm.snapshots ?? []) if (s.vm) names.add(s.vm);
  for (const m of await w.provider.list()) {
    if (m.name.startsWith(`${w.machine}--`)) names.add(m.name);
  }
  return [...names];
}

/** The record of a workspace folder that had no vm.yaml (nothing else is known of it). */
function debrisRecord(name: string): WorkspaceRecord {
  return {
    kind: "workspace",
    workspace: name,
    state: "destroyed",
    provider: "?",
    vm: machineName(name),
    cpu: 0,
    memory: 0,
    disk: 0,
    base_image: "?",
    environments: [],
    created_at: "",
  };
}

export async function destroy(
  name: string,
  opts: DestroyOptions,
  out: Output,
): Promise<WorkspaceRecord> {
  validateName(name);
  if (!(await exists(paths.vmDir(name)))) {
    throw notFound(
      `No workspace named "${name}".`,
      "Run `cal-vm list` to see your workspaces.",
      name,
    );
  }
  return await withLock(name, async () => {
    if (!(await exists(paths.vmFile(name)))) {
      // A folder a killed init or destroy left without its vm.yaml: nothing in it is anyone's.
      out.event("delete", `Removing "${name}"'s folder (it has no vm.yaml)…`, { workspace: name });
      await removeVmDir(name);
      return debrisRecord(name);
    }
    const w = await load(name);
    const info = await w.provider.get(w.machine);
    if (info?.state === "running" && !opts.force) {
      throw wrongState(
        `Workspace "${name}" is running.`,
        `Stop it first (\`cal-vm stop ${name}\`), or pass --force to stop and destroy it.`,
        name,
      );
    }
    const snapshots = await machinesOf(w);
    const finishing = w.vm.status === "destroying";
    let what = snapshots.length ? ` and its ${snapshots.length} snapshot(s)` : "";
    // Work that exists only in the guest is shown before anything is lost.
    const unsaved = finishing
      ? { found: [] }
      : await checkUnsavedWork(w, info?.state === "running", out);
    if (unsaved.found.length) what += ", with the unsaved work listed above,";
    const question = finishing
      ? `Finish destroying workspace "${name}"${what}? Its destroy was interrupted.`
      : `Destroy workspace "${name}"${what}? Everything inside it is lost.`;
    if (!(await confirm(question, opts))) {
      throw declined(`Kept workspace "${name}".`, name);
    }
    await removeWorkspace(w, info?.state === "running", snapshots, out);
    return { ...toRecord(w, info), state: "destroyed" };
  });
}

/** Removes a workspace and its machines; the caller holds the lock. */
async function removeWorkspace(
  w: Loaded,
  running: boolean,
  snapshots: string[],
  out: Output,
): Promise<void> {
  // From here on a kill leaves a workspace that says it is half destroyed (and how to finish).
  if (w.vm.status !== "destroying") {
    w.vm.status = "destroying";
    await writeVm(w.vm);
  }
  killPoint("destroy:recorded");
  if (running) await stopMachine(w, true, out);
  const machines = [w.machine, ...snapshots];
  for (const m of machines) {
    if (await w.provider.get(m)) {
      out.event("delete", `Deleting ${m}…`, { workspace: w.vm.name });
      await w.provider.delete(m);
      killPoint("destroy:deleted");
    }
  }
  // A machine a kill left half deleted (the provider no longer lists it) goes too.
  for (const path of (await w.provider.leftovers?.()) ?? []) {
    if (!machines.includes(basename(path))) continue;
    out.event("delete", `Removing ${path}, left half-deleted…`, { workspace: w.vm.name });
    await w.provider.removeLeftover!(path);
  }
  killPoint("destroy:machines-deleted");
  await removeVmDir(w.vm.name);
}

export interface CleanupOptions {
  /** Also destroy stopped workspaces. */
  stopped?: boolean;
  /** Destroy every workspace, stopping running ones. */
  all?: boolean;
  /** Prune the providers' image caches too. */
  cache?: boolean;
  yes?: boolean;
}

interface Plan {
  workspaces: { w: Loaded; running: boolean; reason: string }[];
  /** Workspace folders without a vm.yaml. */
  folders: string[];
  /** Unfinished snapshots and temporary copies of workspaces that stay. */
  stray: { w: Loaded; machine: string; reason: string }[];
  orphans: { provider: Provider; machine: string }[];
  /** Half-made copies the providers and cal's own removals left (paths). */
  leftovers: { provider?: Provider; path: string }[];
}

/** Works out what cleanup would remove (nothing is touched). */
async function plan(opts: CleanupOptions, providerNames: string[]): Promise<Plan> {
  const p: Plan = { workspaces: [], folders: [], stray: [], orphans: [], leftovers: [] };
  const known = new Set<string>();
  for (const name of await listNames()) {
    if (!(await exists(paths.vmFile(name)))) {
      p.folders.push(name); // its machines, if any, are orphans (below)
      continue;
    }
    const w = await load(name).catch(() => undefined);
    if (!w) continue; // unreadable metadata: left for the user (status names the file)
    known.add(w.machine);
    const info = await w.provider.get(w.machine);
    const running = info?.state === "running";
    if (w.vm.status === "creating") {
      p.workspaces.push({ w, running, reason: "init was interrupted" });
    } else if (w.vm.status === "destroying") {
      p.workspaces.push({ w, running, reason: "destroy was interrupted" });
    } else if (opts.all) p.workspaces.push({ w, running, reason: "--all" });
    else if (opts.stopped && !running) {
      p.workspaces.push({ w, running, reason: info ? "stopped" : "its machine is gone" });
    } else {
      const recorded = new Map((w.vm.snapshots ?? []).map((s) => [s.vm ?? "", s]));
      for (const m of await w.provider.list()) {
        if (!m.name.startsWith(`${w.machine}--`) || m.state === "running") continue;
        const s = recorded.get(m.name);
        if (s && s.status !== "creating") continue;
        p.stray.push({
          w,
          machine: m.name,
          reason: s
            ? `snapshot "${s.name}", its create was interrupted`
            : m.name.endsWith("--.restoring")
            ? "a restore's temporary copy"
            : "a snapshot copy no vm.yaml records",
        });
      }
      for (const s of w.vm.snapshots ?? []) {
        const m = s.vm ?? "";
        if (s.status === "creating" && !p.stray.some((x) => x.w === w && x.machine === m)) {
          p.stray.push({
            w,
            machine: m,
            reason: `snapshot "${s.name}", its create was interrupted`,
          });
        }
      }
    }
  }
  for (const path of await removalLeftovers()) p.leftovers.push({ path });
  for (const pn of providerNames) {
    const provider = getProvider(pn);
    if (!(await provider.ensureAvailable().then(() => true, () => false))) continue;
    for (const m of await provider.list()) {
      const owner = m.name.startsWith("cal-") ? m.name.slice(4).split("--")[0] : undefined;
      if (!owner || known.has(machineName(owner)) || m.state === "running") continue;
      if (await exists(paths.vmFile(owner))) continue;
      p.orphans.push({ provider, machine: m.name });
    }
    for (const path of (await provider.leftovers?.()) ?? []) p.leftovers.push({ provider, path });
  }
  return p;
}

export async function cleanup(
  opts: CleanupOptions,
  providerNames: string[],
  out: Output,
): Promise<WorkspaceRecord[]> {
  const p = await plan(opts, providerNames);
  const nothing = !p.workspaces.length && !p.folders.length && !p.stray.length &&
    !p.orphans.length && !p.leftovers.length;
  if (nothing && !opts.cache) {
    out.event("cleanup", "Nothing to clean up.");
    return [];
  }
  const lines = [
    ...p.workspaces.map((x) => `  workspace ${x.w.vm.name} (${x.reason})`),
    ...p.folders.map((n) => `  folder ${paths.vmDir(n)} (no vm.yaml: a killed cal left it)`),
    ...p.stray.map((x) => `  ${x.w.provider.name} machine ${x.machine} (${x.reason})`),
    ...p.orphans.map((o) => `  ${o.provider.name} machine ${o.machine} (no workspace owns it)`),
    ...p.leftovers.map((l) => `  ${l.path} (a half-made copy a killed cal left)`),
    ...(opts.cache ? ["  image caches unused for 30 days"] : []),
  ];
  if (!opts.yes) out.event("cleanup", `cal will remove:\n${lines.join("\n")}`);
  if (!(await confirm("Remove all of this?", opts))) {
    throw declined("Cleanup cancelled.");
  }
  const removed: WorkspaceRecord[] = [];
  for (const { w } of p.workspaces) {
    await withLock(w.vm.name, async () => {
      // Re-read under the lock: an init that was still running may have finished meanwhile.
      if (!(await exists(paths.vmFile(w.vm.name)))) return;
      const now = await load(w.vm.name);
      if (w.vm.status === "creating" && now.vm.status !== "creating") return;
      const info = await now.provider.get(now.machine);
      await removeWorkspace(now, info?.state === "running", await machinesOf(now), out);
      removed.push({ ...toRecord(now, info), state: "destroyed" });
    });
  }
  for (const name of p.folders) {
    await withLock(name, async () => {
      if (!(await exists(paths.vmDir(name))) || await exists(paths.vmFile(name))) return;
      out.event("delete", `Removing ${paths.vmDir(name)}…`, { workspace: name });
      await removeVmDir(name);
    });
  }
  const byWorkspace = new Map<string, Plan["stray"]>();
  for (const x of p.stray) {
    byWorkspace.set(x.w.vm.name, [...(byWorkspace.get(x.w.vm.name) ?? []), x]);
  }
  for (const [name, stray] of byWorkspace) {
    await withLock(name, async () => {
      // Under the lock: a create or restore that was running when cleanup looked has ended.
      const now = await load(name);
      for (const { machine } of stray) {
        const entry = (now.vm.snapshots ?? []).find((s) => s.vm === machine);
        if (entry && entry.status !== "creating") continue; // finished meanwhile
        if (entry) await deleteLocked(now, entry, out);
        else if (await now.provider.get(machine)) {
          out.event("delete", `Deleting ${machine}…`, { workspace: name });
          await now.provider.delete(machine);
        }
      }
    });
  }
  for (const o of p.orphans) {
    out.event("delete", `Deleting ${o.machine}…`);
    await o.provider.delete(o.machine);
  }
  for (const l of p.leftovers) {
    out.event("delete", `Removing ${l.path}…`);
    if (l.provider) await l.provider.removeLeftover!(l.path);
    else await removeRemovalLeftover(l.path);
  }
  if (opts.cache) {
    for (const pn of providerNames) await getProvider(pn).pruneCache?.(30);
  }
  return removed;
}
