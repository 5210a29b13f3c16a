/**
 * The workspace store: one folder per workspace under `~/.cal/isolation/vms/<name>/`, holding
 * `vm.yaml` (the spec's VM configuration) and the workspace's SSH key and logs.
 *
 * Every write is atomic (a temp file renamed over the target) and every mutating command holds
 * the workspace's lock, so two `cal` processes never interleave their changes.
 */

import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { z } from "zod";
import { loadConfig } from "./config.ts";
import { CalError, ExitCode, notFound } from "./errors.ts";
import { calHome, expandHome, paths } from "./paths.ts";
import {
  branchProblem,
  machineName,
  NAME_PATTERN,
  nameProblem,
  repoUrlProblem,
  snapshotMachine,
  userProblem,
  validateName,
  wordProblem,
} from "./names.ts";
import { InvalidFile, parseYaml, toYaml } from "./yaml.ts";

/** Names that end up in paths and machine names: never a path of their own. */
const snapshotName = z.string().regex(NAME_PATTERN, "a snapshot name like `before-refactor`");
const machine = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a machine name like `cal-ws`");
/** A field checked by one of `names.ts`'s rules (the ones the command line applies). */
const ruled = (problem: (s: string) => string | undefined) =>
  z.string().superRefine((v, ctx) => {
    const p = problem(v);
    if (p) ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)}: ${p}` });
  });
// deno-lint-ignore no-control-regex
const text = z.string().regex(/^[^\x00-\x1f\x7f-\x9f]*$/, "text without control characters");
/** Agent, environment and template names (plugin file names). */
const pluginName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "a name like `claude-code`");

const Snapshot = z.strictObject({
  name: snapshotName,
  created_at: text,
  /** The provider's machine name for this snapshot (always `cal-<workspace>--<name>`). */
  vm: machine.optional(),
  auto: z.boolean().optional(),
  /** The workspace's state when the snapshot was taken. */
  source_state: z.enum(["running", "stopped", "suspended"]).optional(),
  /**
   * `creating` from before the copy until it is recorded: a kill at any point leaves an entry
   * `list` shows, and `delete`/`cleanup` (or the same `create` again) finish.
   */
  status: z.enum(["creating"]).optional(),
});

const Repo = z.strictObject({
  name: z.string().regex(
    /^(?!-)(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$/,
    "a repository name like `app`",
  ),
  url: ruled(repoUrlProblem),
  branch: ruled(branchProblem).optional(),
  cloned_at: text.optional(),
});

const VmFields = z.strictObject({
  name: ruled(nameProblem),
  base_image: ruled(wordProblem),
  created_at: text,
  provider: z.enum(["tart", "sandbox"]).default("tart"),
  /** The provider's own name for the workspace's machine (always `cal-<name>`). */
  vm: machine.optional(),
  /**
   * `creating` until init has finished, `destroying` once destroy has begun: a killed init or
   * destroy leaves this behind, and list, cleanup and the next command know what to finish.
   */
  status: z.enum(["creating", "ready", "destroying"]).default("ready"),
  /** Set while a restore is under way: a kill leaves the workspace saying how to finish it. */
  restoring: z.strictObject({
    snapshot: snapshotName,
    at: text,
    /** The workspace was running: the restore that finishes starts it again. */
    resume: z.boolean().optional(),
  }).optional(),
  template: pluginName.optional(),
  resources: z.strictObject({
    cpu: z.number().int().positive(),
    memory: z.number().int().positive(),
    disk_size: z.number().int().positive(),
  }),
  /** The image's login user (the guest account cal connects as). */
  user: ruled(userProblem).default("admin"),
  /** Host folder mounted into the guest as the output share: under `output.sync_dir`. */
  output_dir: z.string().optional(),
  /** Provider-specific settings fixed at init (e.g. the sandbox's network mode). */
  options: z.record(
    z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, "an option name like `network`"),
    z.union([text, z.number(), z.boolean()]),
  ).superRefine((o, ctx) => {
    if (o.network !== undefined && o.network !== "host" && o.network !== "none") {
      ctx.addIssue({ code: "custom", message: "network is host or none", path: ["network"] });
    }
  }).optional(),
  github: z.strictObject({
    authenticated: z.boolean().optional(),
    host: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]*(?::\d+)?$/, "a host name like github.com")
      .optional(),
    repos: z.array(Repo).optional(),
  }).optional(),
  agent: pluginName.optional(),
  /** Agents cal installed, with how (so `update` uses the same method). */
  agents: z.record(
    pluginName,
    z.strictObject({
      method: ruled(wordProblem),
      version: text.optional(),
      installed_at: text,
    }),
  ).optional(),
  /** The last agent run, for the run record at the end of a pull request's body. */
  last_run: z.strictObject({
    agent: pluginName,
    prompt: z.string().optional(),
    snapshot: snapshotName.optional(),
    at: text,
  }).optional(),
  agent_config: z.record(pluginName, z.record(z.string(), z.unknown())).optional(),
  environments: z.array(pluginName).optional(),
  snapshots: z.array(Snapshot).optional(),
});

/**
 * vm.yaml's schema. Its machine names are derived from its name, never taken from the file: a
 * hand-edited `vm:` naming another machine would make destroy delete that machine. With
 * `place`, also its name against its folder and its output_dir against the sync folder `root`.
 */
function vmSchema(place?: { folder: string; root: string }) {
  return VmFields.superRefine((vm, ctx) => {
    if (place && vm.name !== place.folder) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(vm.name)} is not the name of its folder ("${place.folder}")`,
        path: ["name"],
      });
      return;
    }
    if (nameProblem(vm.name)) return;
    if (vm.vm !== undefined && vm.vm !== machineName(vm.name)) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(vm.vm)} is not this workspace's machine (${
          machineName(vm.name)
        })`,
        path: ["vm"],
      });
    }
    (vm.snapshots ?? []).forEach((s, i) => {
      const want = snapshotMachine(vm.name, s.name);
      if (s.vm !== undefined && s.vm !== want) {
        ctx.addIssue({
          code: "custom",
          message: `${JSON.stringify(s.vm)} is not this snapshot's machine (${want})`,
          path: ["snapshots", i, "vm"],
        });
      }
    });
    const problem = place && vm.output_dir !== undefined
      ? outputDirProblem(vm.output_dir, place.root)
      : undefined;
    if (problem) ctx.addIssue({ code: "custom", message: problem, path: ["output_dir"] });
  });
}

export const VmFile = vmSchema();
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

/** The configured output folder (`output.sync_dir`), absolute: every output_dir is under it. */
export function syncRoot(syncDir: string): string {
  return resolve(expandHome(syncDir));
}

/**
 * Why `dir` may not be a workspace's output folder, or undefined: it must be a plain absolute
 * path strictly under the sync folder, and no part of it below that folder a link or a file
 * (cal creates it, gives it to the guest and shares it read-write).
 */
export function outputDirProblem(dir: string, root: string): string | undefined {
  // deno-lint-ignore no-control-regex
  if (!isAbsolute(dir) || /[\x00-\x1f\x7f]/.test(dir) || resolve(dir) !== dir) {
    return `${
      JSON.stringify(dir)
    } is not a plain absolute path (no "..", ".", "//" or trailing "/")`;
  }
  const rel = relative(root, dir);
  if (!rel || rel.startsWith("..") || isAbsolute(rel)) {
    return `${dir} is not a folder under the sync folder ${root} (output.sync_dir)`;
  }
  let path = root;
  for (const part of rel.split("/")) {
    path = join(path, part);
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(path);
    } catch {
      return undefined; // not made yet: start creates it
    }
    if (info.isSymlink) return `${path} is a link; cal shares only real folders`;
    if (!info.isDirectory) return `${path} is not a folder`;
  }
  return undefined;
}

/** An output_dir refused at load, with the two ways out. */
class OutputDirRefused extends InvalidFile {
  constructor(e: InvalidFile, private readonly fix: string) {
    super(e.file, e.line, e.col, e.message.slice(`${e.file}:${e.line}:${e.col}: `.length));
  }
  override get hint(): string {
    return this.fix;
  }
}

function parseVm(text: string, file: string, folder: string, root: string): VmFile {
  try {
    return parseYaml(text, file, vmSchema({ folder, root }));
  } catch (e) {
    if (e instanceof InvalidFile && e.message.includes(": output_dir: ")) {
      throw new OutputDirRefused(
        e,
        `Delete the output_dir line (cal then uses ${join(root, folder)}), or point it at a ` +
          `real folder under ${root}; nothing was run.`,
      );
    }
    throw e;
  }
}

/**
 * Reads a workspace's vm.yaml, checking every field by the rules the command line applies
 * (and its name against its folder, its output folder against `output.sync_dir`); an unknown
 * workspace is exit 3, a bad field exit 2 at file:line:column.
 */
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
  const root = syncRoot((await loadConfig()).output.sync_dir);
  return parseVm(text, file, name, root);
}

/** Writes vm.yaml, refusing what `readVm` would refuse (so no value cal took can break a load). */
export async function writeVm(vm: VmFile): Promise<void> {
  const text = toYaml(vm);
  const file = paths.vmFile(vm.name);
  const root = syncRoot((await loadConfig()).output.sync_dir);
  try {
    parseVm(text, file, vm.name, root);
  } catch (e) {
    const said = e instanceof Error ? e.message.replace(/^.*?:\d+:\d+: /, "") : String(e);
    throw new CalError(`cal refused to record a value in "${vm.name}"'s vm.yaml: ${said}.`, {
      code: "invalid-config",
      exit: ExitCode.failed,
      hint: "Nothing was written; the value came from a command or the guest and breaks " +
        "vm.yaml's rules. Report it if cal should accept it.",
      workspace: vm.name,
    });
  }
  await writeFileAtomic(file, text);
}

/**
 * Test-only (kill drills, tests/kill_drills.test.ts): with `CAL_TEST_KILL_AT=<point>`, cal
 * SIGKILLs its own process group (itself alone when it leads none) on reaching `point`, as a
 * `kill -9` or a power loss would. A no-op otherwise.
 */
export function killPoint(point: string): void {
  if (Deno.env.get("CAL_TEST_KILL_AT") !== point) return;
  try {
    Deno.kill(-Deno.pid, "SIGKILL");
  } catch { /* not a group leader */ }
  Deno.kill(Deno.pid, "SIGKILL");
}

/** Where a workspace's folder goes while it is removed: hidden from `listNames`. */
const REMOVING = ".removing-";

/**
 * Removes a workspace's folder: renamed aside first (one atomic step), so a kill during the
 * removal leaves no half folder under the workspace's name, only a hidden one that
 * `removalLeftovers` finds for cleanup.
 */
export async function removeVmDir(name: string): Promise<void> {
  validateName(name);
  const aside = join(paths.vmsDir(), `${REMOVING}${name}-${crypto.randomUUID().slice(0, 8)}`);
  try {
    await Deno.rename(paths.vmDir(name), aside);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  killPoint("remove-folder:aside");
  await removeTree(aside);
}

async function removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}

/** Folders a killed removal left under vms/ (see `removeVmDir`). */
export async function removalLeftovers(): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(paths.vmsDir())) {
      if (e.isDirectory && e.name.startsWith(REMOVING)) out.push(join(paths.vmsDir(), e.name));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** Removes one of `removalLeftovers()`; anything else is refused. */
export async function removeRemovalLeftover(path: string): Promise<void> {
  if (dirname(path) !== paths.vmsDir() || !basename(path).startsWith(REMOVING)) {
    throw new CalError(`${path} is not a folder cal left while removing a workspace.`);
  }
  await removeTree(path);
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
