/** Looking at workspaces without changing them: list, status, health. */

import { effectiveMode } from "./network/manage.ts";
import { join } from "node:path";
import type { Config } from "./config.ts";
import { CalError } from "./errors.ts";
import type { Guest } from "./guest/ssh.ts";
import type { MachineInfo } from "./provider.ts";
import { getProvider } from "./providers/registry.ts";
import type { CheckRecord, WorkspaceRecord } from "./records.ts";
import { exists, listNames, syncRoot } from "./store.ts";
import { InvalidFile } from "./yaml.ts";
import { connect, load, type Loaded, toRecord, unfinished } from "./workspace.ts";
import { paths } from "./paths.ts";

/** Every workspace, with one machine listing per provider (not one call per workspace). */
export async function list(): Promise<WorkspaceRecord[]> {
  const loaded: Loaded[] = [];
  const broken: WorkspaceRecord[] = [];
  for (const name of await listNames()) {
    try {
      loaded.push(await load(name));
    } catch (e) {
      if (!(e instanceof CalError)) throw e;
      const debris = !(await exists(paths.vmFile(name)));
      broken.push(
        brokenRecord(
          name,
          debris
            ? `${paths.vmDir(name)} has no vm.yaml: a killed cal left it; ` +
              "`cal-vm cleanup` removes it"
            : e instanceof InvalidFile
            ? e.message
            : `${paths.vmFile(name)}: ${e.message}`,
        ),
      );
    }
  }
  const machines = new Map<string, Map<string, MachineInfo>>();
  for (const pn of new Set(loaded.map((w) => w.vm.provider))) {
    const byName = new Map<string, MachineInfo>();
    for (const m of await getProvider(pn).list()) byName.set(m.name, m);
    machines.set(pn, byName);
  }
  const records = loaded.map((w) => toRecord(w, machines.get(w.vm.provider)?.get(w.machine)));
  return [...records, ...broken].sort((a, b) => a.workspace.localeCompare(b.workspace));
}

/** A workspace whose metadata cannot be read still shows up, with what is wrong. */
function brokenRecord(name: string, problem: string): WorkspaceRecord {
  return {
    kind: "workspace",
    workspace: name,
    state: "broken",
    provider: "?",
    vm: "?",
    cpu: 0,
    memory: 0,
    disk: 0,
    base_image: "?",
    environments: [],
    created_at: "",
    problem,
  };
}

export async function status(name: string): Promise<WorkspaceRecord> {
  const w = await load(name);
  const info = await w.provider.get(w.machine);
  const ip = info?.state === "running" ? (await w.provider.endpoint(w.machine))?.host : undefined;
  const network = await effectiveMode(name, w.vm.options?.network).catch(() => undefined);
  return { ...toRecord(w, info, ip), ...(network ? { network } : {}) };
}

/** Checks that a workspace is usable, one `check` record per step; stops at the first blocker. */
export async function health(name: string, config: Config): Promise<CheckRecord[]> {
  const w = await load(name);
  const checks: CheckRecord[] = [];
  const add = (check: string, ok: boolean, detail: string) => {
    checks.push({ kind: "check", workspace: name, check, ok, detail });
    return ok;
  };
  if (
    !add(
      "metadata",
      w.vm.status === "ready" && !w.vm.restoring,
      w.vm.status === "creating"
        ? "init did not finish"
        : unfinished(w)
        ? unfinished(w)!.message
        : paths.vmFile(name),
    )
  ) {
    return checks;
  }
  const info = await w.provider.get(w.machine);
  if (
    !add(
      "machine",
      !!info,
      info ? `${w.provider.name} machine ${w.machine}` : `${w.machine} is gone`,
    )
  ) {
    return checks;
  }
  if (!add("running", info!.state === "running", info!.state)) return checks;
  let guest: Guest;
  try {
    guest = await connect(w);
  } catch (e) {
    add("address", false, e instanceof Error ? e.message : String(e));
    return checks;
  }
  add("address", true, `${guest.endpoint.host}:${guest.endpoint.port}`);
  const t0 = performance.now();
  const probe = await guest.probe(5);
  if (
    !add(
      "ssh",
      probe.ok,
      probe.ok ? `login as ${w.vm.user} in ${Math.round(performance.now() - t0)} ms` : probe.reason,
    )
  ) {
    return checks;
  }
  const df = await guest.sh('df -Pk "$HOME" | tail -1').catch(() => undefined);
  const freeKb = Number(df?.stdout.trim().split(/\s+/)[3]);
  if (Number.isFinite(freeKb)) {
    const gb = freeKb / 1024 / 1024;
    add("disk", gb >= 2, `${gb.toFixed(1)} GB free in the guest's home`);
  } else add("disk", false, "could not read the guest's free space");
  const outDir = w.vm.output_dir ?? join(syncRoot(config.output.sync_dir), name);
  const outOk = await Deno.stat(outDir).then((s) => s.isDirectory, () => false);
  add("output", outOk, outOk ? outDir : `${outDir} is missing (start creates it)`);
  return checks;
}
