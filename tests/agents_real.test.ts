/**
 * The real Claude Code npm package, installed by cal into a real guest, answers --version; and in
 * a sandbox it runs headless through cal's proxy against a local HTTPS stand-in of the Messages
 * API that checks it got the real key, while the guest (its files, every process's
 * environment) never holds it.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createMitmCA, generateCa } from "@anthropic-ai/sandbox-runtime/dist/sandbox/mitm-ca.js";
import { Rig, show } from "./rig_env.ts";
import { runTool, tempDir } from "./helpers.ts";
import { fakeApi, guestEnvironsWith, messagesReply, ownLoopback } from "./api_standin.ts";

async function registryReachable(): Promise<boolean> {
  try {
    const r = await new Deno.Command("npm", {
      args: ["view", "@anthropic-ai/claude-code", "version"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return r.code === 0;
  } catch {
    return false;
  }
}

const reachable = await registryReachable();

describe("the real Claude Code", () => {
  let rig: Rig;
  let ws: string;
  before(async () => {
    if (!reachable) return;
    rig = await Rig.create();
    ws = rig.name("real-claude");
    assert.equal((await rig.vm(["init", ws])).code, 0);
    assert.equal((await rig.vm(["start", ws])).code, 0);
  });
  after(async () => await rig?.close());

  it("installs with npm and answers claude --version", {
    skip: !reachable && "the npm registry is unreachable from this machine",
    timeout: 600_000,
  }, async () => {
    // This machine reaches the registry through a TLS proxy whose CA is in the system bundle
    // (the host's npm is configured for it); give the guest's npm the same bundle.
    await rig.vm(["ssh", ws, "npm config set cafile /etc/ssl/certs/ca-certificates.crt"]);
    const r = await rig.cal([
      "isolation",
      "agent",
      "install",
      ws,
      "claude-code",
      "--method",
      "npm",
      "--json",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.records[0].installed, true);
    assert.match(String(r.records[0].version), /^\d+\.\d+\.\d+/);
    assert.equal(r.records[0].method, "npm");
    const v = await rig.vm(["exec", ws, "--", "claude", "--version"]);
    assert.equal(v.code, 0, show(v));
    assert.match(v.stdout, /\d+\.\d+\.\d+ \(Claude Code\)/);
    const list = await rig.agent(["list", ws, "--json"]);
    const claude = list.records.find((x) => x.agent === "claude-code")!;
    assert.equal(claude.installed, true);
    assert.equal(claude.method, "npm");
  });
});

describe("the real Claude Code, its key kept on the host (sandbox)", {
  skip: (!reachable && "the npm registry is unreachable from this machine") ||
    (Deno.build.os !== "linux" && "the sandbox provider is Linux only") ||
    (Deno.uid() !== 0 && "the API stand-in binds port 443 on a loopback address"),
}, () => {
  const REAL = "sk-ant-api03-REAL-" + crypto.randomUUID().replaceAll("-", "") + "-KEY";
  let rig: Rig;
  let ws: string;
  let dir: string;
  let api: Deno.HttpServer;
  const address = ownLoopback();
  const got: { path: string; key: string | null; auth: string | null }[] = [];
  const scans: { real: number[]; standIn: number[]; scanned: number }[] = [];

  before(async () => {
    dir = await tempDir("cal-real-api-");
    const g = generateCa({ cn: "test upstream CA" });
    await Deno.writeTextFile(join(dir, "upstream-ca.pem"), g.certPem);
    const ca = createMitmCA({ caCertPem: g.certPem, caKeyPem: g.keyPem });
    api = fakeApi(ca, address, ["api.anthropic.com"], async (req) => {
      const path = new URL(req.url).pathname;
      got.push({ path, key: req.headers.get("x-api-key"), auth: req.headers.get("authorization") });
      if (path.startsWith("/v1/messages") && scans.length === 0) {
        // The agent is running now, waiting on this answer: look into every guest process.
        const real = await guestEnvironsWith(REAL);
        const standIn = await guestEnvironsWith("cal-standin-");
        scans.push({ real: real.hits, standIn: standIn.hits, scanned: real.scanned });
      }
      if (path === "/v1/messages/count_tokens") return Response.json({ input_tokens: 12 });
      if (path.startsWith("/v1/messages")) {
        return messagesReply(await req.json().catch(() => ({})));
      }
      return Response.json({});
    });
    rig = await Rig.create("", "sandbox");
    Object.assign(rig.env, {
      CAL_TEST_PROXY_RESOLVE: JSON.stringify({ "api.anthropic.com": address }),
      CAL_TEST_PROXY_UPSTREAM_CA: join(dir, "upstream-ca.pem"),
    });
    ws = rig.name("real-claude-swap");
    assert.equal((await rig.vm(["init", ws, "--provider", "sandbox"])).code, 0);
    const s = await rig.vm(["start", ws]);
    assert.equal(s.code, 0, show(s));
    // The stand-in API is on a loopback address: allowed by address, as a private host would be.
    const a = await rig.vm(["net", "allow", ws, `${address}:443`]);
    assert.equal(a.code, 0, show(a));
  });
  after(async () => {
    await rig?.close();
    await api?.shutdown();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  });

  it("runs headless through cal's proxy; the API got the real key, the guest never had it", {
    timeout: 900_000,
  }, async () => {
    await rig.vm(["ssh", ws, "npm config set cafile /etc/ssl/certs/ca-certificates.crt"]);
    const inst = await rig.cal([
      "isolation",
      "agent",
      "install",
      ws,
      "claude-code",
      "--method",
      "npm",
      "--json",
    ]);
    assert.equal(inst.code, 0, show(inst));
    const r = await runTool(
      "cal",
      [
        "isolation",
        "run",
        ws,
        "--agent",
        "claude-code",
        "--no-snapshot",
        "--yes",
        "--prompt",
        "Say hello.",
        "--timeout",
        "240",
        "--json",
      ],
      { ...rig.env, ANTHROPIC_API_KEY: REAL },
      { timeoutMs: 400_000 },
    );
    const seen = () =>
      `API requests: ${JSON.stringify(got.map((g) => g.path))}; scans: ${JSON.stringify(scans)}`;
    assert.equal(r.code, 0, show(r) + "\n" + seen());
    const run = r.records.find((x) => x.kind === "run")!;
    assert.equal(run.is_error, false, show(r));
    assert.match(String(run.result), /Hello from the Messages API stand-in/, show(r));
    // The API saw the real key on every request that carried one, and never a stand-in.
    const messages = got.filter((g) => g.path.startsWith("/v1/messages"));
    assert.ok(messages.length > 0, `requests: ${JSON.stringify(got.map((g) => g.path))}`);
    for (const g of got) {
      assert.ok(g.key === null || g.key === REAL, `${g.path} carried ${g.key?.slice(0, 14)}…`);
      assert.doesNotMatch(g.auth ?? "", /cal-standin/);
    }
    assert.ok(messages.every((g) => g.key === REAL));
    // While it ran: the agent's environment held a stand-in, no guest process the real key.
    assert.equal(scans.length, 1);
    assert.ok(scans[0].scanned > 0);
    assert.deepEqual(scans[0].real, [], "a guest process's environment held the real key");
    assert.ok(scans[0].standIn.length > 0, "the agent's environment held its stand-in");
    // No part of the key anywhere in the guest's folder on the host (its whole file system).
    const machines = join(rig.env.CAL_HOME, "isolation", "sandboxes");
    const grep = await new Deno.Command("grep", {
      args: ["-rlaF", REAL.slice(-16), machines],
      stdout: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(grep.stdout), "", "the key is in a guest file");
    // The session ended with the run: its stand-in is refused now, even toward its own host.
    const after = await rig.vm([
      "ssh",
      ws,
      `curl -sS -o /dev/null -w '%{http_code}' -H 'x-api-key: cal-standin-${"0".repeat(48)}' ` +
      "--cacert /run/cal-net/ca.pem http://api.anthropic.com/v1/messages; true",
    ]);
    assert.equal(after.stdout.trim(), "403", show(after));
  });
});
