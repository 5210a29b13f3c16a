/**
 * The fake tart's storage: $TART_HOME laid out as Tart lays it out (vms/<name>/{config.json,
 * disk.img,nvram.bin}, cache/OCIs/...), plus what the fake needs to play the machine: each VM's
 * guest state folder (`guest/`, so `tart clone` copies it), the runner's pid file (what
 * "running" means here), and DHCP-style leases keyed by MAC address.
 */

import { join } from "node:path";
import { allocatedBytes } from "../../lib/disk.ts";

export const tartHome = () =>
  Deno.env.get("TART_HOME") || join(Deno.env.get("HOME") ?? "/root", ".tart");
export const vmsDir = () => join(tartHome(), "vms");
export const vmDir = (name: string) => join(vmsDir(), name);
export const ociDir = () => join(tartHome(), "cache", "OCIs");
const leasesFile = () => join(tartHome(), ".fake-leases.json");
const pidFile = (name: string) => join(vmDir(name), ".fake-run.pid");
const accessedFile = (name: string) => join(vmDir(name), ".fake-accessed");

export interface VmConfig {
  version: number;
  os: "darwin" | "linux";
  arch: string;
  ecid?: string;
  hardwareModel?: string;
  cpuCountMin: number;
  cpuCount: number;
  memorySizeMin: number;
  memorySize: number;
  macAddress: string;
  display: { width: number; height: number; unit?: string };
  displayRefit?: boolean;
  diskFormat?: string;
}

export class TartError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

/** Tart's RuntimeError for a missing VM: path A, exit 2 (or path B, exit 1, from `run`). */
export const missing = (name: string) =>
  new TartError(`the specified VM "${name}" does not exist`, 2);

export function exists(name: string): boolean {
  try {
    for (const f of ["config.json", "disk.img", "nvram.bin"]) Deno.statSync(join(vmDir(name), f));
    return true;
  } catch {
    return false;
  }
}

/** Opens a local VM like Tart does: missing files are their own error. */
export function open(name: string): VmConfig {
  let dirExists = false;
  try {
    dirExists = Deno.statSync(vmDir(name)).isDirectory;
  } catch { /* absent */ }
  if (!exists(name)) {
    if (dirExists) {
      throw new TartError(
        "VM is missing some of its files (config.json, disk.img or nvram.bin)",
        1,
      );
    }
    throw missing(name);
  }
  touch(name);
  return JSON.parse(Deno.readTextFileSync(join(vmDir(name), "config.json")));
}

export function writeConfig(dir: string, c: VmConfig): void {
  Deno.writeTextFileSync(join(dir, "config.json"), prettyJson(c) + "\n");
}

export function touch(name: string): void {
  try {
    Deno.writeTextFileSync(accessedFile(name), new Date().toISOString().replace(/\.\d+Z$/, "Z"));
  } catch { /* not a VM folder */ }
}

export function accessed(name: string): string {
  try {
    return Deno.readTextFileSync(accessedFile(name)).trim();
  } catch {
    return new Date().toISOString().replace(/\.\d+Z$/, "Z");
  }
}

export function localNames(): string[] {
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync(vmsDir())) {
      if (e.isDirectory && exists(e.name)) names.push(e.name);
    }
  } catch { /* none */ }
  return names.sort();
}

function alive(pid: number): boolean {
  try {
    const cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    return cmd.includes("tart.ts") && cmd.includes("run");
  } catch {
    return false;
  }
}

/** The PID of the live `tart run` holding the VM, if any (dies with the process, even SIGKILL). */
export function runnerPid(name: string): number | undefined {
  try {
    const pid = Number(Deno.readTextFileSync(pidFile(name)).trim());
    return pid && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function claimRunner(name: string): void {
  Deno.writeTextFileSync(pidFile(name), String(Deno.pid));
}

export function releaseRunner(name: string): void {
  try {
    if (Number(Deno.readTextFileSync(pidFile(name))) === Deno.pid) Deno.removeSync(pidFile(name));
  } catch { /* gone */ }
}

export type State = "running" | "suspended" | "stopped";

export function state(name: string): State {
  if (runnerPid(name)) return "running";
  try {
    Deno.statSync(join(vmDir(name), "state.vzvmsave"));
    return "suspended";
  } catch {
    return "stopped";
  }
}

/** Holds Tart's global lock (a flock on a file in TART_HOME) while `fn` runs. */
export async function withGlobalLock<T>(fn: () => Promise<T> | T): Promise<T> {
  Deno.mkdirSync(tartHome(), { recursive: true });
  const f = await Deno.open(join(tartHome(), ".fake-global.lock"), { create: true, write: true });
  try {
    await f.lock(true);
    return await fn();
  } finally {
    f.close();
  }
}

interface Lease {
  ip: string;
  expires: number;
}

function leases(): Record<string, Lease> {
  try {
    return JSON.parse(Deno.readTextFileSync(leasesFile()));
  } catch {
    return {};
  }
}

/** The unexpired lease of a MAC address (Tart's DHCP resolver does not check the VM is running). */
export function leaseOf(mac: string): string | undefined {
  const l = leases()[mac];
  return l && l.expires > Date.now() ? l.ip : undefined;
}

/** A loopback address derived from the MAC, the next free one when another MAC holds it. */
export function addressFor(mac: string): string {
  const all = leases();
  const b = mac.split(":").map((x) => parseInt(x, 16));
  let [x, y, z] = [b[3] % 254 + 1, b[4], b[5] % 253 + 1];
  const taken = (ip: string) =>
    Object.entries(all).some(([m, l]) => m !== mac && l.ip === ip && l.expires > Date.now());
  while (taken(`127.${x}.${y}.${z}`)) z = z % 253 + 1;
  return `127.${x}.${y}.${z}`;
}

export async function grantLease(mac: string, ip: string): Promise<void> {
  await withGlobalLock(() => {
    const all = leases();
    all[mac] = { ip, expires: Date.now() + 86_400_000 };
    Deno.writeTextFileSync(leasesFile(), JSON.stringify(all));
  });
}

export function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0] & 0xfe) | 0x02; // locally administered, unicast
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** Foundation's JSONEncoder.prettyPrinted: 2 spaces, `" : "`, `\/`, key order not guaranteed. */
export function prettyJson(v: unknown, indent = ""): string {
  const next = indent + "  ";
  if (Array.isArray(v)) {
    if (!v.length) return "[\n\n" + indent + "]";
    return "[\n" + v.map((x) => next + prettyJson(x, next)).join(",\n") + "\n" + indent + "]";
  }
  if (v && typeof v === "object") {
    const keys = shuffle(Object.keys(v));
    if (!keys.length) return "{\n\n" + indent + "}";
    return "{\n" +
      keys.map((k) =>
        `${next}${JSON.stringify(k)} : ${prettyJson((v as Record<string, unknown>)[k], next)}`
      ).join(",\n") +
      "\n" + indent + "}";
  }
  return JSON.stringify(v).replaceAll("/", "\\/");
}

/** Key order varies between runs in real Tart; shuffle so clients cannot depend on it. */
function shuffle<T>(a: T[]): T[] {
  const out = [...a];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Bytes allocated on disk under a path (sparse files count what they use). */
export const allocated = allocatedBytes;

/** Apparent bytes of the three VM files (Tart's `Disk`). */
export function apparent(name: string): number {
  let total = 0;
  for (const f of ["config.json", "disk.img", "nvram.bin"]) {
    try {
      total += Deno.statSync(join(vmDir(name), f)).size;
    } catch { /* absent */ }
  }
  return total;
}
