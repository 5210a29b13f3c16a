/**
 * A workspace's egress policy and the decision for one connection.
 *
 * Modes: `allowlist` (only what the allow list names), `open` (any public destination) and
 * `none` (nothing). Patterns: `example.com`, `*.example.com` (strict subdomains), an IP literal
 * (`10.1.2.3`, `[fd00::1]`) or a CIDR (`10.0.0.0/8`, `fd00::/8`), each with an optional `:port`
 * (IPv6 with a port in brackets: `[fd00::1]:443`); `@name` stands for a preset's hosts. Deny
 * wins over allow, whichever layer each comes from.
 *
 * The host a client asks for is canonicalized the way the proxy dials it (`127.1`, `0x7f.0.0.1`
 * and `Example.COM.` are what they mean), so a spelling cannot slip past a rule.
 */

import { BlockList, isIP } from "node:net";
import { canonicalizeHost } from "@anthropic-ai/sandbox-runtime/dist/sandbox/parent-proxy.js";
import {
  isValidAllowedDomainEntry,
  matchesDomainPattern,
  splitDomainPatternPort,
} from "@anthropic-ai/sandbox-runtime/dist/sandbox/domain-pattern.js";
import {
  addressInSet,
  isLoopbackName,
  parseAddressRange,
} from "@anthropic-ai/sandbox-runtime/dist/sandbox/address.js";

export const MODES = ["allowlist", "open", "none"] as const;
export type NetworkMode = (typeof MODES)[number];

/** One entry of an allow or deny list, with where it came from (`preset:npm`, `config`...). */
export interface Rule {
  pattern: string;
  source: string;
}

export interface Policy {
  mode: NetworkMode;
  allow: Rule[];
  deny: Rule[];
}

/** The verdict on one connection; `rule` names what decided it, `reason` says why for refusals. */
export interface Decision {
  allowed: boolean;
  rule: string;
  source?: string;
  reason?: string;
}

/** Built-in rule names for decisions no list entry made. */
export const RULE = {
  none: "mode:none",
  open: "mode:open",
  notListed: "not-allowed",
  hostLocal: "host-local",
  badHost: "bad-host",
} as const;

type Matcher =
  | { kind: "name"; host: string; port?: number }
  | { kind: "net"; set: BlockList; port?: number };

/**
 * Parses one pattern, or says what is wrong with it. `@preset` entries are expanded before
 * this; `*`, `*.com` and other over-broad wildcards are refused (use mode `open` instead).
 */
export function parsePattern(pattern: string): Matcher | string {
  const p = pattern.trim();
  if (!p || p.length > 260) return "a pattern is a host name, *.domain, an IP or a CIDR";
  // CIDRs: `v4/len`, `v4/len:port`, `v6/len`, `[v6]/len:port`.
  const cidr = /^\[?([0-9a-fA-F.:]+)\]?\/(\d{1,3})(?::(\d{1,5}))?$/.exec(p);
  if (cidr) {
    if (cidr[3] !== undefined && cidr[1].includes(":") && !p.startsWith("[")) {
      return `put an IPv6 range with a port in brackets: [${cidr[1]}]/${cidr[2]}:${cidr[3]}`;
    }
    const range = parseAddressRange(`${cidr[1]}/${cidr[2]}`);
    if (!range) return `"${p}" is not a valid CIDR range`;
    const port = cidr[3] === undefined ? undefined : portOf(cidr[3]);
    if (port === null) return `"${p}" has a port outside 1-65535`;
    const set = new BlockList();
    set.addSubnet(range.address, range.prefix, range.family);
    return { kind: "net", set, port };
  }
  if (!isValidAllowedDomainEntry(p)) {
    return `"${p}" is not a host name, *.domain (at least two labels after *.), IP or CIDR` +
      (p.startsWith("*") ? " (for everything, use mode open)" : "");
  }
  const { hostPattern, port } = splitDomainPatternPort(p);
  if (isIP(hostPattern)) {
    const range = parseAddressRange(canonicalizeHost(hostPattern) ?? hostPattern);
    if (!range) return `"${p}" is not a valid address`;
    const set = new BlockList();
    set.addSubnet(range.address, range.prefix, range.family);
    return { kind: "net", set, port };
  }
  return { kind: "name", host: hostPattern.toLowerCase(), port };
}

function portOf(s: string): number | null {
  const n = Number(s);
  return /^[1-9]\d{0,4}$/.test(s) && n <= 65535 ? n : null;
}

/** Why a pattern is not valid (undefined when it is): for config files and `net allow`. */
export function patternProblem(pattern: string): string | undefined {
  if (pattern.startsWith("@")) return undefined; // presets are checked where they expand
  const m = parsePattern(pattern);
  return typeof m === "string" ? m : undefined;
}

/** Whether `matcher` covers the canonical `host` on `port`. */
function matches(m: Matcher, host: string, port: number): boolean {
  if (m.port !== undefined && m.port !== port) return false;
  if (m.kind === "name") return isIP(host) === 0 && matchesDomainPattern(host, m.host);
  return isIP(host) !== 0 && addressInSet(m.set, host);
}

/** A policy with its patterns parsed once, to decide many connections. */
export class CompiledPolicy {
  readonly mode: NetworkMode;
  private allow: [Rule, Matcher][];
  private deny: [Rule, Matcher][];

  constructor(readonly policy: Policy) {
    this.mode = policy.mode;
    const compile = (rules: Rule[]) =>
      rules.flatMap((r): [Rule, Matcher][] => {
        const m = parsePattern(r.pattern);
        return typeof m === "string" ? [] : [[r, m]]; // validated on write; a bad one matches nothing
      });
    this.allow = compile(policy.allow);
    this.deny = compile(policy.deny);
  }

  /** The first allow rule naming `host:port` (an IP or CIDR rule for an address). */
  allowedBy(host: string, port: number): Rule | undefined {
    return this.allow.find(([, m]) => matches(m, host, port))?.[0];
  }

  deniedBy(host: string, port: number): Rule | undefined {
    return this.deny.find(([, m]) => matches(m, host, port))?.[0];
  }

  /**
   * The decision by name (or literal address), before any resolution. Host-local names
   * (`localhost`) and special addresses are left to the caller's address check, except that
   * `open` never reaches them unless the allow list names them.
   */
  decide(requestedHost: string, port: number): Decision {
    if (this.mode === "none") {
      return { allowed: false, rule: RULE.none, reason: "the workspace's network mode is none" };
    }
    const host = canonicalHost(requestedHost);
    if (host === undefined) {
      return { allowed: false, rule: RULE.badHost, reason: "not a valid host name" };
    }
    const denied = this.deniedBy(host, port);
    if (denied) {
      return {
        allowed: false,
        rule: denied.pattern,
        source: denied.source,
        reason: "on the deny list",
      };
    }
    const allowed = this.allowedBy(host, port);
    if (allowed) return { allowed: true, rule: allowed.pattern, source: allowed.source };
    if (this.mode === "open") {
      if (isLoopbackName(host)) {
        return {
          allowed: false,
          rule: RULE.hostLocal,
          reason: "a name of this host; allow it by name to reach it",
        };
      }
      return { allowed: true, rule: RULE.open };
    }
    return { allowed: false, rule: RULE.notListed, reason: "not on the allow list" };
  }
}

/** The host as the proxy will dial it (lowercase, no trailing dot, IPs canonical), or undefined. */
export function canonicalHost(host: string): string | undefined {
  if (!host || host.length > 253 + 2 || host.includes("%")) return undefined;
  const c = canonicalizeHost(host);
  if (!c || (isIP(c) === 0 && !/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(c))) return undefined;
  return c;
}

/**
 * Addresses a connection may not reach unless an IP or CIDR rule allows them: besides what
 * sandbox-runtime's guard refuses itself (loopback, unspecified, link-local and metadata,
 * multicast, broadcast, this host's own addresses), the private ranges, where the host's LAN,
 * the VM network's gateway and other workspaces live.
 */
export const PRIVATE_RANGES = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10", // carrier-grade NAT, and Tailscale
  "198.18.0.0/15", // benchmarking; some VPNs
  "fc00::/7",
];
