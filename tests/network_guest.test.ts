/**
 * The egress policy from inside a sandbox guest, played as a hijacked agent would: the default
 * allowlist lets the npm registry through cal's proxy and nothing else; with every proxy
 * variable unset nothing goes out at all; the host's loopback, its abstract unix sockets, the
 * metadata address and names that resolve to loopback are refused; DNS goes nowhere; `net allow`
 * takes effect in the running workspace, and every decision is in `net log`; `open` gives the
 * host's network back.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Rig, show } from "./rig_env.ts";
import { npmRegistry } from "./helpers.ts";

const linux = Deno.build.os === "linux";
const hasSocat = linux &&
  (await new Deno.Command("sh", { args: ["-c", "command -v socat"] }).output()).code === 0;

describe("egress from a sandbox guest", {
  skip: !hasSocat && "needs Linux and socat (the sandbox's relay to cal's proxy)",
}, () => {
  let rig: Rig;
  let ws: string;
  let server: Deno.HttpServer;
  let port: number;
  let abstract: Deno.ChildProcess;
  const abstractName = `cal-test-${crypto.randomUUID().slice(0, 8)}`;
  let npm: URL;

  /** Runs a shell command in the guest, as the agent would (its login environment). */
  const guest = (script: string) => rig.vm(["exec", ws, "--", "sh", "-c", script]);
  const log = async () =>
    (await rig.vm(["net", "log", ws, "--json"])).records as Record<string, unknown>[];

  before(async () => {
    npm = await npmRegistry();
    // A service on the host's loopback, as a developer's database or dev server would be.
    server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("HOST-LOOPBACK-SECRET"),
    );
    port = (server.addr as Deno.NetAddr).port;
    // And one on an abstract unix socket of the host (per network namespace in Linux).
    abstract = new Deno.Command("socat", {
      args: [`ABSTRACT-LISTEN:${abstractName},fork`, "SYSTEM:echo HOST-ABSTRACT-SECRET"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    rig = await Rig.create("", "sandbox");
    ws = rig.name("egress");
    assert.equal((await rig.vm(["init", ws, "--provider", "sandbox"])).code, 0);
    const r = await rig.vm(["start", ws]);
    assert.equal(r.code, 0, show(r));
  });
  after(async () => {
    await rig?.close();
    await server?.shutdown();
    try {
      abstract.kill("SIGKILL");
      await abstract.status;
    } catch { /* gone */ }
  });

  it("a new workspace's policy is the allowlist, and its proxy runs", async () => {
    const r = await rig.vm(["net", ws, "--json"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.records[0].mode, "allowlist");
    assert.equal(r.records[0].proxy_running, true);
  });

  it("the npm registry answers through the proxy (npm and curl as the agent runs them)", async () => {
    const r = await guest(
      `curl -sS -o /dev/null -w '%{http_code}' ${npm.origin}/is-number && echo && ` +
        "npm view is-number@7.0.0 version",
    );
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^200\n7\.0\.0$/m, show(r));
  });

  it("a host not on the list is refused, and the log says so", async () => {
    const r = await guest("curl -sS -o /dev/null https://example.org/ 2>&1; echo exit=$?");
    assert.match(r.stdout, /403/, show(r));
    assert.doesNotMatch(r.stdout, /exit=0/);
    const entry = (await log()).find((e) => e.host === "example.org");
    assert.ok(entry, "example.org is in net log");
    assert.equal(entry.decision, "refused");
  });

  it("with every proxy variable unset, even the allowed registry is unreachable", async () => {
    const r = await guest(
      "unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy; " +
        `curl -sS --noproxy '*' --max-time 10 -o /dev/null ${npm.origin}/ 2>&1; echo exit=$?`,
    );
    assert.doesNotMatch(r.stdout, /exit=0/, show(r));
  });

  it("DNS goes nowhere from inside", async () => {
    const r = await guest(`timeout 10 getent hosts ${npm.hostname}; echo exit=$?`);
    assert.doesNotMatch(r.stdout, /exit=0/, show(r));
  });

  it("the host's loopback, directly and through the proxy, by address and by name", async () => {
    const r = await guest(
      `curl -sS --max-time 10 http://127.0.0.1:${port}/ 2>&1; echo; ` +
        `curl -sS --max-time 10 --noproxy '' --proxy "$HTTP_PROXY" http://127.0.0.1:${port}/ 2>&1; echo; ` +
        `curl -sS --max-time 10 --noproxy '' --proxy "$HTTP_PROXY" http://localhost:${port}/ 2>&1; echo done`,
    );
    assert.match(r.stdout, /done/, show(r));
    assert.doesNotMatch(r.stdout, /HOST-LOOPBACK-SECRET/, show(r));
  });

  it("the host's abstract unix sockets", async () => {
    // The host side answers (so the check below can fail)…
    const host = await new Deno.Command("socat", {
      args: ["-T2", "-", `ABSTRACT-CONNECT:${abstractName}`],
      stdin: "null",
      stdout: "piped",
    }).output();
    assert.match(new TextDecoder().decode(host.stdout), /HOST-ABSTRACT-SECRET/);
    // …and the guest cannot reach it.
    const r = await guest(
      `socat -T2 - ABSTRACT-CONNECT:${abstractName} </dev/null 2>&1; echo done`,
    );
    assert.match(r.stdout, /done/, show(r));
    assert.doesNotMatch(r.stdout, /HOST-ABSTRACT-SECRET/, show(r));
  });

  it("the metadata address is refused", async () => {
    const r = await guest(
      "curl -sS --max-time 10 -w ' status=%{http_code}' http://169.254.169.254/latest/meta-data/ 2>&1",
    );
    assert.match(r.stdout, /status=403/, show(r));
    const entry = (await log()).find((e) => e.host === "169.254.169.254");
    assert.equal(entry?.decision, "refused");
  });

  it("`net allow` takes effect in the running workspace", async () => {
    const before = await guest(
      `curl -sS --max-time 10 --noproxy '' --proxy "$HTTP_PROXY" http://127.0.0.1:${port}/ 2>&1`,
    );
    assert.doesNotMatch(before.stdout, /HOST-LOOPBACK-SECRET/);
    const a = await rig.vm(["net", "allow", ws, `127.0.0.1:${port}`]);
    assert.equal(a.code, 0, show(a));
    const after = await guest(`curl -sS --max-time 10 http://127.0.0.1:${port}/ 2>&1`);
    // Still not directly (NO_PROXY keeps loopback inside the guest)…
    assert.doesNotMatch(after.stdout, /HOST-LOOPBACK-SECRET/);
    const proxied = await guest(
      `curl -sS --max-time 10 --noproxy '' --proxy "$HTTP_PROXY" http://127.0.0.1:${port}/`,
    );
    // …but through the proxy, now that the rule allows it.
    assert.match(proxied.stdout, /HOST-LOOPBACK-SECRET/, show(proxied));
    const entry = (await log()).reverse().find((e) => e.port === port);
    assert.equal(entry?.decision, "allowed");
  });

  it("`open` gives the host's network back, after a restart", async () => {
    assert.equal((await rig.vm(["net", "mode", ws, "open"])).code, 0);
    assert.equal((await rig.vm(["stop", ws])).code, 0);
    const s = await rig.vm(["start", ws]);
    assert.equal(s.code, 0, show(s));
    const r = await guest(`curl -sS --max-time 10 http://127.0.0.1:${port}/`);
    assert.match(r.stdout, /HOST-LOOPBACK-SECRET/, show(r));
    const net = await rig.vm(["net", ws, "--json"]);
    assert.equal(net.records[0].proxy_running, false);
  });
});
