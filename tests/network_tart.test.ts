/**
 * The egress policy on the Tart provider, played from inside the (fake) VM as a hijacked agent
 * would: the start runs the VM under Softnet with only the vmnet gateway allowed, cal's proxy
 * listens there (with a token) and the guest gets its address for cal's commands, login shells
 * and launchd; the npm registry answers through it, a host not on the list is refused and is in
 * `net log`, `net allow` takes effect at once; what the fake tart enforces (as root: a network
 * namespace of its own) is tested, what it cannot is skipped saying why; `open` runs without
 * Softnet. tests/tart_driver.test.ts has the exact flags.
 */

import { after, before, describe, it } from "node:test";
import { join } from "node:path";
import assert from "node:assert/strict";
import { REAL_TART, Rig, show } from "./rig_env.ts";
import { npmRegistry } from "./helpers.ts";
import { FAKE_GATEWAY } from "../lib/network/vmnet.ts";
import { machineName } from "../lib/names.ts";

const linux = Deno.build.os === "linux";
/** The fake enforces Softnet's default-deny with a network namespace of its own, as root. */
const enforced = linux && !REAL_TART && Deno.uid() === 0;
const notEnforced = !enforced &&
  "the fake tart enforces Softnet only as root on Linux (nsenter into the guest's namespace)";

const runCalls = async (rig: Rig, ws: string) =>
  (await rig.tartCalls()).filter((a) => a[0] === "run" && a.at(-1) === machineName(ws));

describe("egress from a Tart guest", { skip: REAL_TART && "runs on the fake tart" }, () => {
  let rig: Rig;
  let ws: string;
  let server: Deno.HttpServer;
  let port: number;
  let npm: URL;

  const guest = (script: string) => rig.vm(["exec", ws, "--", "sh", "-c", script]);
  const log = async () =>
    (await rig.vm(["net", "log", ws, "--json"])).records as Record<string, unknown>[];

  before(async () => {
    npm = await npmRegistry();
    server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("HOST-LOOPBACK-SECRET"),
    );
    port = (server.addr as Deno.NetAddr).port;
    rig = await Rig.create("", "tart");
    ws = rig.name("egress");
    assert.equal((await rig.vm(["init", ws])).code, 0);
    const r = await rig.vm(["start", ws]);
    assert.equal(r.code, 0, show(r));
  });
  after(async () => {
    await rig?.close();
    await server?.shutdown();
  });

  it("the VM runs under Softnet with only the vmnet gateway allowed", async () => {
    const [run] = await runCalls(rig, ws);
    assert.ok(run, "tart run was called");
    assert.ok(run.includes("--net-softnet"), run.join(" "));
    assert.ok(run.includes(`--net-softnet-allow=${FAKE_GATEWAY}/32`), run.join(" "));
    assert.ok(run.includes("--net-softnet-block=0.0.0.0/0"), run.join(" "));
    // What the fake made of them: enforced (its own network namespace) only where it can.
    const got = JSON.parse(
      await Deno.readTextFile(join(rig.env.TART_HOME, "vms", machineName(ws), ".fake-net.json")),
    );
    assert.equal(got.enforced, enforced);
  });

  it("cal's proxy runs at the gateway, with a token", async () => {
    const r = await rig.vm(["net", ws, "--json"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.records[0].mode, "allowlist");
    assert.equal(r.records[0].proxy_running, true);
    // Without the token the proxy refuses (anyone else on the VM network).
    const o = await new Deno.Command("curl", {
      args: ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--proxy"]
        .concat([
          (await guest('printf %s "$HTTPS_PROXY"')).stdout.replace(/srt:[0-9a-f]+@/, ""),
          `http://${npm.host}/`,
        ]),
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(o.stdout), "407");
    // Nor from a VM without it (a neighbour's proxy sits on the same gateway).
    const r2 = await guest(
      `curl -sS -o /dev/null -w '%{http_code}' --max-time 10 ` +
        `--proxy "$(printf %s "$HTTP_PROXY" | sed 's/srt:[0-9a-f]*@//')" http://${npm.host}/`,
    );
    assert.equal(r2.stdout, "407", show(r2));
  });

  it("the guest learns the way out: cal's commands, zsh, login shells, the host's CAs", async () => {
    const r = await guest('printf "%s\\n" "$HTTPS_PROXY" "$https_proxy" "$NO_PROXY"');
    assert.equal(r.code, 0, show(r));
    const [upper, lower, none] = r.stdout.split("\n");
    assert.match(upper, new RegExp(`^http://srt:[0-9a-f]{48}@${FAKE_GATEWAY}:\\d+$`));
    assert.equal(lower, upper);
    assert.match(none, /127\.0\.0\.1/);
    const shells = await guest(
      `env -i HOME="$HOME" /usr/bin/zsh -c 'printf "%s\\n" "$ALL_PROXY"'; ` +
        `env -i HOME="$HOME" /bin/sh -lc 'printf "%s\\n" "$HTTP_PROXY"'`,
    );
    assert.deepEqual(shells.stdout.trim().split("\n"), [upper, upper], show(shells));
    // The proxy's trust bundle (its CA, for agents whose keys it swaps), as the host has it.
    const bundle = await Deno.readTextFile(
      join(rig.env.CAL_HOME, "isolation", "vms", ws, "net", "ca.pem"),
    );
    const copied = await guest('cat "$HOME/.cal-env/proxy-ca.pem"');
    assert.equal(copied.stdout, bundle);
    const extra = Deno.env.get("NODE_EXTRA_CA_CERTS");
    if (extra) {
      const ca = await guest('cat "$NODE_EXTRA_CA_CERTS"; echo; echo "$NODE_EXTRA_CA_CERTS"');
      assert.ok(ca.stdout.includes((await Deno.readTextFile(extra)).trim()), "CA copied");
      assert.match(ca.stdout, /\/\.cal-env\/ca-\d\.pem\n$/);
    }
  });

  it("the npm registry answers through the proxy (npm and curl as the agent runs them)", async () => {
    const r = await guest(
      `curl -sS -o /dev/null -w '%{http_code}' ${npm.origin}/is-number && echo && ` +
        "npm view is-number@7.0.0 version",
    );
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^200\n7\.0\.0$/m, show(r));
    // Through the proxy, not around it.
    const entry = (await log()).find((e) => e.host === npm.hostname);
    assert.equal(entry?.decision, "allowed");
  });

  it("a host not on the list is refused, and the log says so", async () => {
    const r = await guest("curl -sS -o /dev/null https://example.org/ 2>&1; echo exit=$?");
    assert.match(r.stdout, /403/, show(r));
    assert.doesNotMatch(r.stdout, /exit=0/);
    const entry = (await log()).find((e) => e.host === "example.org");
    assert.ok(entry, "example.org is in net log");
    assert.equal(entry.decision, "refused");
  });

  it("with every proxy variable unset, even the allowed registry is unreachable", {
    skip: notEnforced,
  }, async () => {
    const r = await guest(
      "unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy; " +
        `curl -sS --noproxy '*' --max-time 10 -o /dev/null ${npm.origin}/ 2>&1; echo exit=$?`,
    );
    assert.doesNotMatch(r.stdout, /exit=0/, show(r));
  });

  it("DNS goes nowhere from inside", { skip: notEnforced }, async () => {
    const r = await guest(`timeout 10 getent hosts ${npm.hostname}; echo exit=$?`);
    assert.doesNotMatch(r.stdout, /exit=0/, show(r));
  });

  it("the host's loopback is unreachable, directly and through the proxy", {
    skip: notEnforced,
  }, async () => {
    const r = await guest(
      `curl -sS --max-time 10 http://127.0.0.1:${port}/ 2>&1; echo; ` +
        `curl -sS --max-time 10 --noproxy '' --proxy "$HTTP_PROXY" http://127.0.0.1:${port}/ 2>&1; echo; ` +
        `curl -sS --max-time 10 --noproxy '' --proxy "$HTTP_PROXY" http://localhost:${port}/ 2>&1; echo done`,
    );
    assert.match(r.stdout, /done/, show(r));
    assert.doesNotMatch(r.stdout, /HOST-LOOPBACK-SECRET/, show(r));
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
    const a = await rig.vm(["net", "allow", ws, `127.0.0.1:${port}`]);
    assert.equal(a.code, 0, show(a));
    const proxied = await guest(
      `curl -sS --max-time 10 --noproxy '' --proxy "$HTTP_PROXY" http://127.0.0.1:${port}/`,
    );
    assert.match(proxied.stdout, /HOST-LOOPBACK-SECRET/, show(proxied));
    const entry = (await log()).reverse().find((e) => e.port === port);
    assert.equal(entry?.decision, "allowed");
  });

  it("`open` runs without Softnet and takes the proxy settings back, after a restart", async () => {
    assert.equal((await rig.vm(["net", "mode", ws, "open"])).code, 0);
    assert.equal((await rig.vm(["stop", ws])).code, 0);
    const s = await rig.vm(["start", ws]);
    assert.equal(s.code, 0, show(s));
    const run = (await runCalls(rig, ws)).at(-1)!;
    assert.ok(!run.some((a) => a.startsWith("--net-")), run.join(" "));
    const r = await guest(
      `printf 'proxy=%s\\n' "$HTTPS_PROXY"; curl -sS --max-time 10 http://127.0.0.1:${port}/`,
    );
    assert.match(r.stdout, /^proxy=\n/, show(r));
    assert.match(r.stdout, /HOST-LOOPBACK-SECRET/, show(r));
    const net = await rig.vm(["net", ws, "--json"]);
    assert.equal(net.records[0].proxy_running, false);
  });
});

describe("the fake tart's Softnet flags, as Tart parses them", {
  skip: REAL_TART && "the fake's own contract",
}, () => {
  let rig: Rig;
  let ws: string;
  before(async () => {
    rig = await Rig.create("", "tart");
    ws = rig.name("flags");
    assert.equal((await rig.vm(["init", ws])).code, 0);
  });
  after(async () => await rig?.close());

  it("refuses two network kinds at once, with Tart's words", async () => {
    const r = await rig.tart([
      "run",
      machineName(ws),
      "--net-host",
      "--net-softnet-allow=10.0.0.0/8",
    ]);
    assert.equal(r.code, 64);
    assert.match(
      r.stderr,
      /^Error: --net-bridged, --net-softnet and --net-host are mutually exclusive\n/,
    );
  });

  it("a bad CIDR ends softnet, and Tart with it", async () => {
    const r = await rig.tart([
      "run",
      machineName(ws),
      "--net-softnet-block=0.0.0.0/0,192.168.64.1",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: invalid value '192\.168\.64\.1' for '--block /);
    assert.match(r.stderr, /RuntimeFailed\(why: "Softnet process terminated prematurely"\)\n$/);
  });

  it("cal refuses a closed network on a Tart older than 2.30, naming the version", async () => {
    const r = await rig.vm(["start", ws], { env: { FAKE_TART_VERSION: "2.29.0" } });
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /Tart 2\.29\.0 cannot close a VM's network/);
    assert.match(r.stderr, /2\.30/);
    assert.equal((await runCalls(rig, ws)).length, 0, "no tart run");
  });
});
