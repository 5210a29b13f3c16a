/**
 * The sandbox provider: on Linux hosts, a workspace is a bubblewrap sandbox (its own mount, PID,
 * IPC and UTS namespaces, and with `--network none` its own empty network namespace) running
 * sshd, so the guest layer talks OpenSSH to it exactly as to a Tart VM. It is not a VM: the
 * kernel is shared, and every command says so.
 *
 * A machine is a folder, `~/.cal/isolation/sandboxes/<machine>/`: `machine.json` (settings) and
 * `guest/` (its writable state: home and tool prefixes). Clones and snapshots are copies of that
 * folder (`cp --reflink=auto`: instant on btrfs/xfs). As root the guest user is admin (uid 501)
 * and sshd listens on port 22 of the machine's own loopback address; rootless (unprivileged user
 * namespaces) the caller is mapped to that user and sshd uses a high port. Where the host allows
 * neither, cal says exactly what is missing; it never runs a workspace unisolated.
 */

import { dirname, join } from "node:path";
import { existsSync } from "node:fs";
import { CalError, notFound, wrongState } from "../errors.ts";
import { allocatedBytes } from "../disk.ts";
import { calHome } from "../paths.ts";
import { alive, run, startDetached, which } from "../process.ts";
import type {
  Endpoint,
  MachineInfo,
  MachineSettings,
  Provider,
  StartOptions,
  StartResult,
} from "../provider.ts";
import {
  bwrapArgs,
  type GuestSpec,
  layout,
  listening,
  MAC_ADMIN,
  MAC_PREFIXES,
  prepareGuest,
} from "../guest/sandbox.ts";

export const SANDBOX_ISOLATION = "Linux namespaces (bubblewrap), not a VM: the kernel is shared";

interface MachineFile {
  cpu: number;
  memory: number;
  disk: number;
  network: "host" | "none";
  created_at: string;
}

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
    if (Deno.uid() !== 0) {
      const probe = await run("bwrap", ["--unshare-user", "--ro-bind", "/", "/", "true"]);
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
        throw new CalError(`Cannot isolate a workspace without root: ${why}.`, {
          code: "tool-missing",
          hint:
            "Allow unprivileged user namespaces (e.g. `sudo sysctl kernel.unprivileged_userns_clone=1`, " +
            "or an AppArmor profile for bwrap), or run cal as root. cal never runs a workspace unisolated.",
        });
      }
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

  spec(m: string, opts: { outputDir?: string; network?: "host" | "none" } = {}): GuestSpec {
    const root = Deno.uid() === 0;
    const network = opts.network ?? this.readMachine(m)?.network ?? "host";
    return {
      stateDir: join(this.dir(m), "guest"),
      user: { ...MAC_ADMIN, ...(root ? { password: "admin" } : {}) },
      hostname: m,
      listen: network === "none"
        ? { host: "127.0.0.1", port: root ? 22 : 2222 }
        : { host: addressOf(m), port: root ? 22 : portOf(m) },
      prefixes: MAC_PREFIXES,
      network,
      shares: opts.outputDir
        ? [{ host: opts.outputDir, guest: "/Volumes/My Shared Files/output" }]
        : [],
    };
  }

  async clone(source: string, target: string): Promise<void> {
    await Deno.mkdir(this.root(), { recursive: true });
    if (this.readMachine(target)) {
      throw wrongState(`Sandbox machine ${target} already exists.`, "Delete it first.");
    }
    const tmp = join(this.root(), `.tmp-${crypto.randomUUID()}`);
    try {
      if (this.readMachine(source)) {
        const r = await run("cp", ["-a", "--reflink=auto", this.dir(source), tmp]);
        if (r.code !== 0) throw new CalError(`Copying ${source} failed: ${r.stderr.trim()}`);
        await Deno.remove(join(tmp, "run.pid")).catch(() => {});
      } else {
        // Any other source is the host system image: read-only /usr, a fresh home and prefixes.
        await Deno.mkdir(tmp, { recursive: true });
        const spec = { ...this.spec(target), stateDir: join(tmp, "guest") };
        await prepareGuest(spec);
        for (const [f, text] of Object.entries(SKELETON)) {
          await Deno.mkdir(dirname(join(layout.home(spec), f)), { recursive: true });
          await Deno.writeTextFile(join(layout.home(spec), f), text);
        }
        if (Deno.uid() === 0) await run("chown", ["-R", "501:20", layout.home(spec)]);
        await Deno.writeTextFile(
          join(tmp, "machine.json"),
          JSON.stringify({
            cpu: 0,
            memory: 0,
            disk: 0,
            network: "host",
            created_at: new Date().toISOString(),
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
   * The process running the machine (the `sh` leading its process group), from the pid file,
   * or, when that is gone with its folder (deleted by hand while running), found in /proc by
   * its command line, so the machine can still be reported and stopped.
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
      return pid && alive(pid) && runs(pid) ? pid : undefined;
    } catch { /* no pid file: look for an orphan */ }
    if (existsSync(this.dir(m))) return undefined;
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
    const network = (opts.options?.network as "host" | "none" | undefined) ?? f.network;
    const spec = this.spec(m, { outputDir: opts.outputDir, network });
    await prepareGuest(spec);
    const args = bwrapArgs(spec, ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"]);
    const limits = await this.limits(f);
    // bwrap's --die-with-parent ties the guest to its parent: a shell that outlives cal and
    // whose end (stop) ends the guest.
    const [bin, ...rest] = [
      ...limits,
      "sh",
      "-c",
      '"$@" & wait $!',
      "cal-sandbox",
      "bwrap",
      ...args,
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
      (spec.network !== "none" && await listening(spec.listen.host, spec.listen.port));
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
      // Its folder was deleted while it ran: still running, and stoppable.
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
    if (spec.network === "none") {
      // No route into an empty network namespace: reach sshd from inside it.
      const child = await sandboxChild(pid);
      if (!child) return undefined;
      return { host: "127.0.0.1", port: spec.listen.port, proxyCommand: relay(child, spec) };
    }
    if (!(await listening(spec.listen.host, spec.listen.port))) return undefined;
    return { host: spec.listen.host, port: spec.listen.port };
  }

  checkCapacity(): Promise<void> {
    return Promise.resolve(); // no licence limit for Linux sandboxes
  }

  async authorizeKey(m: string, publicKey: string): Promise<void> {
    const home = layout.home(this.spec(m));
    const ssh = join(home, ".ssh");
    await Deno.mkdir(ssh, { recursive: true, mode: 0o700 });
    const file = join(ssh, "authorized_keys");
    const current = await Deno.readTextFile(file).catch(() => "");
    if (!current.split("\n").includes(publicKey.trim())) {
      await Deno.writeTextFile(file, current + publicKey.trim() + "\n", { mode: 0o600 });
    }
    await Deno.chmod(ssh, 0o700);
    await Deno.chmod(file, 0o600);
    if (Deno.uid() === 0) await run("chown", ["-R", "501:20", ssh]);
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
    `exec 3<>/dev/tcp/127.0.0.1/${port} || exit 1; cat <&3 & exec cat >&3`,
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
