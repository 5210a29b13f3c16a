/**
 * Removing workspaces: `destroy` one, `cleanup` many, and the debris a killed cal can leave
 * (half-made workspaces, machines whose workspace is gone).
 */

import { notFound, wrongState } from "./errors.ts";
import { stopMachine } from "./lifecycle.ts";
import { validateName } from "./names.ts";
import type { Output } from "./output.ts";
import { paths } from "./paths.ts";
import { confirm } from "./prompt.ts";
import type { Provider } from "./provider.ts";
import { getProvider } from "./providers/registry.ts";
import type { WorkspaceRecord } from "./records.ts";
import { exists, listNames, removeVmDir, withLock } from "./store.ts";
import { load, type Loaded, machineName, toRecord } from "./workspace.ts";
import { checkUnsavedWork } from "./gitsafety.ts";

export interface DestroyOptions {
  yes?: boolean;
  /** Stop a running workspace first instead of refusing. */
  force?: boolean;
}

/** Machines that belong to a workspace: its own and its snapshots'. */
async function machinesOf(w: Loaded): Promise<string[]> {
  const names = new Set<string>();
  for (const s of w.vm.snapshots ?? []) if (s.vm) names.add(s.vm);
  for (const m of await w.provider.list()) {
    if (m.name.startsWith(`${w.machine}--`)) names.add(m.name);
  }
  return [...names];
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
    let what = snapshots.length ? ` and its ${snapshots.length} snapshot(s)` : "";
    // Work that exists only in the guest is shown before anything is lost.
    const unsaved = await checkUnsavedWork(w, info?.state === "running", out);
    if (unsaved.found.length) what += ", with the unsaved work listed above,";
    if (
      !(await confirm(`Destroy workspace "${name}"${what}? Everything inside it is lost.`, opts))
    ) {
      throw wrongState(`Kept workspace "${name}".`, "Nothing was changed.", name);
    }
    await removeWorkspace(w, info?.state === "running", snapshots, out);
    return { ...toRecord(w, info), state: "destroyed" };
  });
}

async function removeWorkspace(
  w: Loaded,
  running: boolean,
  snapshots: string[],
  out: Output,
): Promise<void> {
  if (running) await stopMachine(w, true, out);
  for (const m of [w.machine, ...snapshots]) {
    if (await w.provider.get(m)) {
      out.event("delete", `Deleting ${m}…`, { workspace: w.vm.name });
      await w.provider.delete(m);
    }
  }
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
  orphans: { provider: Provider; machine: string }[];
}

/** Works out what cleanup would remove (nothing is touched). */
async function plan(opts: CleanupOptions, providerNames: string[]): Promise<Plan> {
  const p: Plan = { workspaces: [], orphans: [] };
  const known = new Set<string>();
  for (const name of await listNames()) {
    const w = await load(name).catch(() => undefined);
    if (!w) continue; // unreadable metadata: left for the user (status names the file)
    known.add(w.machine);
    const info = await w.provider.get(w.machine);
    const running = info?.state === "running";
    if (w.vm.status === "creating") {
      p.workspaces.push({ w, running, reason: "init was interrupted" });
    } else if (opts.all) p.workspaces.push({ w, running, reason: "--all" });
    else if (opts.stopped && !running) {
      p.workspaces.push({ w, running, reason: info ? "stopped" : "its machine is gone" });
    }
  }
  for (const pn of providerNames) {
    const provider = getProvider(pn);
    if (!(await provider.ensureAvailable().then(() => true, () => false))) continue;
    for (const m of await provider.list()) {
      const owner = m.name.startsWith("cal-") ? m.name.slice(4).split("--")[0] : undefined;
      if (!owner || known.has(machineName(owner)) || m.state === "running") continue;
      if (await exists(paths.vmDir(owner))) continue;
      p.orphans.push({ provider, machine: m.name });
    }
  }
  return p;
}

export async function cleanup(
  opts: CleanupOptions,
  providerNames: string[],
  out: Output,
): Promise<WorkspaceRecord[]> {
  const p = await plan(opts, providerNames);
  if (!p.workspaces.length && !p.orphans.length && !opts.cache) {
    out.event("cleanup", "Nothing to clean up.");
    return [];
  }
  const lines = [
    ...p.workspaces.map((x) => `  workspace ${x.w.vm.name} (${x.reason})`),
    ...p.orphans.map((o) => `  ${o.provider.name} machine ${o.machine} (no workspace owns it)`),
    ...(opts.cache ? ["  image caches unused for 30 days"] : []),
  ];
  if (!opts.yes) out.event("cleanup", `cal will remove:\n${lines.join("\n")}`);
  if (!(await confirm("Remove all of this?", opts))) {
    throw wrongState("Cleanup cancelled.", "Nothing was changed.");
  }
  const removed: WorkspaceRecord[] = [];
  for (const { w } of p.workspaces) {
    await withLock(w.vm.name, async () => {
      // Re-read under the lock: an init that was still running may have finished meanwhile.
      if (!(await exists(paths.vmDir(w.vm.name)))) return;
      const now = await load(w.vm.name);
      if (w.vm.status === "creating" && now.vm.status !== "creating") return;
      const info = await now.provider.get(now.machine);
      await removeWorkspace(now, info?.state === "running", await machinesOf(now), out);
      removed.push({ ...toRecord(now, info), state: "destroyed" });
    });
  }
  for (const o of p.orphans) {
    out.event("delete", `Deleting ${o.machine}…`);
    await o.provider.delete(o.machine);
  }
  if (opts.cache) {
    for (const pn of providerNames) await getProvider(pn).pruneCache?.(30);
  }
  return removed;
}
