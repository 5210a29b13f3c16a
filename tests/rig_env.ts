/**
 * The environment integration tests run cal in: a temporary HOME and CAL_HOME, and either the
 * fake `tart` of tests/rig (default) or, with CAL_TEST_REAL_TART=1 on a Mac, the real one.
 *
 * Real Tart: the user's TART_HOME is kept (so the 25 GB base image is not downloaded again),
 * workspace names get a random prefix, and every workspace a test made is destroyed afterwards.
 */

import { join } from "node:path";
import { type CalResult, type Env, getDenoDir, REPO, runTool, tempDir } from "./helpers.ts";

export const REAL_TART = Deno.env.get("CAL_TEST_REAL_TART") === "1";

export type TestProvider = "tart" | "sandbox";
/** The providers the parameterised suites run against: the (fake or real) Tart, and on Linux the sandbox. */
export const PROVIDERS: TestProvider[] = Deno.build.os === "linux" ? ["tart", "sandbox"] : ["tart"];

export class Rig {
  readonly env: Env;
  private names = new Set<string>();
  private constructor(
    readonly root: string,
    readonly prefix: string,
    readonly provider: TestProvider,
  ) {
    const home = join(root, "home");
    this.env = {
      HOME: home,
      CAL_HOME: join(home, ".cal"),
      PATH: REAL_TART
        ? Deno.env.get("PATH") ?? ""
        : `${join(REPO, "tests", "faketart")}:${Deno.env.get("PATH") ?? ""}`,
      ...(REAL_TART ? {} : {
        TART_HOME: join(root, "tart"),
        FAKE_TART_LOG: join(root, "tart-calls.ndjson"),
      }),
    };
  }

  /** A rig with its own folders; `config` is written as `~/.cal/config.yaml`. */
  static async create(config = "", provider: TestProvider = "tart"): Promise<Rig> {
    const root = await tempDir("cal-rig-");
    const rig = new Rig(root, REAL_TART ? `t${crypto.randomUUID().slice(0, 6)}-` : "", provider);
    rig.env.DENO_DIR = await getDenoDir();
    await Deno.mkdir(rig.env.CAL_HOME, { recursive: true });
    const image = Deno.env.get("CAL_TEST_IMAGE");
    const base = [
      "isolation:",
      // The GitHub stand-in (tests/rig/github.ts) listens on the host's loopback, port 80, as a
      // team's own git host on a private address would: the egress allowlist names it.
      "  network:",
      '    allow: ["127.0.0.1:80"]',
      // gh (Go) takes a NO_PROXY "localhost" to cover github.localhost too: send it to the proxy.
      '    no_proxy: ["127.0.0.1", "::1"]',
      "  defaults:",
      "    vm:",
      `      provider: ${provider}`,
      `      boot_timeout: ${REAL_TART ? 240 : 30}`,
      ...(image ? [`      base_image: "${image}"`] : []),
    ].join("\n");
    await Deno.writeTextFile(join(rig.env.CAL_HOME, "config.yaml"), config || base + "\n");
    return rig;
  }

  /** A workspace name for this rig (prefixed on real Tart, where names are shared). */
  name(n: string): string {
    const full = this.prefix + n;
    this.names.add(full);
    return full;
  }

  cal(args: string[], opts: { stdin?: string; env?: Env } = {}): Promise<CalResult> {
    return runTool("cal", args, { ...this.env, ...opts.env }, opts);
  }

  vm(args: string[], opts: { stdin?: string; env?: Env } = {}): Promise<CalResult> {
    return runTool("cal-vm", args, { ...this.env, ...opts.env }, opts);
  }

  agent(args: string[], opts: { stdin?: string; env?: Env } = {}): Promise<CalResult> {
    return runTool("cal-agent", args, { ...this.env, ...opts.env }, opts);
  }

  gh(args: string[], opts: { stdin?: string; env?: Env } = {}): Promise<CalResult> {
    return runTool("cal-gh", args, { ...this.env, ...opts.env }, opts);
  }

  snap(args: string[], opts: { stdin?: string; env?: Env } = {}): Promise<CalResult> {
    return runTool("cal-snap", args, { ...this.env, ...opts.env }, opts);
  }

  sync(args: string[], opts: { stdin?: string; env?: Env } = {}): Promise<CalResult> {
    return runTool("cal-sync", args, { ...this.env, ...opts.env }, opts);
  }

  /** Runs cal-env (named so because `env` is the rig's environment variables). */
  calEnv(
    args: string[],
    opts: { stdin?: string; env?: Env; timeoutMs?: number } = {},
  ): Promise<CalResult> {
    return runTool("cal-env", args, { ...this.env, ...opts.env }, opts);
  }

  /** The argv of every `tart` call made so far (fake tart only). */
  async tartCalls(): Promise<string[][]> {
    if (REAL_TART) return [];
    const text = await Deno.readTextFile(this.env.FAKE_TART_LOG).catch(() => "");
    return text.split("\n").filter(Boolean).map((l) => JSON.parse(l).argv as string[]);
  }

  /** Runs the tart this rig uses, directly. */
  async tart(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const out = await new Deno.Command("tart", {
      args,
      env: this.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const d = new TextDecoder();
    return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  }

  /**
   * Breaks SSH into a running workspace the way an agent could on Tart: sshd's StrictModes
   * ignores a world-writable authorized_keys. The shared connection is closed, so the next login
   * fails.
   */
  async breakSsh(ws: string): Promise<void> {
    if (this.provider === "sandbox") {
      // The sandbox keeps cal's key outside the guest's reach: break it as damage on the host
      // would, the same way.
      const keys = ["isolation", "sandboxes", `cal-${ws}`, "ssh", "authorized_keys"];
      await Deno.chmod(join(this.env.CAL_HOME, ...keys), 0o666);
    } else {
      const r = await this.vm(["ssh", ws, "chmod 666 ~/.ssh/authorized_keys"]);
      if (r.code !== 0) throw new Error(`breakSsh: ${r.stderr}`);
    }
    const cfg = join(this.env.CAL_HOME, "isolation", "vms", ws, "ssh", "config");
    await new Deno.Command("ssh", { args: ["-F", cfg, "-O", "exit", `cal-${ws}`], stderr: "null" })
      .output();
  }

  /** The provider's machines (workspace VMs and snapshots) that exist now. */
  async machineNames(): Promise<string[]> {
    if (this.provider === "sandbox") {
      const names: string[] = [];
      try {
        for await (const e of Deno.readDir(join(this.env.CAL_HOME, "isolation", "sandboxes"))) {
          if (e.isDirectory && !e.name.startsWith(".")) names.push(e.name);
        }
      } catch { /* none yet */ }
      return names.sort();
    }
    const list = await this.tart(["list", "--source", "local", "--format", "json"]);
    return (JSON.parse(list.stdout || "[]") as { Name: string }[]).map((v) => v.Name).sort();
  }

  /** Deletes a machine behind cal's back, as a user might. */
  async deleteMachine(name: string): Promise<void> {
    if (this.provider === "sandbox") {
      await Deno.remove(join(this.env.CAL_HOME, "isolation", "sandboxes", name), {
        recursive: true,
      });
    } else {
      const r = await this.tart(["delete", name]);
      if (r.code !== 0) throw new Error(r.stderr);
    }
  }

  /** Stops and removes everything the rig made. */
  async close(): Promise<void> {
    for (const n of this.names) {
      await this.vm(["destroy", n, "--yes", "--force"]).catch(() => {});
    }
    if (!REAL_TART) {
      // Stop any VM a failed test left running, so no guest outlives the test.
      const list = await this.tart(["list", "--format", "json"]).catch(() => undefined);
      for (const vm of JSON.parse(list?.stdout || "[]") as { Name: string; Running: boolean }[]) {
        if (vm.Running) await this.tart(["stop", vm.Name, "--timeout", "2"]);
      }
    }
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

/** Asserts-friendly summary of a result, for failure messages. */
export function show(r: CalResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}
