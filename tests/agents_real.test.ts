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
import { PROVIDERS, REAL_TART, Rig, show, type TestProvider } from "./rig_env.ts";
import { runTool, tempDir } from "./helpers.ts";
import {
  fakeApi,
  geminiReply,
  guestEnvironsWith,
  messagesReply,
  ownLoopback,
} from "./api_standin.ts";

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

/** One agent CLI's API, as the stand-in sees it. */
interface Api {
  agent: string;
  variable: string;
  host: string;
  header: string;
  real: string;
  address: string;
  /** Whether a request is a model call (what must carry the key). */
  isModelCall: (path: string) => boolean;
  reply: (path: string, body: Record<string, unknown>) => Response;
  answer: RegExp;
  got: { path: string; key: string | null; all: string }[];
  scans: { real: number[]; standIn: number[]; scanned: number }[];
}

const key = (prefix: string) => prefix + crypto.randomUUID().replaceAll("-", "") + "-REAL";

for (const provider of PROVIDERS) swapSuite(provider);

function swapSuite(provider: TestProvider) {
  describe(`real agent CLIs, their keys kept on the host (${provider})`, {
    skip: (!reachable && "the npm registry is unreachable from this machine") ||
      (REAL_TART &&
        "the API stand-ins are on this host's loopback, which a real Tart VM does not reach") ||
      (Deno.uid() !== 0 && "the API stand-ins bind port 443 on loopback addresses"),
  }, () => {
    let rig: Rig;
    let ws: string;
    let dir: string;
    const servers: Deno.HttpServer[] = [];
    const apis: Api[] = [
      {
        agent: "claude-code",
        variable: "ANTHROPIC_API_KEY",
        host: "api.anthropic.com",
        header: "x-api-key",
        real: key("sk-ant-api03-"),
        address: ownLoopback(),
        isModelCall: (p) => p.startsWith("/v1/messages"),
        reply: (p, body) =>
          p === "/v1/messages/count_tokens"
            ? Response.json({ input_tokens: 12 })
            : p.startsWith("/v1/messages")
            ? messagesReply(body)
            : Response.json({}),
        answer: /Hello from the Messages API stand-in/,
        got: [],
        scans: [],
      },
      {
        agent: "gemini",
        variable: "GEMINI_API_KEY",
        host: "generativelanguage.googleapis.com",
        header: "x-goog-api-key",
        real: key("AIza-"),
        address: ownLoopback(),
        isModelCall: (p) => /:(stream)?[gG]enerateContent$/.test(p),
        reply: (p, body) => geminiReply(p, body, "Hello from the Gemini API stand-in."),
        answer: /Hello from the Gemini API stand-in/,
        got: [],
        scans: [],
      },
    ];

    before(async () => {
      dir = await tempDir("cal-real-api-");
      const g = generateCa({ cn: "test upstream CA" });
      await Deno.writeTextFile(join(dir, "upstream-ca.pem"), g.certPem);
      const ca = createMitmCA({ caCertPem: g.certPem, caKeyPem: g.keyPem });
      for (const api of apis) {
        servers.push(fakeApi(ca, api.address, [api.host], async (req) => {
          const path = new URL(req.url).pathname;
          const all = [...req.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
          api.got.push({ path, key: req.headers.get(api.header), all });
          if (api.isModelCall(path) && api.scans.length === 0) {
            // The agent is running now, waiting on this answer: look into every guest process.
            const real = await guestEnvironsWith(api.real);
            const standIn = await guestEnvironsWith("cal-standin-");
            api.scans.push({ real: real.hits, standIn: standIn.hits, scanned: real.scanned });
          }
          return api.reply(path, await req.json().catch(() => ({})));
        }));
      }
      rig = await Rig.create("", provider);
      Object.assign(rig.env, {
        CAL_TEST_PROXY_RESOLVE: JSON.stringify(
          Object.fromEntries(apis.map((a) => [a.host, a.address])),
        ),
        CAL_TEST_PROXY_UPSTREAM_CA: join(dir, "upstream-ca.pem"),
      });
      ws = rig.name("real-agents-swap");
      assert.equal((await rig.vm(["init", ws, "--provider", provider])).code, 0);
      const s = await rig.vm(["start", ws]);
      assert.equal(s.code, 0, show(s));
      for (const api of apis) {
        // The stand-ins are on loopback addresses: allowed by address, as a private host would be.
        for (const rule of [api.host, `${api.address}:443`]) {
          const a = await rig.vm(["net", "allow", ws, rule]);
          assert.equal(a.code, 0, show(a));
        }
      }
      await rig.vm(["ssh", ws, "npm config set cafile /etc/ssl/certs/ca-certificates.crt"]);
    });
    after(async () => {
      await rig?.close();
      for (const s of servers) await s.shutdown();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    });

    for (const api of apis) {
      it(
        `${api.agent} runs headless through cal's proxy; its API got the real key, the guest never had it`,
        {
          timeout: 900_000,
        },
        async () => {
          const inst = await rig.cal([
            "isolation",
            "agent",
            "install",
            ws,
            api.agent,
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
              api.agent,
              "--no-snapshot",
              "--yes",
              "--prompt",
              "Say hello.",
              "--timeout",
              "240",
              "--json",
            ],
            { ...rig.env, [api.variable]: api.real },
            { timeoutMs: 400_000 },
          );
          const seen = () =>
            `API requests: ${JSON.stringify(api.got.map((g) => g.path))}; ` +
            `scans: ${JSON.stringify(api.scans)}`;
          assert.equal(r.code, 0, show(r) + "\n" + seen());
          const run = r.records.find((x) => x.kind === "run")!;
          assert.equal(run.is_error, false, show(r));
          assert.match(String(run.result), api.answer, show(r));
          // The API saw the real key on every model call, and no request of any kind had a stand-in.
          const calls = api.got.filter((g) => api.isModelCall(g.path));
          assert.ok(calls.length > 0, seen());
          assert.ok(calls.every((g) => g.key === api.real), seen());
          for (const g of api.got) assert.doesNotMatch(g.all, /cal-standin/, g.path);
          // While it ran: the agent's environment held a stand-in, no guest process the real key.
          assert.equal(api.scans.length, 1, seen());
          assert.ok(api.scans[0].scanned > 0);
          assert.deepEqual(
            api.scans[0].real,
            [],
            "a guest process's environment held the real key",
          );
          assert.ok(api.scans[0].standIn.length > 0, "the agent's environment held its stand-in");
          // No part of the key anywhere in the guest's folder on the host (its whole file system:
          // the sandbox's machine folder, the fake tart's VM folder).
          const machines = provider === "sandbox"
            ? join(rig.env.CAL_HOME, "isolation", "sandboxes")
            : rig.env.TART_HOME;
          const grep = await new Deno.Command("grep", {
            args: ["-rlaF", api.real.slice(-16), machines],
            stdout: "piped",
          }).output();
          assert.equal(new TextDecoder().decode(grep.stdout), "", "the key is in a guest file");
        },
      );
    }

    it("after the runs, an ended session's stand-in is refused, naming the rule", async () => {
      // Plain HTTP to a host the policy allows (the rig's GitHub stand-in): the proxy reads it.
      const r = await rig.vm([
        "ssh",
        ws,
        `curl -sS -o /dev/null -D - --noproxy '' --proxy "$HTTP_PROXY" ` +
        `-H 'x-api-key: cal-standin-${"0".repeat(48)}' http://127.0.0.1:80/; true`,
      ]);
      assert.match(r.stdout, /^HTTP\/1\.1 403/, show(r));
      assert.match(r.stdout, /x-cal-refused: credential/i, show(r));
    });
  });
}
