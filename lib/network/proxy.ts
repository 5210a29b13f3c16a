/**
 * cal's egress proxy for one workspace: sandbox-runtime's HTTP proxy server (CONNECT for HTTPS
 * and any TCP such as ssh to GitHub, absolute-URI requests for plain HTTP), deciding each
 * connection by the workspace's policy and writing every decision to the log.
 *
 * The proxy resolves names itself, once, in the decision: an allowed name whose addresses are
 * all loopback, link-local (metadata), private or this host's own is refused, unless an IP or
 * CIDR rule allows that address; the addresses that passed are the ones dialed (the dial's
 * lookup takes them from the decision, with no second answer from DNS in between).
 *
 * It listens where the guest side can reach it: a unix socket (the sandbox bind-mounts it into
 * its network namespace) and/or a TCP address (Tart: the host's side of the VM network).
 *
 * With `credentials`, it terminates TLS toward a live session's API hosts only (the
 * workspace's CA; every other CONNECT stays an opaque tunnel) and swaps the session's stand-ins
 * for the real keys there, over verified TLS to the real upstream; see credentials.ts.
 */

import { lookup as dnsLookup } from "node:dns";
import { BlockList, isIP } from "node:net";
import type { Server } from "node:http";
import type { LookupFunction } from "node:net";
import { createHttpProxyServer } from "@anthropic-ai/sandbox-runtime/dist/sandbox/http-proxy.js";
import {
  createResolvedAddressGuard,
  ResolvedAddressDeniedError,
  type ResolvedAddressGuard,
} from "@anthropic-ai/sandbox-runtime/dist/sandbox/resolved-address-guard.js";
import {
  resolveParentProxy,
  shouldBypassParentProxy,
} from "@anthropic-ai/sandbox-runtime/dist/sandbox/parent-proxy.js";
import { addRange } from "@anthropic-ai/sandbox-runtime/dist/sandbox/address.js";
import type { MitmCA } from "@anthropic-ai/sandbox-runtime/dist/sandbox/mitm-ca.js";
import type { StandIns } from "./credentials.ts";
import { canonicalHost, CompiledPolicy, type Policy, PRIVATE_RANGES, RULE } from "./policy.ts";
import type { Entry } from "./log.ts";

export interface Address {
  address: string;
  family: number;
}

/** Name resolution: every address of a name. The test seam for names we do not control. */
export type Resolve = (host: string) => Promise<Address[]>;

export const systemResolve: Resolve = (host) =>
  new Promise((resolve, reject) =>
    dnsLookup(host, { all: true, order: "verbatim" }, (err, addrs) => {
      if (err) reject(err);
      else resolve(addrs);
    })
  );

export interface ProxyOptions {
  /** The policy now: called for each connection, so it should be cheap when nothing changed. */
  policy: () => Promise<Policy>;
  /** Where decisions go (the decision log). */
  onDecision: (e: Omit<Entry, "time">) => void;
  /** A unix socket to listen on (made here; removed on close). */
  socketPath?: string;
  /** A TCP address to listen on; port 0 picks a free one. */
  tcp?: { host: string; port: number };
  /** When set, clients must send `Proxy-Authorization: Basic base64("srt:<token>")`. */
  token?: string;
  /** Upstream proxy (the host's HTTPS_PROXY), which then resolves names and dials. */
  parentProxy?: { http?: string; https?: string; noProxy?: string };
  resolve?: Resolve;
  /** This host's addresses (test seam; default: its interfaces', read per check). */
  localAddresses?: () => readonly string[];
  /** Key swapping: the workspace's CA and the live sessions' stand-ins. */
  credentials?: {
    ca: MitmCA;
    standIns: StandIns;
    /** The CA(s) the upstream leg trusts instead of the system's (test seam). */
    upstreamCA?: string | string[];
  };
}

export interface RunningProxy {
  socketPath?: string;
  tcp?: { host: string; port: number };
  close(): Promise<void>;
}

/** The header a refusal carries (`X-Cal-Refused: host_not_allowed`), for tools and tests. */
export const DENY_HEADER = "X-Cal-Refused";

const VETTED_MS = 10_000;

/** Why an address is refused, in words that name its class, never the address. */
const CLASSES: [string, string[]][] = [
  ["a loopback address", ["127.0.0.0/8", "::1/128"]],
  ["an unspecified address", ["0.0.0.0/8", "::/128"]],
  ["a link-local or metadata address", ["169.254.0.0/16", "fe80::/10"]],
  ["a private address", PRIVATE_RANGES],
  ["a multicast or broadcast address", ["224.0.0.0/4", "255.255.255.255/32", "ff00::/8"]],
].map(([why, ranges]) => [why as string, ranges as string[]]);
const classSets = CLASSES.map(([why, ranges]): [string, BlockList] => {
  const set = new BlockList();
  for (const r of ranges) addRange(set, r);
  return [why, set];
});
function addressClass(address: string): string {
  const fam = isIP(address) === 6 ? "ipv6" : "ipv4";
  return classSets.find(([, set]) => set.check(address, fam))?.[0] ??
    "an address of this host or of a cloud's metadata service";
}

/** The policy with what its address checks need, rebuilt when the policy changes. */
class Judge {
  readonly compiled: CompiledPolicy;
  private guard: ResolvedAddressGuard;

  constructor(readonly policy: Policy, localAddresses?: () => readonly string[]) {
    this.compiled = new CompiledPolicy(policy);
    // The guard's own classes (loopback, link-local, metadata, this host's addresses...) plus
    // the private ranges; allow and deny rules for addresses are applied here, CIDRs included.
    this.guard = createResolvedAddressGuard({
      deniedResolvedAddresses: PRIVATE_RANGES,
      ...(localAddresses ? { localAddresses } : {}),
    });
  }

  /** Why `host:port` may not use `address`, or undefined when it may. */
  refusal(host: string, address: string, port: number): string | undefined {
    if (this.compiled.deniedBy(address, port)) return "a deny-listed address";
    if (this.compiled.allowedBy(address, port)) return undefined;
    // The guard never judges a literal destination (it was named on purpose); a literal reached
    // in open mode was not, so it is judged as if a name had resolved to it.
    const name = isIP(host) ? "literal.invalid" : host;
    return this.guard.permits(name, address, port) ? undefined : addressClass(address);
  }
}

export async function startProxy(opts: ProxyOptions): Promise<RunningProxy> {
  if (!opts.socketPath && !opts.tcp) throw new Error("startProxy needs a socketPath or a tcp");
  const resolve = opts.resolve ?? systemResolve;
  const parent = opts.parentProxy ? resolveParentProxy(opts.parentProxy) : undefined;
  let judge: Judge | undefined;
  const current = async (): Promise<Judge | string> => {
    let policy: Policy;
    try {
      policy = await opts.policy();
    } catch (e) {
      return (e as Error).message;
    }
    if (judge?.policy !== policy) judge = new Judge(policy, opts.localAddresses);
    return judge;
  };
  /** Addresses that passed a decision, for the dial that follows it. */
  const vetted = new Map<string, { addrs: Address[]; until: number }>();
  const remember = (key: string, addrs: Address[]) => {
    const now = Date.now();
    if (vetted.size > 1000) {
      for (const [k, v] of vetted) if (v.until < now) vetted.delete(k);
    }
    vetted.set(key, { addrs, until: now + VETTED_MS });
  };
  /** Resolves `host` and keeps the addresses `judge` lets `host:port` use. */
  const vet = async (j: Judge, host: string, port: number) => {
    const addrs = await resolve(host);
    const kept: Address[] = [];
    const whys = new Set<string>();
    for (const a of addrs) {
      const why = j.refusal(host, a.address, port);
      if (why) whys.add(why);
      else kept.push(a);
    }
    return { kept, why: `resolved to ${[...whys].join(" / ") || "no address"}` };
  };

  const filter = async (
    port: number,
    requested: string,
    _socket: unknown,
    _cmd?: string,
    explain?: (reason: string) => void,
  ): Promise<boolean> => {
    const host = canonicalHost(requested) ?? requested;
    const refuse = (rule: string, reason: string, source?: string) => {
      opts.onDecision({
        host,
        port,
        decision: "refused",
        rule,
        ...(source ? { source } : {}),
        reason,
      });
      explain?.(reason);
      return false;
    };
    const j = await current();
    if (typeof j === "string") return refuse("bad-policy", `the policy cannot be read: ${j}`);
    const d = j.compiled.decide(requested, port);
    if (!d.allowed) return refuse(d.rule, d.reason ?? "refused", d.source);
    if (isIP(host)) {
      const why = j.refusal(host, host, port);
      if (why) return refuse(RULE.hostLocal, `${why}; allow it by address to reach it`);
    } else if (!parent || shouldBypassParentProxy(parent, host)) {
      let r: { kept: Address[]; why: string };
      try {
        r = await vet(j, host, port);
      } catch (e) {
        const code = (e as { code?: string }).code ?? "failed";
        return refuse(d.rule, `the name does not resolve (${code})`, d.source);
      }
      if (!r.kept.length) {
        return refuse(RULE.hostLocal, `${r.why}; allow that address to reach it`, d.source);
      }
      remember(`${host}:${port}`, r.kept);
    }
    opts.onDecision({
      host,
      port,
      decision: "allowed",
      rule: d.rule,
      ...(d.source ? { source: d.source } : {}),
    });
    return true;
  };

  const lookupFor = (port: number): LookupFunction => (hostname, options, callback) => {
    const answer = (addrs: Address[]) => {
      if (options.all) callback(null, addrs);
      else callback(null, addrs[0].address, addrs[0].family);
    };
    const cached = vetted.get(`${hostname}:${port}`);
    if (cached && cached.until > Date.now()) return answer(cached.addrs);
    // Not decided just now (a keep-alive reuse, a slow client): judged again, the same way.
    current().then(async (j) => {
      if (typeof j === "string") throw new Error(j);
      const r = await vet(j, hostname, port);
      if (!r.kept.length) {
        opts.onDecision({
          host: hostname,
          port,
          decision: "refused",
          rule: RULE.hostLocal,
          reason: r.why,
        });
        throw new ResolvedAddressDeniedError(hostname, r.why, []);
      }
      answer(r.kept);
    }).catch((e) => callback(e, []));
  };

  const creds = opts.credentials;
  const swapping = creds
    ? {
      mitmCA: creds.ca,
      shouldTerminateTLS: (host: string, port: number) => creds.standIns.terminates(host, port),
      // Every request the proxy can read (plain HTTP, terminated HTTPS): a stand-in is swapped
      // toward its own host or the request is refused. A throw refuses too.
      filterRequest: (req: Request, info?: Parameters<StandIns["decide"]>[1]) =>
        Promise.resolve(creds.standIns.decide(req, info)),
      onFilterRequestDenied: (d: { url: string; reason: string }) => {
        let host = "";
        let port = 0;
        try {
          const u = new URL(d.url);
          host = u.hostname;
          port = Number(u.port) || (u.protocol === "https:" ? 443 : 80);
        } catch { /* not a URL: logged without a host */ }
        opts.onDecision({ host, port, decision: "refused", rule: "credential", reason: d.reason });
      },
      // The upstream leg is always verified; the real value goes out only after its handshake.
      ...(creds.upstreamCA ? { tlsTerminateUpstreamCA: creds.upstreamCA } : {}),
    }
    : {};

  const make = () =>
    createHttpProxyServer({
      filter,
      lookupFor,
      denyHeader: DENY_HEADER,
      requireAsciiHost: true,
      ...(opts.token ? { proxyAuthToken: opts.token } : {}),
      ...(parent ? { parentProxy: parent } : {}),
      ...swapping,
    }) as Server;

  const servers: Server[] = [];
  const listen = (s: Server, ...args: unknown[]) =>
    new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      // deno-lint-ignore no-explicit-any
      (s.listen as any)(...args, () => {
        s.off("error", reject);
        resolve();
      });
    });
  const running: RunningProxy = {
    close: async () => {
      await Promise.all(servers.map((s) =>
        new Promise<void>((r) => {
          s.close(() => r());
          // deno-lint-ignore no-explicit-any
          (s as any).closeAllConnections?.();
        })
      ));
      if (opts.socketPath) await Deno.remove(opts.socketPath).catch(() => {});
    },
  };
  try {
    if (opts.socketPath) {
      await Deno.remove(opts.socketPath).catch(() => {}); // a stale socket of a dead proxy
      const s = make();
      servers.push(s);
      await listen(s, opts.socketPath);
      await Deno.chmod(opts.socketPath, 0o600);
      running.socketPath = opts.socketPath;
    }
    if (opts.tcp) {
      const s = make();
      servers.push(s);
      await listen(s, opts.tcp.port, opts.tcp.host);
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : opts.tcp.port;
      running.tcp = { host: opts.tcp.host, port };
    }
  } catch (e) {
    await running.close();
    throw e;
  }
  return running;
}
