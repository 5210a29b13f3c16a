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
    const args = ["run", "--no-graphics"];
    if (opts.vnc) args.push("--vnc");
    if (opts.outputDir) args.push(`--dir=output:${opts.outputDir}`);
    args.push(name);
    if (!which(this.bin)) throw toolMissing("tart", INSTALL_HINT);
    this.calls++;
    return await startDetached(this.bin, args, opts.logFile);
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
