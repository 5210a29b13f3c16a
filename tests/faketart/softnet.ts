/**
 * The fake tart's Softnet: the `--net-softnet*` flags parsed and checked as Tart and Softnet do,
 * and, where the rules deny by default (`--net-softnet-block=0.0.0.0/0`), enforced: the guest
 * gets a network namespace of its own, the host reaches its sshd through a relay on the VM's
 * address, and the guest reaches, on each allowed address, exactly the ports something of the
 * host listens on there (relays made as listeners appear, polled in /proc/net/tcp) — Softnet's
 * "this address, every port".
 *
 * Tart (Sources/tart/Commands/Run.swift) only implies --net-softnet from the allow/block/expose
 * options, refuses two network kinds at once, and hands the lists to the softnet process
 * (`--allow`, `--block`), which parses them (clap, `ipnet::Ipv4Net`, or `@host`); a bad one makes
 * softnet exit at once with clap's message, and Tart then fails with
 * `RuntimeFailed(why: "Softnet process terminated prematurely")`, exit 1.
 *
 * Not emulated: Softnet's defaults without a default-deny block (globally routable addresses
 * and the gateway only; the fake then keeps the host's network), listeners bound to all
 * addresses (real Softnet lets the VM reach those at the gateway too), DNS to the gateway's
 * forwarder, port exposure. Enforcement needs root (nsenter); without it the flags are only
 * recorded and checked.
 */

import { join } from "node:path";

export interface Softnet {
  on: boolean;
  allow: Prefix[];
  block: Prefix[];
}

interface Prefix {
  net: number;
  len: number;
  text: string;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function ipToInt(ip: string): number {
  return ip.split(".").reduce((n, o) => (n * 256 + Number(o)) >>> 0, 0);
}

/** ipnet's Ipv4Net::from_str: `a.b.c.d/len`, len 0..32; else `undefined`. */
function parsePrefix(s: string, gateway: string): Prefix | undefined {
  if (s === "@host") s = `${gateway}/32`;
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m || !IPV4.test(m[1]) || Number(m[2]) > 32) return undefined;
  const len = Number(m[2]);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { net: (ipToInt(m[1]) & mask) >>> 0, len, text: s };
}

export class SoftnetExit extends Error {}

/**
 * The rules of a run, or a SoftnetExit whose message is what real Tart prints when softnet
 * refuses them (softnet's clap error, then Tart's own line).
 */
export function softnetRules(
  opts: Record<string, string[]>,
  flags: Set<string>,
  gateway: string,
): Softnet {
  const allowText = opts["--net-softnet-allow"]?.at(-1);
  const blockText = opts["--net-softnet-block"]?.at(-1);
  const on = flags.has("--net-softnet") || allowText !== undefined || blockText !== undefined ||
    opts["--net-softnet-expose"] !== undefined;
  const list = (text: string | undefined, flag: string) =>
    text === undefined ? [] : text.split(",").map((v) => {
      const p = parsePrefix(v, gateway);
      if (!p) {
        throw new SoftnetExit(
          `error: invalid value '${v}' for '--${flag} <comma-separated CIDRs or @-alias>': ` +
            "invalid IP address syntax\n\nFor more information, try '--help'.\n" +
            'RuntimeFailed(why: "Softnet process terminated prematurely")',
        );
      }
      return p;
    });
  return { on, allow: list(allowText, "allow"), block: list(blockText, "block") };
}

/** Softnet's decision for a destination: longest prefix; an identical prefix blocked wins. */
export function decide(s: Softnet, ip: string): "allow" | "block" | undefined {
  const a = ipToInt(ip);
  let best: { len: number; action: "allow" | "block" } | undefined;
  for (const [action, list] of [["allow", s.allow], ["block", s.block]] as const) {
    for (const p of list) {
      const mask = p.len === 0 ? 0 : (0xffffffff << (32 - p.len)) >>> 0;
      if (((a & mask) >>> 0) !== p.net) continue;
      if (!best || p.len > best.len || (p.len === best.len && action === "block")) {
        best = { len: p.len, action };
      }
    }
  }
  return best?.action;
}

/** Whether the rules deny by default, which the fake can enforce. */
export function deniesByDefault(s: Softnet): boolean {
  return s.on && s.block.some((p) => p.len === 0) && !s.allow.some((p) => p.len === 0);
}

/** The IPv4 TCP listeners of this network namespace (/proc/net/tcp, state 0A). */
function listeners(): { host: string; port: number }[] {
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/net/tcp");
  } catch {
    return [];
  }
  const out: { host: string; port: number }[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] !== "0A" || !f[1]) continue;
    const [hex, port] = f[1].split(":");
    const b = hex.match(/../g)!.map((x) => parseInt(x, 16)).reverse();
    out.push({ host: b.join("."), port: parseInt(port, 16) });
  }
  return out;
}

function netns(pid: number | "self"): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** The first process under `pid` (itself included) in another network namespace. */
function innerPid(pid: number): number | undefined {
  const own = netns("self");
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    const ns = netns(p);
    if (ns && ns !== own) return p;
    try {
      for (const t of Deno.readDirSync(`/proc/${p}/task`)) {
        const kids = Deno.readTextFileSync(`/proc/${p}/task/${t.name}/children`).trim();
        if (kids) queue.push(...kids.split(/\s+/).map(Number));
      }
    } catch { /* gone */ }
  }
  return undefined;
}

/**
 * The relays of an enforced guest: sshd in, allowed listeners out. Every relay dies with the
 * fake runner (pdeathsig), and `close` ends them.
 */
export class Relays {
  private procs: Deno.ChildProcess[] = [];
  private seen = new Set<string>();
  private timer?: ReturnType<typeof setInterval>;
  private inner?: number;

  constructor(
    readonly dir: string,
    readonly rules: Softnet,
    readonly vmIp: string,
  ) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* none */ }
    Deno.mkdirSync(dir, { mode: 0o700, recursive: true });
  }

  private spawn(args: string[]) {
    const p = new Deno.Command("setpriv", {
      args: ["--pdeathsig", "KILL", ...args],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    this.procs.push(p);
  }

  private inside(args: string[]): string[] {
    return ["nsenter", "-t", String(this.inner), "-n", "--", ...args];
  }

  /** Starts relaying once the guest's namespace exists; false if it never did. */
  async start(guestPid: number): Promise<boolean> {
    for (let i = 0; i < 200 && !this.inner; i++) {
      this.inner = innerPid(guestPid);
      if (!this.inner) await new Promise((r) => setTimeout(r, 25));
    }
    if (!this.inner) return false;
    const sock = join(this.dir, "sshd.sock");
    this.spawn(this.inside([
      "socat",
      `UNIX-LISTEN:${sock},fork,mode=600`,
      `TCP:${this.vmIp}:22`,
    ]));
    for (let i = 0; i < 200; i++) {
      try {
        Deno.statSync(sock);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    this.spawn(["socat", `TCP-LISTEN:22,bind=${this.vmIp},reuseaddr,fork`, `UNIX-CONNECT:${sock}`]);
    this.poll();
    this.timer = setInterval(() => this.poll(), 200);
    return true;
  }

  private poll() {
    for (const l of listeners()) {
      const key = `${l.host}:${l.port}`;
      if (this.seen.has(key) || l.host === "0.0.0.0" || l.host === this.vmIp) continue;
      if (decide(this.rules, l.host) !== "allow") continue;
      this.seen.add(key);
      const sock = join(this.dir, `${l.host}-${l.port}.sock`);
      this.spawn(["socat", `UNIX-LISTEN:${sock},fork,mode=600`, `TCP:${l.host}:${l.port}`]);
      this.spawn(this.inside([
        "socat",
        `TCP-LISTEN:${l.port},bind=${l.host},reuseaddr,fork`,
        `UNIX-CONNECT:${sock}`,
      ]));
    }
  }

  async close() {
    if (this.timer) clearInterval(this.timer);
    for (const p of this.procs) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await Promise.all(this.procs.map((p) => p.status));
  }
}
