/**
 * The workspace store: one folder per workspace under `~/.cal/isolation/vms/<name>/`, holding
 * `vm.yaml` (the spec's VM configuration) and the workspace's SSH key and logs.
 *
 * Every write is atomic (a temp file renamed over the target) and every mutating command holds
 * the workspace's lock, so two `cal` processes never interleave their changes.
 */

import { dirname, join } from "node:path";
import { z } from "zod";
import { CalError, notFound } from "./errors.ts";
import { calHome, paths } from "./paths.ts";
import { NAME_PATTERN, validateName } from "./names.ts";
import { parseYaml, toYaml } from "./yaml.ts";

/** Names that end up in paths and machine names: never a path of their own. */
const snapshotName = z.string().regex(NAME_PATTERN, "a snapshot name like `before-refactor`");
const machine = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a machine name like `cal-ws`");

const Snapshot = z.strictObject({
  name: snapshotName,
  created_at: z.string(),
  /** The provider's machine name for this snapshot. */
  vm: machine.optional(),
  auto: z.boolean().optional(),
  /** The workspace's state when the snapshot was taken. */
  source_state: z.string().optional(),
});

const Repo = z.strictObject({
  name: z.string().regex(/^(?!\.{1,2}$)[A-Za-z0-9._-]+$/, "a repository name like `app`"),
  url: z.string(),
  branch: z.string().optional(),
  cloned_at: z.string().optional(),
});

export const VmFile = z.strictObject({
  name: z.string(),
  base_image: z.string(),
  created_at: z.string(),
  provider: z.string().default("tart"),
  /** The provider's own name for the workspace's machine. */
  vm: machine.optional(),
  /** `creating` until init has finished: a killed init leaves this behind, to be cleaned up. */
  status: z.enum(["creating", "ready"]).default("ready"),
  template: z.string().optional(),
  resources: z.strictObject({
    cpu: z.number().int().positive(),
    memory: z.number().int().positive(),
    disk_size: z.number().int().positive(),
  }),
  /** The image's login user (the guest account cal connects as). */
  user: z.string().default("admin"),
  /** Host folder mounted into the guest as the output share. */
  output_dir: z.string().optional(),
  /** Provider-specific settings fixed at init (e.g. the sandbox's network mode). */
  options: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  github: z.strictObject({
    authenticated: z.boolean().optional(),
    host: z.string().optional(),
    repos: z.array(Repo).optional(),
  }).optional(),
  agent: z.string().optional(),
  /** Agents cal installed, with how (so `update` uses the same method). */
  agents: z.record(
    z.string(),
    z.strictObject({
      method: z.string(),
      version: z.string().optional(),
      installed_at: z.string(),
    }),
  ).optional(),
  /** The last agent run, for the run record at the end of a pull request's body. */
  last_run: z.strictObject({
    agent: z.string(),
    prompt: z.string().optional(),
    snapshot: z.string().optional(),
    at: z.string(),
  }).optional(),
  agent_config: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
  environments: z.array(z.string()).optional(),
  snapshots: z.array(Snapshot).optional(),
});
export type VmFile = z.infer<typeof VmFile>;
export type SnapshotEntry = z.infer<typeof Snapshot>;

/** Writes `text` to `file` atomically: a sibling temp file, then a rename over the target. */
export async function writeFileAtomic(file: string, text: string, mode = 0o644): Promise<void> {
  await Deno.mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, text, { mode });
    await Deno.rename(tmp, file);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Names of all workspaces that have a folder in the store, sorted. */
export async function listNames(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(paths.vmsDir())) {
      if (e.isDirectory && !e.name.startsWith(".")) names.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names.sort();
}

/** Reads a workspace's vm.yaml; unknown workspace → exit 3. */
export async function readVm(name: string): Promise<VmFile> {
  validateName(name);
  const file = paths.vmFile(name);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw notFound(
        `No workspace named "${name}".`,
        "Run `cal-vm list` to see your workspaces, or `cal-vm init " + name + "` to create it.",
        name,
      );
    }
    throw e;
  }
  return parseYaml(text, file, VmFile);
}

export async function writeVm(vm: VmFile): Promise<void> {
  await writeFileAtomic(paths.vmFile(vm.name), toYaml(vm));
}

export async function removeVmDir(name: string): Promise<void> {
  validateName(name);
  await Deno.remove(paths.vmDir(name), { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}

/**
 * Holds the workspace's lock while `fn` runs. Another cal process on the same workspace waits
 * (and says so); the lock dies with the process, so a killed cal never leaves it held.
 */
export async function withLock<T>(
  name: string,
  fn: () => Promise<T>,
  onWait: () => void = () => {},
): Promise<T> {
  validateName(name);
  const dir = join(calHome(), "isolation", "locks");
  await Deno.mkdir(dir, { recursive: true });
  const file = await Deno.open(join(dir, `${name}.lock`), {
    create: true,
    write: true,
    truncate: false,
  });
  try {
    const timer = setTimeout(onWait, 300);
    try {
      await file.lock(true);
    } finally {
      clearTimeout(timer);
    }
    return await fn();
  } finally {
    file.close(); // closing releases the lock
  }
}

/** Loads a workspace, runs `fn` under its lock, and saves what `fn` returns (if anything). */
export function updateVm(
  name: string,
  fn: (vm: VmFile) => Promise<VmFile | void> | VmFile | void,
): Promise<VmFile> {
  return withLock(name, async () => {
    const vm = await readVm(name);
    const next = (await fn(vm)) ?? vm;
    if (next.name !== name) throw new CalError("A workspace cannot be renamed in place.");
    await writeVm(next);
    return next;
  });
}
