/**
 * The Tart provider: macOS VMs on Apple Silicon, driven through the `tart` CLI.
 *
 * Rules from Tart's contract (research/tart-cli.md): list/get always with `--format json`, parsed
 * and never grepped (key order varies); exit codes and stderr wording mapped to cal's errors;
 * `tart run` blocks for the VM's whole life, so it runs detached with its output in the
 * workspace's log; `tart clone` silently overwrites its target, so callers check first.
 */

import { CalError, ExitCode, notFound, wrongState } from "../errors.ts";
import { run, type RunResult, startDetached, toolMissing, which } from "../process.ts";
import type {
  Endpoint,
  MachineInfo,
  MachineSettings,
  MachineState,
  Provider,
  StartOptions,
  StartResult,
} from "../provider.ts";

const INSTALL_HINT =
  "Install Tart with `brew install cirruslabs/cli/tart` (macOS on Apple Silicon).";

/** Apple's licence lets a host run two macOS VMs at once; Virtualization.framework enforces it. */
export const MACOS_VM_LIMIT = 2;

export class TartProvider implements Provider {
  readonly name = "tart";
  readonly isolation = "macOS virtual machine (Tart): the host's files are not visible";
  readonly screen = true;
  /** Number of `tart` invocations made by this process (the benchmark reports it). */
  calls = 0;

  constructor(readonly bin = Deno.env.get("CAL_TART") || "tart") {}

  ensureAvailable(): Promise<void> {
    if (!which(this.bin)) return Promise.reject(toolMissing("tart", INSTALL_HINT));
    return Promise.resolve();
  }

  async tart(args: string[], onLine?: (line: string) => void): Promise<RunResult> {
    this.calls++;
    return await run(this.bin, args, { installHint: INSTALL_HINT, onLine });
  }

  /** Runs tart and maps a failure to cal's errors. */
  async must(args: string[], onLine?: (line: string) => void): Promise<string> {
    const r = await this.tart(args, onLine);
    if (r.code !== 0) throw tartError(args, r);
    return r.stdout;
  }

  async clone(source: string, target: string, onProgress?: (l: string) => void): Promise<void> {
    await this.must(["clone", source, target], onProgress);
  }

  async configure(name: string, s: MachineSettings): Promise<void> {
    const args = [
      "set",
      name,
      "--cpu",
      String(s.cpu),
      "--memory",
      String(s.memory),
      "--disk-size",
      String(s.diskSize),
    ];
    if (s.uniqueIdentity) args.push("--random-mac", "--random-serial");
    await this.must(args);
  }

  async start(name: string, opts: StartOptions): Promise<StartResult> {
    if (!which(this.bin)) throw toolMissing("tart", INSTALL_HINT);
    const args = ["run", "--no-graphics"];
    if (opts.vnc) args.push("--vnc");
    if (opts.outputDir) args.push(`--dir=output:${opts.outputDir}`);
    const mode = opts.network?.mode ?? "open";
    if (mode !== "open") {
      const gateway = opts.network?.proxyTcp?.host;
      if (!gateway) {
        throw new CalError(`The ${mode} network needs cal's egress proxy, and none was given.`);
      }
      await this.checkSoftnet(mode);
      args.push(...softnetArgs(gateway));
    }
    args.push(name);
    this.calls++;
    const started = await startDetached(this.bin, args, opts.logFile);
    if (mode !== "open" && !(await softnetPrivileged())) {
      // Tart sets Softnet up only in a terminal; cal's detached run cannot ask for a password.
      started.warnings = [
        ...(started.warnings ?? []),
        "Softnet is neither setuid root nor allowed by passwordless sudo, so the VM's network " +
        "may not come up: run `tart run --net-softnet NAME` once in a terminal (Tart sets " +
        "Softnet up, asking for your password), then start again.",
      ];
    }
    return started;
  }

  private version?: string;

  /** `tart --version`, asked once. */
  async tartVersion(): Promise<string> {
    this.version ??= (await this.must(["--version"])).trim();
    return this.version;
  }

  /**
   * A closed network needs Tart 2.30+ (--net-softnet-block) and Softnet on PATH. An older Tart
   * is refused rather than run with plain --net-softnet, which would let the VM reach every
   * globally routable address: that is not what the policy says.
   */
  private async checkSoftnet(mode: string): Promise<void> {
    const v = await this.tartVersion();
    const [major, minor] = v.split(".").map((x) => Number.parseInt(x, 10));
    if (!(major > 2 || (major === 2 && minor >= 30))) {
      throw new CalError(
        `Tart ${v} cannot close a VM's network (--net-softnet-block needs Tart 2.30 or later), ` +
          `and this workspace's network is ${mode}.`,
        {
          code: "tool-missing",
          hint: "Upgrade Tart: `brew upgrade cirruslabs/cli/tart`. Or, knowing the VM then " +
            "reaches everything, open its network: `cal-vm net mode WS open`.",
        },
      );
    }
    if (!which("softnet")) {
      throw toolMissing(
        "softnet",
        "Install it: `brew install cirruslabs/cli/softnet`. It needs root for vmnet: " +
          "run `tart run --net-softnet` once in a terminal (Tart sets it up, asking for your " +
          "password), or make it setuid root yourself.",
      );
    }
  }

  async stop(name: string, opts: { timeoutSeconds: number }): Promise<void> {
    await this.must(["stop", name, "--timeout", String(opts.timeoutSeconds)]);
  }

  async delete(name: string): Promise<void> {
    await this.must(["delete", name]);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.must(["rename", from, to]);
  }

  async list(): Promise<MachineInfo[]> {
    const out = await this.must(["list", "--source", "local", "--format", "json"]);
    const rows = parseJson(out, "tart list") as Record<string, unknown>[];
    if (!Array.isArray(rows)) throw unexpected("tart list", out);
    return rows.map((r) => ({
      name: String(r.Name),
      state: stateOf(r.State, r.Running),
      disk: num(r.Disk),
      sizeGb: num(r.Size),
    }));
  }

  async get(name: string): Promise<MachineInfo | undefined> {
    const r = await this.tart(["get", name, "--format", "json"]);
    if (r.code === 2 && /does not exist/.test(r.stderr)) return undefined;
    if (r.code !== 0) throw tartError(["get", name], r);
    const o = parseJson(r.stdout, "tart get") as Record<string, unknown>;
    return {
      name,
      state: stateOf(o.State, o.Running),
      cpu: num(o.CPU),
      memory: num(o.Memory),
      disk: num(o.Disk),
      sizeGb: num(o.Size),
      os: typeof o.OS === "string" ? o.OS : undefined,
    };
  }

  async endpoint(name: string): Promise<Endpoint | undefined> {
    const r = await this.tart(["ip", name]);
    if (r.code === 0 && r.stdout.trim()) return { host: r.stdout.trim(), port: 22 };
    if (r.code === 2 && /does not exist/.test(r.stderr)) throw tartError(["ip", name], r);
    return undefined; // "no IP address found" (exit 1): not yet, or not running
  }

  async pruneCache(days: number): Promise<void> {
    await this.must(["prune", "--entries", "caches", "--older-than", String(days)]);
  }

  async checkCapacity(starting: string): Promise<void> {
    const running = (await this.list()).filter((m) => m.state === "running" && m.name !== starting);
    if (running.length < MACOS_VM_LIMIT) return;
    // Linux guests do not count against Apple's limit; ask each running VM for its OS.
    const macos: string[] = [];
    for (const m of running) {
      const info = await this.get(m.name);
      if ((info?.os ?? "darwin") === "darwin") macos.push(m.name);
    }
    if (macos.length >= MACOS_VM_LIMIT) {
      throw new CalError(
        `macOS allows only ${MACOS_VM_LIMIT} macOS VMs to run at once, and these are running: ${
          macos.join(", ")
        }.`,
        {
          code: "vm-limit",
          exit: ExitCode.wrongState,
          hint: "Stop one first (`cal-vm stop NAME`, or `tart stop NAME` for a VM cal does not " +
            "manage), then start this workspace again.",
        },
      );
    }
  }
}

/** Whether Softnet can get root for vmnet: we are root, it is setuid root, or sudo -n works. */
async function softnetPrivileged(): Promise<boolean> {
  if (Deno.uid() === 0) return true;
  const path = which("softnet");
  if (!path) return false;
  try {
    const st = await Deno.stat(await Deno.realPath(path));
    if (st.uid === 0 && ((st.mode ?? 0) & 0o4000)) return true;
  } catch { /* not readable: ask sudo */ }
  const r = await run("sudo", ["--non-interactive", "softnet", "--help"]).catch(() => undefined);
  return r?.code === 0;
}

/**
 * Softnet's rules for a VM whose only way out is cal's proxy at `gateway` (the vmnet gateway).
 *
 * What Softnet's source says (cirruslabs/softnet lib/proxy/vm.rs, `allowed_from_vm_ipv4`): a
 * packet from the VM leaves only from its own MAC and DHCP-leased IP; the user's rules are
 * looked up first, by longest prefix (an identical prefix both allowed and blocked is blocked),
 * and a match decides; only when none matches do the defaults apply (globally routable
 * addresses, the gateway, DNS to the DHCP-given servers). So under `--block 0.0.0.0/0` the
 * gateway is blocked too, and must be allowed by its own /32 (Softnet takes CIDRs only; `@host`
 * exists only in recent Softnet): that also carries the replies of cal's SSH to the VM, which
 * come from the gateway. Everything else IPv4 is dropped, IPv6 and other protocols always are,
 * DHCP before a lease still works, and bridge isolation (no VM-to-VM) stays on (only
 * `--allow 0.0.0.0/0` turns it off). What it cannot do: ports. Any service of the host bound to
 * the gateway or to all addresses is reachable from the VM, and so is the host's DNS forwarder
 * on the gateway (a name lookup can carry data out); the README says so.
 */
export function softnetArgs(gateway: string): string[] {
  return [
    "--net-softnet",
    `--net-softnet-allow=${gateway}/32`,
    "--net-softnet-block=0.0.0.0/0",
  ];
}

function stateOf(state: unknown, running: unknown): MachineState {
  if (state === "running" || state === "suspended" || state === "stopped") return state;
  return running === true ? "running" : "stopped";
}

function num(v: unknown): number | undefined {
  const n = typeof v === "string" ? Number(v) : v;
  return typeof n === "number" && Number.isFinite(n) ? n : undefined;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw unexpected(what, text);
  }
}

function unexpected(what: string, text: string): CalError {
  return new CalError(`\`${what}\` printed something cal cannot read: ${text.slice(0, 200)}`, {
    code: "provider-failed",
    hint: "Check `tart --version` (cal needs Tart 2.x), then report this with the output.",
  });
}

/** Maps a failed tart call onto cal's error kinds, keeping Tart's own words. */
export function tartError(args: string[], r: RunResult): CalError {
  const said = (r.stderr.trim() || r.stdout.trim()).split("\n")[0].replace(/^Error: /, "");
  const cmd = `tart ${args[0]}`;
  if (/does not exist/.test(said)) {
    return notFound(`Tart says: ${said}.`, "Run `cal-vm list` to see what exists.");
  }
  if (/exceeds the system limit/.test(said)) {
    return new CalError(`Tart refused to start another VM: ${said}.`, {
      code: "vm-limit",
      exit: ExitCode.wrongState,
      hint: "macOS allows two running macOS VMs; stop one with `cal-vm stop NAME` and retry.",
    });
  }
  if (/is (already )?running|is not running/.test(said)) {
    return wrongState(`Tart says: ${said}.`, "Check the state with `cal-vm status`.");
  }
  if (/should be larger than the current disk size/.test(said)) {
    return new CalError(`Tart cannot shrink a disk: ${said}.`, {
      code: "usage",
      exit: ExitCode.usage,
      hint: "Pass a --disk at least as large as the image's disk.",
    });
  }
  if (/LessThanMinimalResourcesError/.test(said)) {
    return new CalError(
      `Tart refused the resources: ${said.replace(/^LessThanMinimalResourcesError: /, "")}.`,
      {
        code: "usage",
        exit: ExitCode.usage,
        hint: "Give the workspace at least the image's minimum CPU and memory.",
      },
    );
  }
  const pulling = args[0] === "clone" || args[0] === "pull";
  const status = said.match(/^UnexpectedHTTPStatusCode\(when: "pulling manifest", code: (\d+)/)
    ?.[1];
  if (pulling && (/^AuthFailed\(/.test(said) || ["401", "403", "404"].includes(status ?? ""))) {
    // RegistryError, as Tart prints it: the image does not exist, or needs a login.
    return notFound(
      `The registry has no image ${args[1]} that cal may pull (Tart says: ${said.slice(0, 160)}).`,
      "Check the image name (the default is ghcr.io/cirruslabs/macos-sequoia-base:latest); " +
        "for a private registry, run `tart login HOST` first.",
    );
  }
  if (r.code === 64) {
    return new CalError(`\`${cmd}\` rejected cal's arguments: ${said}.`, {
      code: "provider-failed",
      hint: "This is a bug in cal or an incompatible Tart version; check `tart --version` " +
        "and report it.",
    });
  }
  return new CalError(`\`${cmd}\` failed (exit ${r.code}): ${said || "no message"}.`, {
    code: "provider-failed",
    hint: "See the message above; the workspace's log (`cal-vm status --json`) may say more.",
  });
}
