/**
 * cal's egress proxy, from the host side, with real curl as the client: what is allowed gets
 * through, what is not is refused and logged with its rule, names that resolve to this host or
 * the metadata service are refused, and the detached proxy follows the workspace's policy file
 * (`cal-vm net allow` without a restart) and its folder (gone: the proxy exits).
 *
 * The only outside host used is the npm registry (reachable from CI); every other destination
 * is a server on 127.0.0.1 or a name given to the proxy's resolver seam.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Address, type RunningProxy, startProxy } from "../lib/network/proxy.ts";
import { DecisionLog, type Entry, readLog } from "../lib/network/log.ts";
import type { NetworkMode, Policy } from "../lib/network/policy.ts";
import { getDenoDir, npmRegistry, REPO, runTool, tempDir } from "./helpers.ts";

/** The npm registry's host (the one outside host we reach). */
const registryHost = async () => (await npmRegistry()).hostname;

interface CurlResult {
  code: number;
  /** The HTTP status of the response (0 when none), and of the CONNECT answer. */
  status: number;
  connect: number;
  headers: string;
}

async function curl(url: string, proxy: string, extra: string[] = []): Promise<CurlResult> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "-m",
      "30",
      "-o",
      "/dev/null",
      "-D",
      "-",
      "-w",
      "\n%{http_code} %{http_connect}",
      "-x",
      proxy,
      ...extra,
      url,
    ],
    env: { NO_PROXY: "", no_proxy: "" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const [status, connect] = text.trim().split("\n").pop()!.split(" ").map(Number);
  return { code: out.code, status, connect, headers: text };
}

/** A plain HTTP server on 127.0.0.1: the stand-in for an allowed destination and for host services. */
function localServer() {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => new Response(`hello from ${new URL(req.url).pathname}`),
  );
  return { server, port: server.addr.port };
}

describe("egress proxy (in-process)", () => {
  let local: ReturnType<typeof localServer>;
  let proxy: RunningProxy;
  let url: string;
  let dir: string;
  const decisions: Entry[] = [];
  let current: Policy = { mode: "allowlist", allow: [], deny: [] };
  const set = (mode: NetworkMode, allow: string[], deny: string[] = []) => {
    current = {
      mode,
      allow: allow.map((pattern) => ({ pattern, source: "test" })),
      deny: deny.map((pattern) => ({ pattern, source: "test" })),
    };
  };
  /** Names we control: each resolves where the test says. */
  const names: Record<string, string[]> = {
    "rebind.test": ["127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "lan.test": ["10.1.2.3"],
    "mixed.test": ["169.254.169.254", "127.0.0.1"],
  };
  const last = () => decisions[decisions.length - 1];

  before(async () => {
    dir = await tempDir();
    local = localServer();
    proxy = await startProxy({
      policy: () => Promise.resolve(current),
      onDecision: (e) => decisions.push({ time: new Date().toISOString(), ...e }),
      tcp: { host: "127.0.0.1", port: 0 },
      socketPath: join(dir, "proxy.sock"),
      resolve: (host) => {
        const addrs = names[host];
        if (!addrs) {
          // Every other name through the system's resolver (the npm registry).
          return import("../lib/network/proxy.ts").then((m) => m.systemResolve(host));
        }
        return Promise.resolve(addrs.map((address): Address => ({ address, family: 4 })));
      },
    });
    url = `http://127.0.0.1:${proxy.tcp!.port}`;
  });

  after(async () => {
    await proxy.close();
    await local.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  });

  it("lets an allowed registry through, by CONNECT (HTTPS) and logs the rule", async () => {
    const host = await registryHost();
    set("allowlist", [host]);
    const r = await curl(`https://${host}/`, url);
    assert.equal(r.code, 0, r.headers);
    assert.ok(r.status >= 200 && r.status < 400, r.headers);
    assert.deepEqual(
      { host: last().host, port: last().port, decision: last().decision, rule: last().rule },
      { host, port: 443, decision: "allowed", rule: host },
    );
  });

  it("refuses a host that is not on the list, says why, and logs it with its rule", async () => {
    set("allowlist", ["allowed.example"]);
    const tunnel = await curl("https://not-listed.example/", url);
    assert.equal(tunnel.connect, 403, tunnel.headers);
    assert.match(tunnel.headers, /X-Cal-Refused: host_not_allowed/i);
    assert.deepEqual(last(), {
      ...last(),
      host: "not-listed.example",
      port: 443,
      decision: "refused",
      rule: "not-allowed",
      reason: "not on the allow list",
    });
    const plain = await curl("http://not-listed.example/", url);
    assert.equal(plain.status, 403, plain.headers);
    assert.equal(last().port, 80);
  });

  it("reaches a host-local server only when its address is allowed", async () => {
    set("allowlist", []);
    const target = `http://127.0.0.1:${local.port}/x`;
    assert.equal((await curl(target, url)).status, 403);
    set("allowlist", [`127.0.0.1:${local.port}`]);
    assert.equal((await curl(target, url)).status, 200);
    assert.equal(last().rule, `127.0.0.1:${local.port}`);
    // And through a CONNECT tunnel (any TCP, as ssh to GitHub would go).
    const tunnel = await curl(target, url, ["-p"]);
    assert.equal(tunnel.connect, 200, tunnel.headers);
    assert.equal(tunnel.status, 200, tunnel.headers);
    assert.equal(
      (await curl(`http://127.0.0.1:${local.port + 1}/`, url)).status,
      403,
      "other ports",
    );
  });

  it("refuses an allowed name that resolves to loopback, unless that address is allowed", async () => {
    set("allowlist", ["rebind.test"]);
    const r = await curl(`http://rebind.test:${local.port}/`, url);
    assert.equal(r.status, 403, r.headers);
    assert.equal(last().decision, "refused");
    assert.equal(last().rule, "host-local");
    assert.match(last().reason!, /loopback/);
    assert.doesNotMatch(r.headers + last().reason, /127\.0\.0\.1/, "the address is not told");
    const t = await curl(`https://rebind.test:${local.port}/`, url);
    assert.equal(t.connect, 403, "the same by CONNECT");

    set("allowlist", ["rebind.test", `127.0.0.1:${local.port}`]);
    const ok = await curl(`http://rebind.test:${local.port}/`, url);
    assert.equal(ok.status, 200, ok.headers);
  });

  it("refuses the metadata service, by address and by a name resolving to it", async () => {
    set("allowlist", ["metadata.test", "mixed.test"]);
    assert.equal((await curl("http://169.254.169.254/latest/meta-data/", url)).status, 403);
    assert.equal(last().rule, "not-allowed");
    assert.equal((await curl("http://metadata.test/", url)).status, 403);
    assert.match(last().reason!, /link-local or metadata/);
    assert.equal((await curl("http://mixed.test/", url)).status, 403, "no address may pass");
    set("open", []);
    assert.equal((await curl("http://169.254.169.254/", url)).status, 403);
    assert.equal(last().rule, "host-local", "open mode does not reach it either");
  });

  it("refuses names resolving to private addresses, and host loopback in open mode", async () => {
    set("allowlist", ["lan.test"]);
    assert.equal((await curl("http://lan.test/", url)).status, 403);
    assert.match(last().reason!, /private/);
    set("open", []);
    assert.equal((await curl(`http://127.0.0.1:${local.port}/`, url)).status, 403);
    assert.equal((await curl(`http://localhost:${local.port}/`, url)).status, 403);
    assert.equal((await curl(`http://0x7f.1:${local.port}/`, url)).status, 403, "spelled oddly");
    assert.equal(last().host, "127.0.0.1", "the log shows what it means");
  });

  it("open allows any public host and still logs it; none refuses everything", async () => {
    const host = await registryHost();
    set("open", []);
    const r = await curl(`https://${host}/`, url);
    assert.equal(r.code, 0, r.headers);
    assert.equal(last().rule, "mode:open");
    assert.equal(last().decision, "allowed");
    set("none", [host, `127.0.0.1:${local.port}`]);
    assert.equal((await curl(`https://${host}/`, url)).connect, 403);
    assert.equal(last().rule, "mode:none");
    assert.equal((await curl(`http://127.0.0.1:${local.port}/`, url)).status, 403);
  });

  it("deny wins over allow", async () => {
    set("allowlist", [`127.0.0.1:${local.port}`], ["127.0.0.0/8"]);
    assert.equal((await curl(`http://127.0.0.1:${local.port}/`, url)).status, 403);
    assert.equal(last().rule, "127.0.0.0/8");
    assert.equal(last().reason, "on the deny list");
  });

  it("serves the unix socket too", async () => {
    set("allowlist", [`127.0.0.1:${local.port}`]);
    const conn = await Deno.connect({ transport: "unix", path: proxy.socketPath! });
    await conn.write(
      new TextEncoder().encode(
        `GET http://127.0.0.1:${local.port}/sock HTTP/1.1\r\nHost: 127.0.0.1:${local.port}\r\nConnection: close\r\n\r\n`,
      ),
    );
    let text = "";
    for await (const c of conn.readable.pipeThrough(new TextDecoderStream())) text += c;
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.match(text, /hello from \/sock/);
  });

  it("logs no path, query string or header", async () => {
    set("allowlist", [`127.0.0.1:${local.port}`]);
    await curl(`http://127.0.0.1:${local.port}/p/secret-path?token=sekrit`, url, [
      "-H",
      "Authorization: Bearer sekrit-header",
    ]);
    const all = JSON.stringify(decisions);
    assert.doesNotMatch(all, /sekrit|secret-path/);
  });
});

describe("decision log", () => {
  it("rotates past its size bound and reads both files in order", async () => {
    const dir = await tempDir();
    try {
      const log = new DecisionLog(join(dir, "network.log"), 1000);
      for (let i = 0; i < 30; i++) {
        log.write({ host: `h${i}.example`, port: 443, decision: "allowed", rule: "x" });
      }
      log.close();
      const size = (await Deno.stat(join(dir, "network.log"))).size;
      assert.ok(size <= 1000, `bounded (${size})`);
      assert.ok((await Deno.stat(join(dir, "network.log.1"))).size <= 1000);
      const entries = await readLog(join(dir, "network.log"));
      assert.ok(entries.length > 10 && entries.length < 30, "older entries dropped");
      assert.equal(entries.at(-1)!.host, "h29.example", "newest last");
      const hosts = entries.map((e) => Number(e.host.slice(1, -8)));
      assert.deepEqual(hosts, [...hosts].sort((a, b) => a - b), "oldest first");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

describe("egress proxy with a token", () => {
  it("answers 407 without the token and serves with it", async () => {
    const local = localServer();
    const proxy = await startProxy({
      policy: () =>
        Promise.resolve({
          mode: "allowlist",
          allow: [{ pattern: `127.0.0.1:${local.port}`, source: "test" }],
          deny: [],
        }),
      onDecision: () => {},
      tcp: { host: "127.0.0.1", port: 0 },
      token: "t0ken",
    });
    try {
      const target = `http://127.0.0.1:${local.port}/`;
      assert.equal((await curl(target, `http://127.0.0.1:${proxy.tcp!.port}`)).status, 407);
      assert.equal(
        (await curl(target, `http://srt:t0ken@127.0.0.1:${proxy.tcp!.port}`)).status,
        200,
      );
    } finally {
      await proxy.close();
      await local.server.shutdown();
    }
  });
});

/** Runs a lib function in a cal process of its own (CAL_HOME is per process). */
async function calEval(home: string, code: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", join(REPO, "deno.json"), code],
    env: { CAL_HOME: home, DENO_DIR: await getDenoDir(), NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr) + stdout);
  return stdout;
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("the workspace's proxy process and cal-vm net", () => {
  let home: string;
  let local: ReturnType<typeof localServer>;
  const ws = "netws";
  const vmDir = () => join(home, "isolation", "vms", ws);
  const env = () => ({ CAL_HOME: home, HOME: home });
  const lib = (fn: string) =>
    `import * as d from ${JSON.stringify(join(REPO, "lib/network/daemon.ts"))}; ` +
    `console.log(JSON.stringify(await ${fn}));`;

  before(async () => {
    home = await tempDir();
    local = localServer();
    await Deno.mkdir(vmDir(), { recursive: true });
    await Deno.writeTextFile(
      join(vmDir(), "vm.yaml"),
      `name: ${ws}\nbase_image: x\ncreated_at: "2026-11-26T10:00:00Z"\nprovider: sandbox\nvm: cal-${ws}\nstatus: ready\nresources:\n  cpu: 1\n  memory: 512\n  disk_size: 1\n`,
    );
  });

  after(async () => {
    await calEval(home, lib(`d.stopProxy(${JSON.stringify(ws)})`)).catch(() => {});
    await local.server.shutdown();
    await Deno.remove(home, { recursive: true }).catch(() => {});
  });

  it("starts once, is found again, follows net allow/deny/mode without a restart, and logs", async () => {
    const sock = join(home, "p.sock");
    const start = lib(
      `d.ensureProxy(${JSON.stringify(ws)}, { socketPath: ${
        JSON.stringify(sock)
      }, tcp: { host: "127.0.0.1", port: 0 } })`,
    );
    const info = JSON.parse(await calEval(home, start));
    assert.ok(info.pid && alive(info.pid));
    assert.equal(info.socketPath, sock);
    const again = JSON.parse(await calEval(home, start));
    assert.equal(again.pid, info.pid, "a later cal finds the running proxy");
    assert.equal(again.tcp.port, info.tcp.port);

    const proxyUrl = `http://127.0.0.1:${info.tcp.port}`;
    const target = `http://127.0.0.1:${local.port}/`;
    assert.equal((await curl(target, proxyUrl)).status, 403);

    const allowed = await runTool("cal-vm", ["net", "allow", ws, `127.0.0.1:${local.port}`], env());
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.records[0].kind, "network");
    assert.equal(allowed.records[0].proxy_running, true);
    assert.equal((await curl(target, proxyUrl)).status, 200, "takes effect with no restart");

    const denied = await runTool("cal-vm", ["net", "deny", ws, "127.0.0.0/8"], env());
    assert.equal(denied.code, 0, denied.stderr);
    assert.equal((await curl(target, proxyUrl)).status, 403, "deny wins");
    await runTool("cal-vm", ["net", "allow", ws, "127.0.0.0/8"], env()); // off the deny list
    assert.equal((await curl(target, proxyUrl)).status, 200);

    const none = await runTool("cal-vm", ["net", "mode", ws, "none"], env());
    assert.equal(none.records[0].mode, "none");
    assert.equal((await curl(target, proxyUrl)).status, 403);
    await runTool("cal-vm", ["net", "mode", ws, "allowlist"], env());

    const shown = await runTool("cal-vm", ["net", ws, "--json"], env());
    const rec = shown.records[0] as { mode: string; allow: { pattern: string; source: string }[] };
    assert.equal(rec.mode, "allowlist");
    assert.ok(
      rec.allow.some((r) => r.pattern === "registry.npmjs.org" && r.source === "default @npm"),
    );
    assert.ok(
      rec.allow.some((r) => r.pattern === `127.0.0.1:${local.port}` && r.source === "workspace"),
    );

    const log = await runTool("cal-vm", ["net", "log", ws, "--json"], env());
    assert.equal(log.code, 0, log.stderr);
    const decisions = log.records.map((r) => `${r.decision} ${r.rule}`);
    assert.deepEqual(decisions, [
      "refused not-allowed",
      `allowed 127.0.0.1:${local.port}`,
      "refused 127.0.0.0/8",
      `allowed 127.0.0.1:${local.port}`, // the first allow rule that matches
      "refused mode:none",
    ]);
    for (const r of log.records) {
      assert.equal(r.kind, "connection");
      assert.equal(r.host, "127.0.0.1");
      assert.equal(r.port, local.port);
      assert.ok(!isNaN(Date.parse(String(r.time))));
    }
    const human = await runTool("cal-vm", ["net", "log", ws, "--human"], env());
    assert.match(human.stdout, /refused +127\.0\.0\.1 +\d+ +mode:none/);

    const bad = await runTool("cal-vm", ["net", "allow", ws, "*"], env());
    assert.equal(bad.code, 2, "a bad pattern is a usage error");

    // A damaged policy file closes the network (and says so) rather than opening it.
    const file = join(vmDir(), "network.json");
    const good = await Deno.readTextFile(file);
    await Deno.writeTextFile(file, "{ not json");
    assert.equal((await curl(target, proxyUrl)).status, 403);
    const broken = await runTool("cal-vm", ["net", "log", ws, "--json"], env());
    assert.equal(broken.records.at(-1)?.rule, "bad-policy");
    const shownBroken = await runTool("cal-vm", ["net", ws], env());
    assert.equal(shownBroken.code, 2);
    assert.match(shownBroken.stderr, /network\.json is not a valid network policy/);
    await Deno.writeTextFile(file, good);
    assert.equal((await curl(target, proxyUrl)).status, 200);
  });

  it("net log --follow prints connections as they happen", async () => {
    const info = JSON.parse(
      await calEval(home, lib(`Promise.resolve(d.runningProxy(${JSON.stringify(ws)}))`)),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        join(REPO, "commands/cal-vm.ts"),
        "net",
        "log",
        ws,
        "--follow",
        "--json",
      ],
      env: { ...env(), DENO_DIR: await getDenoDir(), NO_COLOR: "1" },
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const seen: Record<string, unknown>[] = [];
    const reading = (async () => {
      let pending = "";
      for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) {
        pending += c;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const l of lines) if (l) seen.push(JSON.parse(l));
      }
    })();
    try {
      const before = (await runTool("cal-vm", ["net", "log", ws, "--json"], env())).records.length;
      await waitFor("the past entries", () => seen.length >= before);
      await curl("http://followed.example/", `http://127.0.0.1:${info.tcp.port}`);
      await waitFor("the new entry", () => seen.some((r) => r.host === "followed.example"));
    } finally {
      child.kill("SIGINT");
      await child.status;
      await reading;
    }
  });

  it("stops, and a proxy whose workspace folder is gone exits by itself", async () => {
    const first = JSON.parse(
      await calEval(home, lib(`Promise.resolve(d.runningProxy(${JSON.stringify(ws)}))`)),
    );
    assert.equal(JSON.parse(await calEval(home, lib(`d.stopProxy(${JSON.stringify(ws)})`))), true);
    await waitFor("the proxy to stop", () => !alive(first.pid));
    assert.equal(await Deno.lstat(first.socketPath).then(() => true, () => false), false);

    const info = JSON.parse(
      await calEval(
        home,
        lib(`d.ensureProxy(${JSON.stringify(ws)}, { tcp: { host: "127.0.0.1", port: 0 } })`),
      ),
    );
    assert.ok(alive(info.pid));
    const keep = await Deno.readTextFile(join(vmDir(), "vm.yaml"));
    await Deno.remove(vmDir(), { recursive: true });
    await waitFor("the orphaned proxy to exit", () => !alive(info.pid));
    // Put the workspace back for after()'s stopProxy.
    await Deno.mkdir(vmDir(), { recursive: true });
    await Deno.writeTextFile(join(vmDir(), "vm.yaml"), keep);
  });
});
