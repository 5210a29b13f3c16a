/**
 * A workspace as cal sees it: its metadata (vm.yaml), its provider, its machine, and the record
 * that describes it. Lifecycle verbs live in `lifecycle.ts`.
 */

import { CalError, notFound, wrongState } from "./errors.ts";
import type { MachineInfo, Provider } from "./provider.ts";
import { getProvider } from "./providers/registry.ts";
import type { WorkspaceRecord, WorkspaceState } from "./records.ts";
import { readVm, type VmFile } from "./store.ts";
import { Guest } from "./guest/ssh.ts";
import { machineName } from "./names.ts";

export { machineName } from "./names.ts";

export interface Loaded {
  vm: VmFile;
  provider: Provider;
  machine: string;
}

export async function load(name: string): Promise<Loaded> {
  const vm = await readVm(name);
  return { vm, provider: getProvider(vm.provider), machine: vm.vm ?? machineName(name) };
}

/** What an interrupted init, destroy or restore left unfinished in `w`, and what finishes it. */
export function unfinished(w: Loaded): { message: string; hint: string } | undefined {
  const n = w.vm.name;
  if (w.vm.status === "creating") {
    return {
      message: `Workspace "${n}" was never finished: its init was interrupted.`,
      hint: `Run \`cal-vm init ${n}\` again (it removes what was left), or remove it with ` +
        `\`cal-vm destroy ${n} --yes\` (or \`cal-vm cleanup\`).`,
    };
  }
  if (w.vm.status === "destroying") {
    return {
      message: `Workspace "${n}" is half destroyed: its destroy was interrupted.`,
      hint: `Finish it with \`cal-vm destroy ${n} --yes\` (or \`cal-vm cleanup\`).`,
    };
  }
  if (w.vm.restoring) {
    const s = w.vm.restoring.snapshot;
    return {
      message: `Workspace "${n}"'s restore of snapshot "${s}" was interrupted.`,
      hint: `Finish it with \`cal-snap restore ${n} --name ${s}\` (the snapshot is intact).`,
    };
  }
  return undefined;
}

/** Builds the record for a workspace from its metadata and what the provider says. */
export function toRecord(
  w: Loaded,
  info: MachineInfo | undefined,
  ip?: string,
): WorkspaceRecord {
  let state: WorkspaceState;
  let problem: string | undefined;
  const left = unfinished(w);
  if (w.vm.status === "creating") {
    state = "broken";
    problem = "init did not finish; `cal-vm init " + w.vm.name + "` again or `cal-vm cleanup` " +
      "removes what it left";
  } else if (left) {
    state = w.vm.status === "destroying" || !info ? "broken" : info.state;
    problem = `${left.message} ${left.hint}`;
  } else if (!info) {
    state = "missing";
    problem = `its ${w.provider.name} machine "${w.machine}" is gone; ` +
      `\`cal-vm destroy ${w.vm.name}\` removes the rest`;
  } else {
    state = info.state;
  }
  return {
    kind: "workspace",
    workspace: w.vm.name,
    state,
    provider: w.vm.provider,
    isolation: w.provider.isolation,
    vm: w.machine,
    ...(ip ? { ip } : {}),
    cpu: info?.cpu ?? w.vm.resources.cpu,
    memory: info?.memory ?? w.vm.resources.memory,
    disk: info?.disk ?? w.vm.resources.disk_size,
    ...(info?.sizeGb !== undefined ? { size_gb: info.sizeGb } : {}),
    base_image: w.vm.base_image,
    ...(w.vm.agent ? { agent: w.vm.agent } : {}),
    environments: w.vm.environments ?? [],
    created_at: w.vm.created_at,
    ...(problem ? { problem } : {}),
  };
}

/**
 * Connects to a running workspace's guest: one provider call for the endpoint, then SSH over the
 * workspace's ControlMaster. Not running → exit 4 with what to do.
 */
export async function connect(w: Loaded): Promise<Guest> {
  const ep = await w.provider.endpoint(w.machine);
  if (!ep) {
    throw notRunning(w, await w.provider.get(w.machine));
  }
  const guest = new Guest(w.vm.name, ep, w.vm.user);
  await guest.prepare();
  return guest;
}

function notRunning(w: Loaded, info: MachineInfo | undefined): CalError {
  const left = unfinished(w);
  if (left) return wrongState(left.message, left.hint, w.vm.name);
  if (!info) {
    return notFound(
      `Workspace "${w.vm.name}" has no machine (${w.machine} is gone).`,
      `Remove it with \`cal-vm destroy ${w.vm.name}\` and create it again.`,
      w.vm.name,
    );
  }
  const what = info.state === "running" ? "running but has no IP address yet" : info.state;
  return wrongState(
    `Workspace "${w.vm.name}" is ${what}.`,
    info.state === "running"
      ? `Wait for it to boot, or check its log: \`cal-vm status ${w.vm.name}\`.`
      : `Start it with \`cal-vm start ${w.vm.name}\`.`,
    w.vm.name,
  );
}

/**
 * Runs `fn` with the workspace's guest. When SSH fails, asks the provider why: a stopped machine
 * (whose last IP can still be handed out, as Tart does) becomes a wrong-state error.
 */
export async function withGuest<T>(w: Loaded, fn: (g: Guest) => Promise<T>): Promise<T> {
  const guest = await connect(w);
  try {
    return await fn(guest);
  } catch (e) {
    if (e instanceof CalError && e.code === "ssh-failed") {
      const info = await w.provider.get(w.machine);
      if (info?.state !== "running") throw notRunning(w, info);
    }
    throw e;
  }
}
