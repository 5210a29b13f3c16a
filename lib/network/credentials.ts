/**
 * Agent keys stay on the host: the guest's agent is given a stand-in (`cal-standin-<48 hex>`,
 * random per session, useless anywhere but through this workspace's proxy while the session
 * lasts) and cal's proxy puts the real value in its place, in the one header the credential is
 * sent in, only on HTTPS requests it terminated toward that credential's own API hosts. A
 * stand-in anywhere else (another host, another header, the URL, plain HTTP) is refused, and so
 * is a stand-in no session knows (an ended session's).
 *
 * The real value reaches the proxy over its control socket (`network-proxy.ctl` in the
 * workspace's folder, 0600, which no guest sees): cal opens a session there, sends the values
 * once, gets the stand-ins back and keeps the connection open while the agent runs; when it
 * closes (the run ended, cal was killed) the proxy forgets the session. Values live only in the
 * proxy's memory; they are never logged.
 */

import { join } from "node:path";
import { connect, createServer, type Server, type Socket } from "node:net";
import type {
  RequestDecision,
  RequestInfo,
} from "@anthropic-ai/sandbox-runtime/dist/sandbox/request-filter.js";
import { foldHeaderName } from "@anthropic-ai/sandbox-runtime/dist/sandbox/request-filter.js";
import { canonicalHost } from "./policy.ts";

/** How one credential travels to its API: the hosts it belongs to and the header it is sent in. */
export interface CredentialRoute {
  /** The API hosts (exact names) the real value may go to. */
  hosts: string[];
  /** The request header carrying it (`x-api-key`, `authorization`). */
  header: string;
}

/** One credential of a session, as cal hands it to the proxy. */
export interface SessionCredential extends CredentialRoute {
  name: string;
  value: string;
}

const STAND_IN = /cal-standin-[0-9a-f]{48}/g;
const PREFIX = "cal-standin-";

function mintStandIn(): string {
  const b = crypto.getRandomValues(new Uint8Array(24));
  return PREFIX + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

interface Held extends SessionCredential {
  standIn: string;
  hosts: string[];
}

/** The proxy's side: live sessions' stand-ins, and the per-request decision. */
export class StandIns {
  private byStandIn = new Map<string, Held>();

  /** Registers a session's credentials; returns their stand-ins and a function that ends it. */
  open(creds: SessionCredential[]): { standIns: Record<string, string>; end: () => void } {
    const held: Held[] = creds.map((c) => ({
      ...c,
      header: foldHeaderName(c.header),
      hosts: c.hosts.map((h) => canonicalHost(h) ?? h.toLowerCase()),
      standIn: mintStandIn(),
    }));
    for (const h of held) this.byStandIn.set(h.standIn, h);
    return {
      standIns: Object.fromEntries(held.map((h) => [h.name, h.standIn])),
      end: () => {
        for (const h of held) this.byStandIn.delete(h.standIn);
      },
    };
  }

  get size(): number {
    return this.byStandIn.size;
  }

  /** Whether the proxy should terminate TLS toward `host:port` (a live credential's API host). */
  terminates(host: string, port: number): boolean {
    if (port !== 443) return false;
    const h = canonicalHost(host) ?? host.toLowerCase();
    for (const c of this.byStandIn.values()) if (c.hosts.includes(h)) return true;
    return false;
  }

  /**
   * The decision for one request the proxy can read (terminated HTTPS or plain HTTP): swap a
   * live stand-in in its own header toward its own host over HTTPS; refuse any other stand-in.
   */
  decide(request: Request, info?: RequestInfo): RequestDecision {
    const deny = (reason: string): RequestDecision => ({
      action: "deny",
      reason: `cal: ${reason}`,
      mark: "credential",
    });
    const target = info?.target?.host ?? new URL(request.url).hostname;
    const host = canonicalHost(target) ?? target.toLowerCase();
    const url = info?.requestTarget ?? request.url;
    if (url.includes(PREFIX) || safeDecode(url).includes(PREFIX)) {
      return deny("a stand-in credential may not travel in a URL");
    }
    const pairs: [string, string][] = [];
    const raw = info?.rawHeaders;
    if (raw) { for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i], raw[i + 1]]); }
    else request.headers.forEach((v, k) => pairs.push([k, v]));
    const set: [string, string][] = [];
    for (const [name, value] of pairs) {
      if (!value.includes(PREFIX)) continue;
      let next = value;
      for (const m of value.matchAll(STAND_IN)) {
        const c = this.byStandIn.get(m[0]);
        if (!c) return deny("an unknown or expired stand-in credential (its session has ended)");
        if (info?.scheme !== "https") {
          return deny(`${c.name}'s stand-in goes only over HTTPS to ${c.hosts.join(", ")}`);
        }
        if (!c.hosts.includes(host)) {
          return deny(`${c.name}'s stand-in may not go to ${host}, only to ${c.hosts.join(", ")}`);
        }
        if (foldHeaderName(name) !== c.header) {
          return deny(`${c.name}'s stand-in goes only in the ${c.header} header`);
        }
        next = next.replaceAll(m[0], c.value);
      }
      // A stand-in that is not whole (cut or padded) is no stand-in: refuse rather than pass it.
      if (next.includes(PREFIX)) return deny("a malformed stand-in credential");
      set.push([name, next]);
    }
    return set.length ? { action: "allow", setHeaders: set } : { action: "allow" };
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The control socket of a workspace's proxy (in its folder, never seen by the guest). */
export const controlSocket = (vmDir: string) => join(vmDir, "network-proxy.ctl");

const MAX_LINE = 64 * 1024;

/** Reads one newline-ended line from `s` (bounded), then hands the rest of the stream back. */
function readLine(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (d: Buffer) => {
      buf += d.toString("utf8");
      const i = buf.indexOf("\n");
      if (i >= 0) {
        cleanup();
        resolve(buf.slice(0, i));
      } else if (buf.length > MAX_LINE) {
        cleanup();
        reject(new Error("line too long"));
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error("closed"));
    };
    const cleanup = () => {
      s.off("data", onData);
      s.off("end", onEnd);
      s.off("error", onEnd);
    };
    s.on("data", onData);
    s.once("end", onEnd);
    s.once("error", onEnd);
  });
}

function validCreds(x: unknown): x is SessionCredential[] {
  return Array.isArray(x) && x.length > 0 && x.length <= 16 &&
    x.every((c) =>
      typeof c?.name === "string" && typeof c.value === "string" && c.value.length > 0 &&
      typeof c.header === "string" && /^[A-Za-z0-9-]+$/.test(c.header) &&
      Array.isArray(c.hosts) && c.hosts.length > 0 &&
      c.hosts.every((h: unknown) => typeof h === "string" && /^[a-z0-9.-]+$/i.test(h))
    );
}

/**
 * The proxy's control socket: each connection opens one session with the credentials in its
 * first line and ends it when the connection closes.
 */
export async function serveControl(path: string, standIns: StandIns): Promise<Server> {
  await Deno.remove(path).catch(() => {});
  const server = createServer((s) => {
    readLine(s).then((line) => {
      const msg = JSON.parse(line);
      if (!validCreds(msg?.credentials)) throw new Error("bad request");
      const session = standIns.open(msg.credentials);
      s.once("close", session.end);
      s.on("data", () => {}); // nothing more is expected; keep the stream flowing
      s.write(JSON.stringify({ ok: true, standIns: session.standIns }) + "\n");
    }).catch(() => {
      s.end(JSON.stringify({ ok: false }) + "\n");
    });
    s.on("error", () => {});
  });
  // Only cal's own user (the host side) may connect: made private before anyone can.
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  await Deno.chmod(path, 0o600);
  return server;
}

/** A session as cal holds it: the stand-ins the agent gets, and its end. */
export interface CredentialSession {
  standIns: Record<string, string>;
  close(): void;
}

/** Opens a session with the workspace's proxy; the stand-ins are good until `close()`. */
export function openSession(path: string, creds: SessionCredential[]): Promise<CredentialSession> {
  return new Promise((resolve, reject) => {
    const s = connect({ path });
    s.once("error", (e) => reject(e));
    s.once("connect", () => {
      s.write(JSON.stringify({ credentials: creds }) + "\n");
      readLine(s).then((line) => {
        const r = JSON.parse(line);
        if (!r?.ok || typeof r.standIns !== "object") throw new Error("the proxy refused");
        s.on("error", () => {});
        s.on("data", () => {});
        s.unref();
        resolve({ standIns: r.standIns, close: () => s.destroy() });
      }).catch((e) => {
        s.destroy();
        reject(e);
      });
    });
  });
}
