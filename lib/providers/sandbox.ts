/**
 * The sandbox provider: on Linux hosts, a workspace is a bubblewrap sandbox (its own mount, PID,
 * IPC and UTS namespaces, and with `--network none` its own empty network namespace) running
 * sshd, so the guest layer talks OpenSSH to it exactly as to a Tart VM. It is not a VM: the
 * kernel is shared, and every command says so.
 *
 * A machine is a folder, `~/.cal/isolation/sandboxes/<machine>/`: `machine.json` (settings) and
 * `guest/` (its writable state: home and tool prefixes). Clones and snapshots are copies of that
 * folder (`cp --reflink=auto`: instant on btrfs/xfs). The guest sees itself as admin (uid 501)
 * in a user namespace of its own: as root, each machine runs as a host uid of its own (kept in
 * `machine.json`, so no two guests own each other's files or processes); rootless, the caller is
 * mapped to admin. sshd listens on a high port of the machine's own loopback address (or inside
 * its own network namespace with `--network none`) and takes no password: only cal's key, kept
 * in the machine's folder outside the guest's reach (`ssh/authorized_keys`). Where the host
 * allows no user namespace, cal says exactly what is missing; it never runs a workspace
 * unisolated.
 */

import { dirname, join } from "node:path";
import { CalError, notFound, wrongState } from "../errors.ts";
import { allocatedBytes } from "../disk.ts";
import { calHome } from "../paths.ts";
import { alive, run, startDetached, which } from "../process.ts";
import { writeFileAtomic } from "../store.ts";
import type {
  Endpoint,
  MachineInfo,
  MachineSettings,
  Provider,
  StartOptions,
  StartResult,
} from "../provider.ts";
import {
  behindRelay,
  guestCommand,
  type GuestSpec,
  layout,
  listening,
  MAC_ADMIN,
  MAC_PREFIXES,
  ownTree,
  prepareGuest,
} from "../guest/sandbox.ts";

export const SANDBOX_ISOLATION = "Linux namespaces (bubblewrap), not a VM: the kernel is shared";

/** The guest's network: the host's ("host"), none, or out only through cal's proxy. */
type SandboxNetwork = "host" | "none" | "proxy";

/**
 * The network a start gives the guest: the workspace's egress mode when cal passes one
 * (allowlist: through the proxy; open: the host's network; none), else init's old
 * `--network host|none` option, else what the machine last had.
 */
function sandboxNetwork(opts: StartOptions, f: MachineFile): SandboxNetwork {
  const mode = opts.network?.mode;
  if (mode === "allowlist") {
    if (!opts.network?.proxySocket) {
      throw new CalError("The allowlist network needs cal's egress proxy, and none was given.");
    }
    return "proxy";
  }
  if (mode === "open") return "host";
  if (mode === "none") return "none";
  const old = opts.options?.network;
  return old === "none" || old === "host" ? old : f.network ?? "host";
}

interface MachineFile {
  cpu: number;
  memory: number;
  disk: number;
  /** The network the machine last started with (init's choice until its first start). */
  network: SandboxNetwork;
  created_at: string;
  /** As root: the host uid (and gid) the guest runs as, its own (see `allocateId`). */
  uid?: number;
}

/**
 * Host uids for guests: above systemd's container range (524288–1879048191) and below 2^31,
 * clear of its "foreign" range (0x7FFE0000), so they are no person's and no container's.
 */
const UID_BASE = 0x70000000;
const UID_SLOTS = 0x100000;

const PROFILE =
  'export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$HOME/go/bin:/opt/homebrew/bin:/usr/local/bin:$PATH"\n';

const SKELETON = {
  ".profile": PROFILE,
  // Login shells: zsh (the guest's shell where the host has it) reads .zprofile, bash .profile.
  ".zprofile": PROFILE,
  ".zshrc": "# cal sandbox guest\n",
  ".bashrc": "# cal sandbox guest\n",
  ".npmrc": "prefix=${HOME}/.local\n",
  // The host's Python is "externally managed" (PEP 668); the guest's home is the workspace's own.
  ".config/pip/pip.conf": "[global]\nuser = true\nbreak-system-packages = true\n",
};

export class SandboxProvider implements Provider {
  readonly name = "sandbox";
  readonly isolation = SANDBOX_ISOLATION;
  readonly screen = false;

  root = () => join(calHome(), "isolation", "sandboxes");
  dir = (m: string) => join(this.root(), m);
  private pidFile = (m: string) => join(this.dir(m), "run.pid");

  async ensureAvailable(): Promise<void> {
    if (Deno.build.os !== "linux") {
      throw new CalError("The sandbox provider needs Linux (bubblewrap).", {
        code: "tool-missing",
        hint: "On macOS use the tart provider: --provider tart.",
      });
    }
    if (!which("bwrap")) {
      throw new CalError("bubblewrap (`bwrap`) is not installed.", {
        code: "tool-missing",
        hint:
          "Install it: `sudo apt-get install bubblewrap` (Debian/Ubuntu) or `sudo dnf install bubblewrap`.",
      });
    }
    if (!which("/usr/sbin/sshd")) {
      throw new CalError(
        "OpenSSH's server (/usr/sbin/sshd) is not installed; the sandbox runs it as the guest.",
        {
          code: "tool-missing",
          hint:
            "Install it: `sudo apt-get install openssh-server` (cal runs it only inside sandboxes).",
        },
      );
    }
    if (!which("/usr/bin/socat")) {
      throw new CalError(
        "socat (/usr/bin/socat) is not installed; a sandbox reaches cal's egress proxy through it.",
        {
          code: "tool-missing",
          hint: "Install it: `sudo apt-get install socat`.",
        },
      );
    }
    if (Deno.uid() === 0) {
      for (const tool of ["setpriv", "unshare", "mount", "find"]) {
        if (!which(tool)) {
          throw new CalError(
            `util-linux's \`${tool}\` is missing; as root each sandbox runs as its own uid with it.`,
            {
              code: "tool-missing",
              hint: "Install it: `sudo apt-get install util-linux` (or your system's equivalent).",
            },
          );
        }
      }
    }
    // Every guest has a user namespace of its own (as root too, under a uid of its own).
    const probe = await run(
      Deno.uid() === 0 ? "setpriv" : "bwrap",
      [
        ...(Deno.uid() === 0
          ? ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "bwrap"]
          : []),
        "--unshare-user",
        "--ro-bind",
        "/",
        "/",
        "true",
      ],
    );
    if (probe.code !== 0) {
      const sysctl = await Deno.readTextFile("/proc/sys/kernel/unprivileged_userns_clone").catch(
        () => "",
      );
      const apparmor = await Deno.readTextFile(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
      )
        .catch(() => "");
      const why = sysctl.trim() === "0"
        ? "the kernel forbids unprivileged user namespaces (kernel.unprivileged_userns_clone = 0)"
        : apparmor.trim() === "1"
        ? "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)"
        : `bwrap cannot create a user namespace: ${probe.stderr.trim()}`;
      throw new CalError(`Cannot isolate a workspace: ${why}.`, {
        code: "tool-missing",
        hint:
          "Allow unprivileged user namespaces (e.g. `sudo sysctl kernel.unprivileged_userns_clone=1`, " +
          "or an AppArmor profile for bwrap): every sandbox runs as an unprivileged uid of its own, " +
          "as root too. cal never runs a workspace unisolated.",
      });
    }
  }

  private readMachine(m: string): MachineFile | undefined {
    try {
      return JSON.parse(Deno.readTextFileSync(join(this.dir(m), "machine.json")));
    } catch {
      return undefined;
    }
  }

  private async writeMachine(m: string, f: MachineFile): Promise<void> {
    await Deno.writeTextFile(join(this.dir(m), "machine.json"), JSON.stringify(f, null, 2) + "\n");
  }

  spec(
    m: string,
    opts: {
      outputDir?: string;
      network?: SandboxNetwork;
      proxySocketDir?: string;
      noProxy?: string[];
    } = {},
  ): GuestSpec {
    const f = this.readMachine(m);
    const network = opts.network ?? f?.network ?? "host";
    return {
      stateDir: join(this.dir(m), "guest"),
      // No password: cal's key is the only login (a neighbour on the same network has none).
      user: MAC_ADMIN,
      hostname: m,
      // The guest's sshd is no root on the host: a port above 1024.
      // Its own address in a namespace of its own too: ssh's connection sharing (%C) and
      // known hosts tell workspaces apart by address.
      listen: { host: addressOf(m), port: portOf(m) },
      prefixes: MAC_PREFIXES,
      network,
      ...(opts.proxySocketDir ? { proxySocketDir: opts.proxySocketDir } : {}),
      ...(opts.noProxy ? { noProxy: opts.noProxy } : {}),
      shares: opts.outputDir
        ? [{ host: opts.outputDir, guest: "/Volumes/My Shared Files/output" }]
        : [],
      keysDir: this.keysDir(m),
      ...(Deno.uid() === 0 && f?.uid ? { hostId: { uid: f.uid, gid: f.uid } } : {}),
    };
  }

  private keysDir = (m: string) => join(this.dir(m), "ssh");

  /**
   * A host uid no other machine here has, none of the host's accounts and no running process's,
   * starting from one derived from the cal home and the name (as the address is).
   */
  private async allocateId(m: string): Promise<number> {
    const taken = new Set<number>();
    try {
      for (const e of Deno.readDirSync(this.root())) {
        const uid = e.isDirectory ? this.readMachine(e.name)?.uid : undefined;
        if (uid) taken.add(uid);
      }
    } catch { /* no machines */ }
    for (const db of ["/etc/passwd", "/etc/group"]) { // its gid is the same number
      const text = await Deno.readTextFile(db).catch(() => "");
      for (const line of text.split("\n")) taken.add(Number(line.split(":")[2]));
    }
    const running = new Set<number>();
    for (const e of Deno.readDirSync("/proc")) {
      if (!Number(e.name)) continue;
      const status = await Deno.readTextFile(`/proc/${e.name}/status`).catch(() => "");
      const uid = Number(status.match(/^Uid:\s+(\d+)/m)?.[1]);
      if (uid) running.add(uid);
    }
    const [a, b, c] = hash(m);
    const start = ((a << 16) | (b << 8) | c) % UID_SLOTS;
    for (let i = 0; i < UID_SLOTS; i++) {
      const uid = UID_BASE + (start + i) % UID_SLOTS;
      if (!taken.has(uid) && !running.has(uid)) return uid;
    }
    throw new CalError("No free host uid for a sandbox guest.", {
      hint: "Delete machines you no longer need (`cal-vm destroy`).",
    });
  }

  /**
   * Gives the machine in `dir` (not running) to the host uid `uid`: its home, prefixes and cal's
   * keys, without following any link the guest left in them (its SSH host key: prepareGuest).
   */
  private async own(dir: string, uid: number): Promise<void> {
    for (const p of [join(dir, "guest", "home"), join(dir, "guest", "root"), join(dir, "ssh")]) {
      if (await Deno.lstat(p).then((i) => i.isDirectory, () => false)) await ownTree(p, uid, uid);
    }
  }

  async clone(source: string, target: string): Promise<void> {
    await Deno.mkdir(this.root(), { recursive: true });
    if (this.readMachine(target)) {
      throw wrongState(`Sandbox machine ${target} already exists.`, "Delete it first.");
    }
    // The creator's pid in the name: a copy whose creator is gone is a leftover (`leftovers`).
    const tmp = join(this.root(), `.tmp-${Deno.pid}-${crypto.randomUUID()}`);
    const uid = Deno.uid() === 0 ? await this.allocateId(target) : undefined;
    try {
      const from = this.readMachine(source);
      if (from) {
        // cp -a copies links as links; the copy is private until renamed, so giving it to its
        // own uid races with no guest.
        const r = await run("cp", ["-a", "--reflink=auto", this.dir(source), tmp]);
        if (r.code !== 0) throw new CalError(`Copying ${source} failed: ${r.stderr.trim()}`);
        await Deno.remove(join(tmp, "run.pid")).catch(() => {});
        if (uid) await this.own(tmp, uid);
        await Deno.writeTextFile(
          join(tmp, "machine.json"),
          JSON.stringify({ ...from, ...(uid ? { uid } : {}) }, null, 2) + "\n",
        );
      } else {
        // Any other source is the host system image: read-only /usr, a fresh home and prefixes.
        // The home is new and no guest has run in it: plain writes are safe here.
        await Deno.mkdir(tmp, { recursive: true });
        const spec: GuestSpec = {
          ...this.spec(target),
          stateDir: join(tmp, "guest"),
          keysDir: join(tmp, "ssh"),
          ...(uid ? { hostId: { uid, gid: uid } } : {}),
        };
        await prepareGuest(spec);
        for (const [f, text] of Object.entries(SKELETON)) {
          await Deno.mkdir(dirname(join(layout.home(spec), f)), { recursive: true });
          await Deno.writeTextFile(join(layout.home(spec), f), text);
        }
        if (uid) await this.own(tmp, uid);
        await Deno.writeTextFile(
          join(tmp, "machine.json"),
          JSON.stringify({
            cpu: 0,
            memory: 0,
            disk: 0,
            network: "host",
            created_at: new Date().toISOString(),
            ...(uid ? { uid } : {}),
          }),
        );
      }
      await Deno.rename(tmp, this.dir(target));
    } catch (e) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw e;
    }
  }

  async configure(m: string, s: MachineSettings & { network?: "host" | "none" }): Promise<void> {
    const f = this.readMachine(m);
    if (!f) throw notFound(`Sandbox machine ${m} does not exist.`);
    await this.writeMachine(m, {
      ...f,
      cpu: s.cpu,
      memory: s.memory,
      disk: s.diskSize,
      ...(s.network ? { network: s.network } : {}),
    });
  }

  /**
   * The process running the machine (the shell leading its process group), from the pid file,
   * or, when that is missing or stale (deleted, or the folder deleted by hand while running),
   * found in /proc by its command line, so the machine is still reported, stopped and never
   * deleted under a running guest.
   */
  private runner(m: string): number | undefined {
    const guest = join(this.dir(m), "guest");
    const runs = (pid: number) => {
      try {
        const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
        return argv[3] === "cal-sandbox" && argv.some((a) => a.startsWith(guest + "/"));
      } catch {
        return false;
      }
    };
    try {
      const pid = Number(Deno.readTextFileSync(this.pidFile(m)).trim());
      if (pid && alive(pid) && runs(pid)) return pid;
    } catch { /* no pid file: look in /proc */ }
    for (const e of Deno.readDirSync("/proc")) {
      const pid = Number(e.name);
      if (pid && runs(pid)) return pid;
    }
    return undefined;
  }

  async start(m: string, opts: StartOptions): Promise<StartResult> {
    const f = this.readMachine(m);
    if (!f) throw notFound(`Sandbox machine ${m} does not exist.`);
    if (this.runner(m)) throw wrongState(`Sandbox machine ${m} is already running.`);
    if (Deno.uid() === 0 && !f.uid) {
      // Made by a cal that ran every guest as uid 501: give this one its own uid, once.
      f.uid = await this.allocateId(m);
      await this.own(this.dir(m), f.uid);
      await this.writeMachine(m, f);
    }
    const network = sandboxNetwork(opts, f);
    const proxySocketDir = network === "proxy" ? dirname(opts.network!.proxySocket!) : undefined;
    if (proxySocketDir) await this.shareProxy(opts.network!.proxySocket!, f);
    const spec = this.spec(m, {
      outputDir: opts.outputDir,
      network,
      proxySocketDir,
      noProxy: opts.network?.noProxy,
    });
    await prepareGuest(spec);
    if (f.network !== network) await this.writeMachine(m, { ...f, network });
    const sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"];
    const limits = await this.limits(f);
    // The guest is tied to a shell that outlives cal and whose end (stop) ends the guest.
    const [bin, ...rest] = [
      ...limits,
      ...guestCommand(spec, network === "proxy" ? behindRelay(sshd) : sshd, "cal-sandbox"),
    ];
    const started = await startDetached(bin, rest, opts.logFile);
    await Deno.writeTextFile(this.pidFile(m), String(started.pid));
    if (!limits.length && (f.cpu || f.memory)) {
      return {
        ...started,
        warnings: [
          `${m}'s CPU and memory limits are not enforced: this host has no systemd to put the ` +
          "sandbox in a cgroup (a VM via the tart provider, on macOS, has hard limits).",
        ],
      };
    }
    return started;
  }

  /** Resource limits where the host can enforce them: a systemd scope (cgroups v2). */
  private async limits(f: MachineFile): Promise<string[]> {
    if (
      !which("systemd-run") ||
      !(await Deno.stat("/run/systemd/system").then(() => true, () => false))
    ) {
      return []; // no systemd: limits are recorded but not enforced (see README)
    }
    const user = Deno.uid() === 0 ? [] : ["--user"];
    return [
      "systemd-run",
      ...user,
      "--scope",
      "--quiet",
      ...(f.memory ? ["-p", `MemoryMax=${f.memory}M`] : []),
      ...(f.cpu ? ["-p", `CPUQuota=${f.cpu * 100}%`] : []),
      "--",
    ];
  }

  async stop(m: string, opts: { timeoutSeconds: number }): Promise<void> {
    const pid = this.runner(m);
    if (!pid) throw wrongState(`Sandbox machine ${m} is not running.`);
    // The runner leads its own process group (sh, bwrap, the guest): signal all of it, and wait
    // until the guest's sshd has let go of its address, so a restart can bind it again.
    const group = (sig: Deno.Signal) => {
      try {
        Deno.kill(-pid, sig);
      } catch { /* gone */ }
    };
    group(opts.timeoutSeconds ? "SIGTERM" : "SIGKILL");
    const spec = this.spec(m);
    const busy = async () =>
      alive(pid) ||
      (spec.network === "host" && await listening(spec.listen.host, spec.listen.port));
    const deadline = Date.now() + Math.max(1, opts.timeoutSeconds) * 1000;
    while (await busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    group("SIGKILL");
    const hard = Date.now() + 10_000;
    while (await busy() && Date.now() < hard) await new Promise((r) => setTimeout(r, 50));
    await Deno.remove(this.pidFile(m)).catch(() => {});
  }

  async delete(m: string): Promise<void> {
    if (!this.readMachine(m)) throw notFound(`Sandbox machine ${m} does not exist.`);
    if (this.runner(m)) throw wrongState(`Sandbox machine ${m} is running.`);
    await Deno.remove(this.dir(m), { recursive: true });
  }

  async rename(from: string, to: string): Promise<void> {
    if (this.readMachine(to)) throw wrongState(`Sandbox machine ${to} already exists.`);
    await Deno.rename(this.dir(from), this.dir(to));
  }

  list(): Promise<MachineInfo[]> {
    const out: MachineInfo[] = [];
    try {
      for (const e of Deno.readDirSync(this.root())) {
        if (!e.isDirectory || e.name.startsWith(".")) continue;
        const info = this.info(e.name);
        if (info) out.push(info);
      }
    } catch { /* no machines */ }
    return Promise.resolve(out.sort((a, b) => a.name.localeCompare(b.name)));
  }

  private info(m: string): MachineInfo | undefined {
    const f = this.readMachine(m);
    if (!f) {
      // Its folder (or machine.json) was deleted while it ran: still running, and stoppable.
      return this.runner(m) ? { name: m, state: "running", os: "linux" } : undefined;
    }
    return {
      name: m,
      state: this.runner(m) ? "running" : "stopped",
      cpu: f.cpu || undefined,
      memory: f.memory || undefined,
      disk: f.disk || undefined,
      sizeGb: Math.round(allocatedBytes(this.dir(m)) / 1e8) / 10,
      os: "linux",
    };
  }

  get(m: string): Promise<MachineInfo | undefined> {
    return Promise.resolve(this.info(m));
  }

  async endpoint(m: string): Promise<Endpoint | undefined> {
    const pid = this.runner(m);
    if (!pid) return undefined;
    const spec = this.spec(m);
    if (spec.network !== "host") {
      // No route into a network namespace of its own: reach sshd from inside it.
      const child = await sandboxChild(pid);
      if (!child) return undefined;
      return { host: spec.listen.host, port: spec.listen.port, proxyCommand: relay(child, spec) };
    }
    if (!(await listening(spec.listen.host, spec.listen.port))) return undefined;
    return { host: spec.listen.host, port: spec.listen.port };
  }

  checkCapacity(): Promise<void> {
    return Promise.resolve(); // no licence limit for Linux sandboxes
  }

  /**
   * Lets the guest's uid connect to the egress proxy's socket: its folder and the socket are
   * root's and the guest's group's only (the folder is bound into this guest alone).
   */
  private async shareProxy(socket: string, f: MachineFile): Promise<void> {
    if (Deno.uid() !== 0 || !f.uid) return; // rootless: the guest is the caller
    for (const [path, mode] of [[dirname(socket), 0o750], [socket, 0o660]] as const) {
      await Deno.chown(path, 0, f.uid);
      await Deno.chmod(path, mode);
    }
  }

  /**
   * cal's key goes into the machine's own folder on the host (`ssh/authorized_keys`), which the
   * guest sees only read-only and sshd reads as the only keys: nothing in the guest's home is
   * read, written or changed for it, so no link the guest made there is ever followed.
   */
  async authorizeKey(m: string, publicKey: string): Promise<void> {
    const spec = this.spec(m);
    const dir = spec.keysDir!;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, "authorized_keys");
    const current = await Deno.readTextFile(file).catch(() => "");
    const key = publicKey.trim();
    if (!current.split("\n").includes(key)) {
      await writeFileAtomic(file, current + key + "\n", 0o600);
    }
    await Deno.chmod(file, 0o600);
    await Deno.chmod(dir, 0o700);
    if (spec.hostId) {
      // sshd runs as the guest's uid and its StrictModes wants the file to be that uid's.
      await Deno.chown(dir, spec.hostId.uid, spec.hostId.gid);
      await Deno.chown(file, spec.hostId.uid, spec.hostId.gid);
    }
  }

  /**
   * What killed copies left in the machines' folder: `.tmp-*` copies whose cal is gone, and
   * machine folders without `machine.json` that nothing runs. For `cleanup`.
   */
  leftovers(): Promise<string[]> {
    const out: string[] = [];
    try {
      for (const e of Deno.readDirSync(this.root())) {
        if (!e.isDirectory) continue;
        if (e.name.startsWith(".tmp-")) {
          const pid = Number(e.name.split("-")[1]);
          if (!(pid && alive(pid))) out.push(this.dir(e.name));
        } else if (!e.name.startsWith(".") && !this.readMachine(e.name) && !this.runner(e.name)) {
          out.push(this.dir(e.name));
        }
      }
    } catch { /* no machines */ }
    return Promise.resolve(out.sort());
  }

  /** Removes one of `leftovers()`; anything that is not (any more) one is refused. */
  async removeLeftover(path: string): Promise<void> {
    if (!(await this.leftovers()).includes(path)) {
      throw wrongState(
        `${path} is not a leftover sandbox copy (it is in use or already gone).`,
        "Nothing to remove; `cal-vm list` shows the machines.",
      );
    }
    await Deno.remove(path, { recursive: true });
  }
}

/** The first process inside the sandbox (bwrap's child), whose namespaces are the guest's. */
async function sandboxChild(pid: number): Promise<number | undefined> {
  const r = await run("pgrep", ["-P", String(pid)]);
  const first = Number(r.stdout.trim().split("\n")[0]);
  if (!first) return undefined;
  const inner = await run("pgrep", ["-P", String(first)]);
  return Number(inner.stdout.trim().split("\n")[0]) || first;
}

/**
 * The ProxyCommand that carries SSH into an offline sandbox's network namespace, to its sshd.
 *
 * As root, `nsenter -n`. Without root the namespace belongs to a user namespace no process is
 * in: bwrap maps the caller to 0 to mount /dev, then moves into a nested one mapping it to the
 * guest's uid, so `nsenter -U` lands in the nested one and may not enter the network. Perl (in
 * every Debian, and single-threaded, as setns into a user namespace needs) joins the parent
 * user namespace (NS_GET_PARENT) and then the network, and hands over to the same relay.
 */
function relay(child: number, spec: GuestSpec): string[] {
  const port = spec.listen.port;
  const bash = [
    "bash",
    "-c",
    `exec 3<>/dev/tcp/${spec.listen.host}/${port} || exit 1; cat <&3 & exec cat >&3`,
  ];
  if (Deno.uid() === 0) return ["nsenter", "-t", String(child), "-n", "--", ...bash];
  const setns = Deno.build.arch === "aarch64" ? 268 : 308;
  const script = "my ($pid, $setns) = splice(@ARGV, 0, 2); " +
    'open(my $u, "<", "/proc/$pid/ns/user") or die "cal: user namespace of $pid: $!\\n"; ' +
    'open(my $n, "<", "/proc/$pid/ns/net") or die "cal: network namespace of $pid: $!\\n"; ' +
    'my $parent = ioctl($u, 0xb702, 0) or die "cal: NS_GET_PARENT: $!\\n"; ' +
    'syscall($setns, $parent + 0, 0x10000000) == 0 or die "cal: joining the user namespace: $!\\n"; ' +
    'syscall($setns, fileno($n), 0x40000000) == 0 or die "cal: joining the network: $!\\n"; ' +
    'exec { $ARGV[0] } @ARGV or die "cal: $ARGV[0]: $!\\n";';
  return ["perl", "-e", script, String(child), String(setns), ...bash];
}

/** Per machine and per cal home, so two users' (or two tests') workspaces never share an address. */
function hash(m: string): number[] {
  let h = 2166136261;
  for (const c of new TextEncoder().encode(`${calHome()}\0${m}`)) {
    h = Math.imul(h ^ c, 16777619) >>> 0;
  }
  return [(h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff];
}

/** A loopback address of the machine's own (127.0.0.x is left to the host). */
function addressOf(m: string): string {
  const [a, b, c] = hash(m);
  return `127.${a % 254 + 1}.${b}.${c % 253 + 1}`;
}

function portOf(m: string): number {
  const [a, b] = hash(m);
  return 20000 + ((a << 8) | b) % 10000;
}
