/**
 * The rig's fake `tart`: Tart 2.32's CLI contract (research/tart-cli.md §7) on Linux, whose VMs
 * are real guests (lib/sandbox: sshd in a bubblewrap sandbox on a loopback address, port 22).
 * Errors take Tart's paths: RuntimeErrors print bare to stderr (exit 2 for missing / running /
 * not running, else 1); validation and parse errors print `Error: …` plus usage (exit 64);
 * `run`'s validate() errors print `Error: …` with exit 1. See README.md for the control knobs.
 */

import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type GuestSpec,
  listening,
  MAC_ADMIN,
  MAC_PREFIXES,
  prepareGuest,
  startGuest,
} from "../../lib/guest/sandbox.ts";
import {
  accessed,
  addressFor,
  allocated,
  apparent,
  claimRunner,
  exists,
  grantLease,
  leaseOf,
  localNames,
  missing,
  ociDir,
  open,
  prettyJson,
  randomMac,
  releaseRunner,
  runnerPid,
  state,
  TartError,
  tartHome,
  type VmConfig,
  vmDir,
  vmsDir,
  withGlobalLock,
  writeConfig,
} from "./tart_store.ts";
import { deniesByDefault, Relays, SoftnetExit, softnetRules } from "./softnet.ts";
import { FAKE_GATEWAY } from "../../lib/network/vmnet.ts";

const VERSION = Deno.env.get("FAKE_TART_VERSION") || "2.32.1";
const IMAGE = fileURLToPath(new URL("./image", import.meta.url));
const GiB = 1024 * 1024 * 1024;

class Usage extends Error {
  constructor(message: string, readonly cmd?: string) {
    super(message);
  }
}

const usageLines: Record<string, string> = {
  clone: "tart clone <source-name> <new-name> [--insecure] [--concurrency <concurrency>]",
  run:
    "tart run <name> [--no-graphics] [--vnc] [--vnc-experimental] [--dir <dir> ...] [--net-bridged <interface name> ...] [--net-softnet] [--net-softnet-allow <comma-separated CIDRs>] [--net-softnet-block <comma-separated CIDRs>] [--net-softnet-expose <comma-separated port specifications>] [--net-host]",
  stop: "tart stop <name> [--timeout <timeout>]",
  delete: "tart delete <name> ...",
  list: "tart list [--source <source>] [--format <format>] [--quiet]",
  get: "tart get <name> [--format <format>]",
  set:
    "tart set <name> [--cpu <cpu>] [--memory <memory>] [--disk-size <disk-size>] [--random-mac] [--random-serial]",
  ip: "tart ip <name> [--wait <wait>] [--resolver <resolver>]",
  rename: "tart rename <name> <new-name>",
  pull: "tart pull <remote-name> [--insecure] [--concurrency <concurrency>]",
  prune: "tart prune [--entries <entries>] [--older-than <n>] [--space-budget <n>]",
  create: "tart create <name> [--from-ipsw <path>] [--linux] [--disk-size <disk-size>]",
  suspend: "tart suspend <name>",
  exec: "tart exec [-i] [-t] <name> <command> ...",
  fqn: "tart fqn <name>",
  login: "tart login <host>",
  logout: "tart logout <host>",
};

interface Parsed {
  pos: string[];
  opts: Record<string, string[]>;
  flags: Set<string>;
}

/** ArgumentParser-like: options anywhere, `--x v` or `--x=v`, unknown options refused. */
function parse(
  cmd: string,
  args: string[],
  withValue: string[],
  flags: string[],
  short: Record<string, string> = {},
): Parsed {
  const p: Parsed = { pos: [], opts: {}, flags: new Set() };
  for (let i = 0; i < args.length; i++) {
    let a = args[i];
    if (a === "--") {
      p.pos.push(...args.slice(i + 1));
      break;
    }
    if (short[a]) a = short[a];
    if (a.startsWith("-") && a !== "-") {
      const [name, inline] = a.includes("=")
        ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
        : [a, undefined];
      if (name === "-h" || name === "--help") {
        console.log(`USAGE: ${usageLines[cmd] ?? "tart <subcommand>"}`);
        Deno.exit(0);
      }
      if (withValue.includes(name)) {
        const v = inline ?? args[++i];
        if (v === undefined) throw new Usage(`Missing value for '${name} <${name.slice(2)}>'`, cmd);
        (p.opts[name] ??= []).push(v);
      } else if (flags.includes(name)) p.flags.add(name);
      else throw new Usage(`Unknown option '${name}'`, cmd);
    } else p.pos.push(a);
  }
  return p;
}

function need(p: Parsed, cmd: string, names: string[]): string[] {
  if (p.pos.length < names.length) {
    throw new Usage(`Missing expected argument '<${names[p.pos.length]}>'`, cmd);
  }
  if (p.pos.length > names.length && cmd !== "delete") {
    throw new Usage(`Unexpected argument '${p.pos[names.length]}'`, cmd);
  }
  return p.pos;
}

function intOpt(p: Parsed, name: string, cmd: string): number | undefined {
  const v = p.opts[name]?.at(-1);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) {
    throw new Usage(`The value '${v}' is invalid for '${name} <${name.slice(2)}>'`, cmd);
  }
  return Number(v);
}

function formatOpt(p: Parsed, cmd: string): "text" | "json" {
  const v = p.opts["--format"]?.at(-1) ?? "text";
  if (v !== "text" && v !== "json") {
    throw new Usage(
      `The value '${v}' is invalid for '--format <format>'. Please provide one of 'text' and 'json'.`,
      cmd,
    );
  }
  return v;
}

function onPath(cmd: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((d) => {
    try {
      return Deno.statSync(join(d || ".", cmd)).isFile;
    } catch {
      return false;
    }
  });
}

const out = (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s));
const err = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s));

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join(" ")).join("\n").trim();
}

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const [n, unit] = s >= 86400
    ? [Math.floor(s / 86400), "day"]
    : s >= 3600
    ? [Math.floor(s / 3600), "hour"]
    : s >= 60
    ? [Math.floor(s / 60), "minute"]
    : [s, "second"];
  return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
}

// ---- OCI images ------------------------------------------------------------------------------

function remoteParts(name: string): { repo: string; tag: string } | undefined {
  if (!name.includes("/")) return undefined;
  const at = name.indexOf("@");
  if (at >= 0) return { repo: name.slice(0, at), tag: name.slice(at + 1) };
  const colon = name.lastIndexOf(":");
  return colon > name.lastIndexOf("/")
    ? { repo: name.slice(0, colon), tag: name.slice(colon + 1) }
    : { repo: name, tag: "latest" };
}

async function digestOf(name: string): Promise<string> {
  const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name));
  return "sha256:" +
    [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Pulls (builds) a fake image into the OCI cache; returns its digest folder. */
async function pull(name: string, quiet = false): Promise<string> {
  const r = remoteParts(name)!;
  const tagLink = join(ociDir(), r.repo, r.tag);
  try {
    return Deno.realPathSync(tagLink);
  } catch { /* not cached */ }
  if (!r.repo.startsWith("ghcr.io/cirruslabs/")) {
    // The fake registry has only ghcr.io/cirruslabs images. Tart's RegistryError is not a
    // RuntimeError, so ArgumentParser prints it (path B): `Error: ` + String(describing:), with
    // the registry's response body as `details`.
    if (!quiet) out(`pulling ${name}...\npulling manifest...\n`);
    const body = '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}';
    throw new TartError(
      `Error: UnexpectedHTTPStatusCode(when: "pulling manifest", code: 404, details: ${
        JSON.stringify(body)
      })`,
      1,
    );
  }
  const digest = await digestOf(name);
  const dir = join(ociDir(), r.repo, digest);
  if (!quiet) {
    out(
      `pulling ${name}...\npulling manifest...\npulling disk (22.3 GB compressed)...\n0%\n100%\npulling NVRAM...\n`,
    );
  }
  const tmp = workDir();
  const config: VmConfig = {
    version: 1,
    os: "darwin",
    arch: "arm64",
    ecid: btoa("fake-ecid"),
    hardwareModel: btoa("fake-hardware-model"),
    cpuCountMin: 4,
    cpuCount: 4,
    memorySizeMin: 4 * GiB,
    memorySize: 8 * GiB,
    macAddress: randomMac(),
    display: { width: 1024, height: 768 },
  };
  writeConfig(tmp, config);
  Deno.writeFileSync(join(tmp, "nvram.bin"), new Uint8Array(64));
  Deno.writeFileSync(join(tmp, "disk.img"), new Uint8Array());
  Deno.truncateSync(join(tmp, "disk.img"), 50 * 1e9);
  await buildGuest(join(tmp, "guest"));
  Deno.mkdirSync(dirname(dir), { recursive: true });
  rmf(join(tmp, OWNER));
  Deno.renameSync(tmp, dir);
  Deno.symlinkSync(digest, tagLink);
  return dir;
}

function guestSpec(
  stateDir: string,
  hostname: string,
  ip: string,
  shares: GuestSpec["shares"] = [],
  ownNetwork = false,
): GuestSpec {
  return {
    stateDir,
    user: { ...MAC_ADMIN, password: "admin" },
    hostname,
    listen: { host: ip, port: 22 },
    prefixes: MAC_PREFIXES,
    shares,
    ...(ownNetwork ? { network: "none" as const } : {}),
  };
}

/** Whether an SSH server answers at ip:22 (its banner, not just a relay's accept). */
async function sshAnswers(ip: string): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: ip, port: 22 });
    try {
      const buf = new Uint8Array(8);
      const timer = setTimeout(() => c.close(), 1000);
      const n = await c.read(buf).catch(() => null);
      clearTimeout(timer);
      return !!n && new TextDecoder().decode(buf.subarray(0, n)).startsWith("SSH-");
    } finally {
      try {
        c.close();
      } catch { /* closed */ }
    }
  } catch {
    return false;
  }
}

/** The base image's guest: the sandbox's state folder plus the image's files. */
async function buildGuest(stateDir: string) {
  await prepareGuest(guestSpec(stateDir, "Manageds-Virtual-Machine", "127.0.0.1"));
  const cp = (from: string, to: string) =>
    new Deno.Command("cp", { args: ["-a", from + "/.", to] }).outputSync();
  cp(join(IMAGE, "home"), join(stateDir, "home"));
  cp(join(IMAGE, "root"), join(stateDir, "root"));
  new Deno.Command("chown", {
    args: ["-R", "501:20", join(stateDir, "home"), join(stateDir, "root")],
  }).outputSync();
}

function copyTree(from: string, to: string) {
  const r = new Deno.Command("cp", {
    args: ["-a", "--reflink=auto", "--sparse=always", from, to],
    stderr: "piped",
  }).outputSync();
  if (!r.success) {
    throw new TartError(`Error: copy failed: ${new TextDecoder().decode(r.stderr).trim()}`, 1);
  }
}

// ---- commands -----------------------------------------------------------------------------

async function clone(args: string[]) {
  const p = parse("clone", args, ["--concurrency", "--prune-limit"], [
    "--insecure",
    "--deduplicate",
  ]);
  const [source, target] = need(p, "clone", ["source-name", "new-name"]);
  if (target.includes("/")) throw new Usage("<new-name> should be a local name", "clone");
  if (Deno.env.get("FAKE_TART_FAIL") === "clone") {
    throw new TartError("Error: injected failure (FAKE_TART_FAIL=clone)", 1);
  }
  let from: string;
  if (remoteParts(source)) from = await pull(source);
  else {
    open(source);
    from = vmDir(source);
  }
  const tmp = workDir();
  copyTree(`${from}/.`, tmp); // into the claimed folder
  Deno.writeTextFileSync(join(tmp, OWNER), String(Deno.pid));
  const delay = Number(Deno.env.get("FAKE_TART_CLONE_DELAY") ?? 0);
  if (delay) await new Promise((r) => setTimeout(r, delay * 1000));
  await withGlobalLock(() => {
    const c: VmConfig = JSON.parse(Deno.readTextFileSync(join(tmp, "config.json")));
    const macs = localNames().filter((n) => n !== target).map((n) =>
      JSON.parse(Deno.readTextFileSync(join(vmDir(n), "config.json"))).macAddress
    );
    if (macs.includes(c.macAddress)) c.macAddress = randomMac();
    writeConfig(tmp, c);
    for (const f of [".fake-run.pid", ".fake-accessed", OWNER]) rmf(join(tmp, f));
    Deno.mkdirSync(vmsDir(), { recursive: true });
    rmf(vmDir(target));
    Deno.renameSync(tmp, vmDir(target));
  });
  if (!remoteParts(source)) touch(source);
}

/**
 * A working folder in `$TART_HOME/tmp`, as Tart's create/clone/pull build a VM. Tart flocks it so
 * gc skips it; the fake records its pid in it instead (as "running" is a pid file, see README).
 */
const OWNER = ".fake-owner.pid";
function workDir(): string {
  const tmp = join(tartHome(), "tmp", crypto.randomUUID());
  Deno.mkdirSync(tmp, { recursive: true });
  Deno.writeTextFileSync(join(tmp, OWNER), String(Deno.pid));
  return tmp;
}

/** Tart's `Config().gc()`: deletes the working folders no live tart holds (a killed one's). */
function gc() {
  const root = join(tartHome(), "tmp");
  for (const e of Deno.readDirSync(root)) {
    const dir = join(root, e.name);
    let pid = 0;
    try {
      pid = Number(Deno.readTextFileSync(join(dir, OWNER)));
    } catch {
      // Not claimed yet (just made) or never: only an old one is garbage.
      const age = Date.now() - (Deno.lstatSync(dir).mtime?.getTime() ?? 0);
      if (age < 60_000) continue;
    }
    let live = false;
    try {
      live = !!pid && Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes("tart.ts");
    } catch { /* gone */ }
    if (!live) rmf(dir);
  }
}

/** rm -rf */
function rmf(path: string) {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch { /* absent */ }
}

function touch(name: string) {
  try {
    Deno.writeTextFileSync(
      join(vmDir(name), ".fake-accessed"),
      new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    );
  } catch { /* gone */ }
}

async function run(args: string[]) {
  const p = parse("run", args, [
    "--dir",
    "--disk",
    "--serial-path",
    "--rosetta",
    "--net-bridged",
    "--net-softnet-allow",
    "--net-softnet-block",
    "--net-softnet-expose",
    "--root-disk-opts",
  ], [
    "--no-graphics",
    "--graphics",
    "--serial",
    "--no-audio",
    "--no-clipboard",
    "--recovery",
    "--vnc",
    "--vnc-experimental",
    "--nested",
    "--net-softnet",
    "--net-host",
    "--suspendable",
    "--capture-system-keys",
    "--no-trackpad",
    "--no-pointer",
    "--no-keyboard",
  ]);
  const [name] = need(p, "run", ["name"]);
  if (p.flags.has("--graphics") && p.flags.has("--no-graphics")) {
    throw new Usage("--graphics and --no-graphics are mutually exclusive", "run");
  }
  if (p.flags.has("--vnc") && p.flags.has("--vnc-experimental")) {
    throw new Usage("--vnc and --vnc-experimental are mutually exclusive", "run");
  }
  const dirs = p.opts["--dir"] ?? [];
  if (dirs.length > 1 && dirs.some((d) => !/^[^/:]+:/.test(d))) {
    throw new Usage(
      "invalid --dir syntax: for multiple directory shares each one of them should be named",
      "run",
    );
  }
  // As Tart's validate(): the allow/block/expose options imply --net-softnet; one kind only.
  const softnetOn = p.flags.has("--net-softnet") || !!p.opts["--net-softnet-allow"] ||
    !!p.opts["--net-softnet-block"] || !!p.opts["--net-softnet-expose"];
  const netKinds = [!!p.opts["--net-bridged"], softnetOn, p.flags.has("--net-host")];
  if (netKinds.filter(Boolean).length > 1) {
    throw new Usage("--net-bridged, --net-softnet and --net-host are mutually exclusive", "run");
  }
  // validate() opens the VM: a missing one is path B (Error: prefix, exit 1).
  if (!exists(name)) throw new TartError(`Error: ${missing(name).message}`, 1);
  let config = open(name);
  if (softnetOn && !onPath("softnet")) {
    throw new TartError('Error: InitializationFailed(why: "softnet not found in PATH")', 1);
  }
  // Softnet parses the lists when it starts; a bad one ends it, and Tart with it.
  let softnet;
  try {
    softnet = softnetRules(p.opts, p.flags, FAKE_GATEWAY);
  } catch (e) {
    if (e instanceof SoftnetExit) throw new TartError(e.message, 1);
    throw e;
  }
  const enforced = deniesByDefault(softnet) && Deno.uid() === 0;
  Deno.writeTextFileSync(
    join(vmDir(name), ".fake-net.json"),
    JSON.stringify({
      softnet: softnet.on,
      allow: softnet.allow.map((x) => x.text),
      block: softnet.block.map((x) => x.text),
      enforced,
    }) + "\n",
  );
  const shares = dirs.map((d) => {
    const named = /^([^/:]+):(.*)$/.exec(d);
    const [label, rest] = named ? [named[1], named[2]] : [basename(d.split(":")[0]), d];
    const [path, ...optsList] = rest.split(":");
    return {
      host: path,
      guest: `/Volumes/My Shared Files/${label}`,
      readOnly: optsList.includes("ro"),
    };
  });

  await withGlobalLock(() => {
    if (runnerPid(name)) throw new TartError(`VM "${name}" is already running!`, 2);
    const others = localNames().filter((n) => n !== name && runnerPid(n));
    const sameMac = others.find((n) =>
      JSON.parse(Deno.readTextFileSync(join(vmDir(n), "config.json"))).macAddress ===
        config.macAddress
    );
    if (sameMac) {
      out(
        "There is already a running VM with the same MAC address!\nResetting VM to assign a new MAC address...\n",
      );
      config = { ...config, macAddress: randomMac() };
      writeConfig(vmDir(name), config);
    }
    const limit = Number(Deno.env.get("FAKE_TART_VM_LIMIT") ?? 2);
    const darwin = others.filter((n) =>
      JSON.parse(Deno.readTextFileSync(join(vmDir(n), "config.json"))).os !== "linux"
    );
    if (config.os !== "linux" && darwin.length >= limit) {
      throw new TartError(
        `The number of VMs exceeds the system limit${
          darwin.length ? ` (other running VMs: ${darwin.join(", ")})` : ""
        }`,
        1,
      );
    }
    claimRunner(name);
  });

  const ip = addressFor(config.macAddress);
  const spec = guestSpec(join(vmDir(name), "guest"), name, ip, shares, enforced);
  const relays = enforced ? new Relays(join(vmDir(name), ".fake-net"), softnet, ip) : undefined;
  let guest: Deno.ChildProcess | undefined;
  let stopping = false;
  const stop = async (message: string) => {
    if (stopping) return;
    stopping = true;
    out(message);
    await relays?.close();
    try {
      guest?.kill("SIGKILL");
    } catch { /* gone */ }
    await guest?.status;
    // The guest's processes die with bwrap, a moment later: wait until its address is free.
    for (let i = 0; i < 100 && await listening(ip, 22); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    releaseRunner(name);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => stop("Stopping VM...\n"));
  Deno.addSignalListener("SIGTERM", () => stop("Stopping VM...\n"));
  Deno.addSignalListener("SIGUSR2", () => stop("Requesting guest OS to stop...\n"));
  try {
    await prepareGuest(spec);
    guest = startGuest(spec, { stdout: "inherit", stderr: "inherit" });
    if (relays && !(await relays.start(guest.pid))) {
      throw new Error("the guest's network namespace did not appear");
    }
  } catch (e) {
    releaseRunner(name);
    throw new TartError(`${e instanceof Error ? e.message : e}`, 1);
  }
  if (p.flags.has("--vnc-experimental")) {
    out(`VNC server is running at vnc://:fake@127.0.0.1:5900\n`);
  } else if (p.flags.has("--vnc")) out(`VNC server is running at vnc://${ip}\n`);
  (async () => {
    for (let i = 0; i < 100 && !stopping; i++) {
      if (relays ? await sshAnswers(ip) : await listening(ip, 22)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const delay = Number(Deno.env.get("FAKE_TART_IP_DELAY") ?? 0);
    if (delay) await new Promise((r) => setTimeout(r, delay * 1000));
    if (!Deno.env.get("FAKE_TART_NO_IP") && !stopping) await grantLease(config.macAddress, ip);
  })();
  const status = await guest.status;
  if (!stopping) {
    stopping = true;
    await relays?.close();
    releaseRunner(name);
    if (status.code === 0 || status.signal) out("guest has stopped the virtual machine\n");
    else {
      err(`guest has stopped the virtual machine due to error: sshd exited with ${status.code}\n`);
    }
    Deno.exit(0);
  }
  await new Promise(() => {}); // stop() exits
}

async function stopCmd(args: string[]) {
  const p = parse("stop", args, ["--timeout"], [], { "-t": "--timeout" });
  const [name] = need(p, "stop", ["name"]);
  const timeout = intOpt(p, "--timeout", "stop") ?? 30;
  open(name);
  const s = state(name);
  if (s === "suspended") {
    Deno.removeSync(join(vmDir(name), "state.vzvmsave"));
    return;
  }
  const pid = runnerPid(name);
  if (!pid) throw new TartError(`VM "${name}" is not running`, 2);
  Deno.kill(pid, "SIGINT");
  const deadline = Date.now() + timeout * 1000;
  while (runnerPid(name) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (runnerPid(name)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch (e) {
      throw new TartError(`failed to forcefully terminate the VM "${name}": ${e}`, 1);
    }
    while (runnerPid(name)) await new Promise((r) => setTimeout(r, 50));
  }
}

function deleteCmd(args: string[]) {
  const p = parse("delete", args, [], []);
  if (!p.pos.length) throw new Usage("Missing expected argument '<name> ...'", "delete");
  for (const name of p.pos) {
    const r = remoteParts(name);
    if (r) {
      const link = join(ociDir(), r.repo, r.tag);
      try {
        Deno.lstatSync(link);
      } catch {
        throw missing(name);
      }
      Deno.removeSync(link, { recursive: true });
      continue;
    }
    if (!exists(name)) throw missing(name);
    if (runnerPid(name)) throw new TartError(`VM "${name}" is running`, 1);
    Deno.removeSync(vmDir(name), { recursive: true });
  }
}

function ociEntries(): { name: string; dir: string }[] {
  const found: { name: string; dir: string }[] = [];
  const walk = (dir: string, rel: string) => {
    let entries: Deno.DirEntry[] = [];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isSymlink) found.push({ name: `${rel}:${e.name}`, dir: Deno.realPathSync(p) });
      else if (e.name.startsWith("sha256:")) found.push({ name: `${rel}@${e.name}`, dir: p });
      else if (e.isDirectory) walk(p, rel ? `${rel}/${e.name}` : e.name);
    }
  };
  walk(ociDir(), "");
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

function list(args: string[]) {
  const p = parse("list", args, ["--source", "--format"], ["--quiet"], { "-q": "--quiet" });
  need(p, "list", []);
  const source = p.opts["--source"]?.at(-1);
  if (source && source !== "local" && source !== "oci") {
    throw new Usage(`'${source}' is not a valid <source>`, "list");
  }
  const format = formatOpt(p, "list");
  const rows: Record<string, unknown>[] = [];
  if (source !== "oci") {
    for (const n of localNames()) {
      const s = state(n);
      rows.push({
        Source: "local",
        Name: n,
        Disk: Math.floor(apparent(n) / 1e9),
        Size: Math.floor(allocated(vmDir(n)) / 1e9),
        Accessed: accessed(n),
        Running: s === "running",
        State: s,
      });
    }
  }
  if (source !== "local") {
    for (const e of ociEntries()) {
      rows.push({
        Source: "OCI",
        Name: e.name,
        Disk: 50,
        Size: Math.floor(allocated(e.dir) / 1e9),
        Accessed: accessed("-"),
        Running: false,
        State: "stopped",
      });
    }
  }
  if (p.flags.has("--quiet")) {
    if (rows.length) out(rows.map((r) => r.Name).join("\n") + "\n");
    return;
  }
  if (format === "json") return out(prettyJson(rows) + "\n");
  if (!rows.length) return out("\n");
  out(
    table([
      ["Source", "Name", "Disk", "Size", "Accessed", "State"],
      ...rows.map((
        r,
      ) => [
        String(r.Source),
        String(r.Name),
        String(r.Disk),
        String(r.Size),
        ago(String(r.Accessed)),
        String(r.State),
      ]),
    ]) + "\n",
  );
}

function get(args: string[]) {
  const p = parse("get", args, ["--format"], []);
  const [name] = need(p, "get", ["name"]);
  const format = formatOpt(p, "get");
  const c = open(name);
  const s = state(name);
  const o = {
    OS: c.os ?? "darwin",
    CPU: c.cpuCount,
    Memory: Math.floor(c.memorySize / 1024 / 1024),
    Disk: Math.floor(apparent(name) / 1e9),
    DiskFormat: c.diskFormat ?? "raw",
    Size: (allocated(vmDir(name)) / 1e9).toFixed(3),
    Display: `${c.display.width}x${c.display.height}${c.display.unit ?? ""}`,
    Running: s === "running",
    State: s,
  };
  if (format === "json") return out(prettyJson(o) + "\n");
  const keys = ["OS", "CPU", "Memory", "Disk", "DiskFormat", "Size", "Display", "State"] as const;
  out(table([[...keys], keys.map((k) => String(o[k]))]) + "\n");
}

function set(args: string[]) {
  const p = parse("set", args, ["--cpu", "--memory", "--disk-size", "--display", "--disk"], [
    "--random-mac",
    "--random-serial",
    "--display-refit",
    "--no-display-refit",
  ]);
  const [name] = need(p, "set", ["name"]);
  const c = open(name);
  const cpu = intOpt(p, "--cpu", "set");
  const memory = intOpt(p, "--memory", "set");
  const disk = intOpt(p, "--disk-size", "set");
  if (cpu !== undefined) {
    if (c.os !== "linux" && cpu < c.cpuCountMin) {
      throw new TartError(
        `Error: LessThanMinimalResourcesError: VM should have ${c.cpuCountMin} CPU cores at minimum (requested ${cpu})`,
        1,
      );
    }
    c.cpuCount = cpu;
  }
  if (memory !== undefined) {
    const bytes = memory * 1024 * 1024;
    if (c.os !== "linux" && bytes < c.memorySizeMin) {
      throw new TartError(
        `Error: LessThanMinimalResourcesError: VM should have ${c.memorySizeMin} bytes of memory at minimum (requested ${bytes})`,
        1,
      );
    }
    c.memorySize = bytes;
  }
  if (p.flags.has("--random-mac")) c.macAddress = randomMac();
  delete c.displayRefit;
  writeConfig(vmDir(name), c);
  if (disk !== undefined) {
    const file = join(vmDir(name), "disk.img");
    const current = Deno.statSync(file).size;
    const wanted = disk * 1e9;
    if (wanted < current) {
      throw new TartError(
        `new disk size of ${disk} GB should be larger than the current disk size of ${
          Math.round(current / 1e9)
        } GB`,
        1,
      );
    }
    if (wanted > current) Deno.truncateSync(file, wanted);
  }
}

async function ip(args: string[]) {
  const p = parse("ip", args, ["--wait", "--resolver"], []);
  const [name] = need(p, "ip", ["name"]);
  const wait = intOpt(p, "--wait", "ip") ?? 0;
  const resolver = p.opts["--resolver"]?.at(-1) ?? "dhcp";
  if (!["dhcp", "arp", "agent"].includes(resolver)) {
    throw new Usage(
      `The value '${resolver}' is invalid for '--resolver <resolver>'. Please provide one of 'dhcp', 'arp' and 'agent'.`,
      "ip",
    );
  }
  const c = open(name);
  const start = Date.now();
  while (true) {
    const found = leaseOf(c.macAddress);
    if (found) return out(found + "\n");
    await new Promise((r) => setTimeout(r, 1000));
    if (Date.now() >= start + wait * 1000) break;
  }
  const hint = state(name) === "running" ? "" : ", is your VM running?";
  const agent = resolver === "agent"
    ? " (also make sure that Guest agent for Tart is running inside of a VM)"
    : "";
  throw new TartError(`no IP address found${hint}${agent}`, 1);
}

function rename(args: string[]) {
  const p = parse("rename", args, [], []);
  const [from, to] = need(p, "rename", ["name", "new-name"]);
  if (to.includes("/")) throw new Usage("<new-name> should be a local name", "rename");
  if (!exists(from)) throw new Usage(`failed to rename a non-existent local VM: ${from}`);
  if (exists(to)) {
    throw new Usage(
      `failed to rename VM ${from}, target VM ${to} already exists, delete it first!`,
    );
  }
  Deno.renameSync(vmDir(from), vmDir(to));
}

async function pullCmd(args: string[]) {
  const p = parse("pull", args, ["--concurrency"], ["--insecure", "--deduplicate"]);
  const [name] = need(p, "pull", ["remote-name"]);
  if (exists(name)) return out(`"${name}" is a local image, nothing to pull here!\n`);
  if (!remoteParts(name)) {
    throw new TartError(`failed to parse remote name: mismatched input (character 0)`, 1);
  }
  const r = remoteParts(name)!;
  try {
    Deno.realPathSync(join(ociDir(), r.repo, r.tag));
    out(
      `pulling ${name}...\npulling manifest...\n${r.repo}@${await digestOf(
        name,
      )} image is already cached and linked!\n`,
    );
  } catch {
    await pull(name);
  }
}

function prune(args: string[]) {
  const p = parse(
    "prune",
    args,
    ["--entries", "--older-than", "--space-budget", "--cache-budget"],
    ["--gc"],
  );
  need(p, "prune", []);
  if (!p.opts["--older-than"] && !p.opts["--space-budget"] && !p.flags.has("--gc")) {
    throw new Usage("at least one pruning criteria must be specified", "prune");
  }
}

function suspend(args: string[]) {
  const p = parse("suspend", args, [], []);
  const [name] = need(p, "suspend", ["name"]);
  open(name);
  if (!runnerPid(name)) throw new TartError(`VM "VM "${name}" is not running" is not running`, 2);
  throw new TartError(
    "Failed to suspend the VM: the fake tart cannot suspend (run was not --suspendable)",
    1,
  );
}

function execCmd(args: string[]) {
  const rest = args.filter((a) => a !== "-i" && a !== "-t");
  const [name] = rest;
  if (!name) throw new Usage("Missing expected argument '<name>'", "exec");
  open(name);
  if (!runnerPid(name)) throw new TartError(`VM "${name}" is not running`, 2);
  throw new TartError(
    "Failed to connect to the VM using its control socket: the fake has no guest agent, is the Tart Guest Agent running?",
    1,
  );
}

async function fqn(args: string[]) {
  const p = parse("fqn", args, [], []);
  const [name] = need(p, "fqn", ["name"]);
  const r = remoteParts(name);
  out((r ? `${r.repo}@${await digestOf(name)}` : name) + "\n");
}

async function create(args: string[]) {
  const p = parse("create", args, ["--from-ipsw", "--disk-size", "--disk-format"], ["--linux"]);
  const [name] = need(p, "create", ["name"]);
  if (!p.flags.has("--linux") && !p.opts["--from-ipsw"]) {
    throw new Usage("Please specify either a --from-ipsw or --linux option!", "create");
  }
  if (p.opts["--from-ipsw"]) {
    throw new TartError("Error: the fake tart cannot install macOS from an IPSW", 1);
  }
  const tmp = workDir();
  writeConfig(tmp, {
    version: 1,
    os: "linux",
    arch: "arm64",
    cpuCountMin: 4,
    cpuCount: 4,
    memorySizeMin: 4 * GiB,
    memorySize: 4 * GiB,
    macAddress: randomMac(),
    display: { width: 1024, height: 768 },
  });
  Deno.writeFileSync(join(tmp, "nvram.bin"), new Uint8Array(64));
  Deno.writeFileSync(join(tmp, "disk.img"), new Uint8Array());
  Deno.truncateSync(join(tmp, "disk.img"), (intOpt(p, "--disk-size", "create") ?? 50) * 1e9);
  await buildGuest(join(tmp, "guest"));
  Deno.mkdirSync(vmsDir(), { recursive: true });
  rmf(vmDir(name));
  rmf(join(tmp, OWNER));
  Deno.renameSync(tmp, vmDir(name));
}

const commands: Record<string, (args: string[]) => unknown> = {
  clone,
  run,
  stop: stopCmd,
  delete: deleteCmd,
  list,
  get,
  set,
  ip,
  rename,
  pull: pullCmd,
  prune,
  suspend,
  exec: execCmd,
  fqn,
  create,
  login: () => {},
  logout: () => {},
};

async function main(argv: string[]): Promise<number> {
  const log = Deno.env.get("FAKE_TART_LOG");
  if (log) {
    Deno.writeTextFileSync(
      log,
      JSON.stringify({ argv, pid: Deno.pid, time: new Date().toISOString() }) + "\n",
      { append: true },
    );
  }
  Deno.mkdirSync(join(tartHome(), "cache"), { recursive: true });
  Deno.mkdirSync(join(tartHome(), "tmp"), { recursive: true });
  const [cmd, ...args] = argv;
  // As Tart: every command but pull and clone first collects the garbage in tmp/.
  if (cmd && commands[cmd] && cmd !== "pull" && cmd !== "clone") gc();
  if (cmd === "--version") {
    out(VERSION + "\n");
    return 0;
  }
  if (!cmd || cmd === "--help" || cmd === "-h") {
    out(
      `OVERVIEW: The fake tart of cal's test rig.\n\nUSAGE: tart <subcommand>\n\nSUBCOMMANDS:\n  ${
        Object.keys(commands).join("\n  ")
      }\n`,
    );
    return cmd ? 0 : 64;
  }
  const fn = commands[cmd];
  try {
    if (!fn) throw new Usage(`Unknown option '${cmd}'`);
    await fn(args);
    return 0;
  } catch (e) {
    if (e instanceof Usage) {
      const u = e.cmd ? usageLines[e.cmd] : undefined;
      err(
        `Error: ${e.message}\nUsage: ${u ?? "tart <subcommand>"}\n  See '${
          e.cmd ? `tart ${e.cmd}` : "tart"
        } --help' for more information.\n`,
      );
      return 64;
    }
    if (e instanceof TartError) {
      err(e.message + "\n");
      return e.code;
    }
    err(`Error: ${e instanceof Error ? e.message : e}\n`);
    return 1;
  }
}

Deno.exit(await main(Deno.args));
