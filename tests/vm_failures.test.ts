/**
 * cal-vm when things go wrong: a VM that never gets an IP, SSH refusing the key, the image's
 * password refused, the two-VM limit, a base image the registry does not have, and a cal killed
 * halfway through init.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { REAL_TART, Rig, show } from "./rig_env.ts";
import { parseNdjson } from "./helpers.ts";
import { interrupt as interruptAt } from "./interrupt.ts";

describe("start failures", { skip: REAL_TART && "needs the fake tart's failure knobs" }, () => {
  let rig: Rig;
  before(async () => (rig = await Rig.create()));
  after(async () => await rig.close());

  it("a VM that never gets an IP times out with a clear message", async () => {
    const n = rig.name("no-ip");
    assert.equal((await rig.vm(["init", n])).code, 0);
    const r = await rig.vm(["start", n, "--timeout", "3"], { env: { FAKE_TART_NO_IP: "1" } });
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, new RegExp(`"${n}" got no IP address within 3 s`));
    assert.match(r.stderr, /still running/);
    assert.equal((await rig.vm(["stop", n, "--force"])).code, 0);
  });

  it("a slow DHCP lease is waited for", async () => {
    const n = rig.name("slow-ip");
    assert.equal((await rig.vm(["init", n])).code, 0);
    const r = await rig.vm(["start", n], { env: { FAKE_TART_IP_DELAY: "3" } });
    assert.equal(r.code, 0, show(r));
    assert.match(
      r.stderr,
      /"event":"waiting","message":"Waiting for \\"slow-ip\\" to get an IP address/,
    );
    assert.equal((await rig.vm(["stop", n])).code, 0);
  });

  it("the image's password refused: says which setting to fix", async () => {
    const n = rig.name("bad-pass");
    assert.equal((await rig.vm(["init", n])).code, 0);
    const cfg = join(rig.env.CAL_HOME, "config.yaml");
    const saved = await Deno.readTextFile(cfg);
    await Deno.writeTextFile(cfg, saved + "      password: wrong\n");
    try {
      const r = await rig.vm(["start", n, "--timeout", "20"]);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, /refused the password for "admin"/);
      assert.match(r.stderr, /isolation\.defaults\.vm\.user and password/);
    } finally {
      await Deno.writeTextFile(cfg, saved);
      await rig.vm(["stop", n, "--force"]);
    }
  });

  it("SSH refusing the key: a clear error, and the next start repairs it", async () => {
    const n = rig.name("key");
    assert.equal((await rig.vm(["init", n])).code, 0);
    assert.equal((await rig.vm(["start", n])).code, 0);
    await rig.breakSsh(n);
    const r = await rig.vm(["ssh", n, "true"]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /SSH to workspace "key" failed: .*Permission denied/);
    assert.match(r.stderr, /start re-installs the key/);
    assert.equal((await rig.vm(["stop", n, "--force"])).code, 0);
    const again = await rig.vm(["start", n]);
    assert.equal(again.code, 0, show(again));
    assert.equal((await rig.vm(["ssh", n, "true"])).code, 0);
    await rig.vm(["stop", n, "--force"]);
  });

  it("destroy --force removes a running workspace SSH cannot reach", async () => {
    const n = rig.name("unreachable");
    assert.equal((await rig.vm(["init", n])).code, 0);
    assert.equal((await rig.vm(["start", n])).code, 0);
    await rig.breakSsh(n);
    const r = await rig.vm(["destroy", n, "--force", "--yes"]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /could not be checked for unsaved work: SSH to workspace/);
    assert.equal((await rig.vm(["status", n])).code, 3);
    assert.ok(!(await rig.machineNames()).some((m) => m.includes(n)), "no VM is left");
  });

  it("a third macOS VM is refused by cal before tart is asked", async () => {
    const [a, b, c] = [rig.name("two-a"), rig.name("two-b"), rig.name("two-c")];
    for (const n of [a, b, c]) assert.equal((await rig.vm(["init", n])).code, 0);
    assert.equal((await rig.vm(["start", a])).code, 0);
    assert.equal((await rig.vm(["start", b])).code, 0);
    const before = (await rig.tartCalls()).length;
    const r = await rig.vm(["start", c]);
    assert.equal(r.code, 4, show(r));
    assert.match(r.stderr, /only 2 macOS VMs/);
    assert.match(r.stderr, new RegExp(`cal-${a}.*cal-${b}|cal-${b}.*cal-${a}`));
    assert.match(r.stderr, /cal-vm stop/);
    const calls = (await rig.tartCalls()).slice(before);
    assert.ok(!calls.some((argv) => argv[0] === "run"), JSON.stringify(calls));
    await rig.vm(["stop", a, "--force"]);
    await rig.vm(["stop", b, "--force"]);
  });
});

// Runs against real Tart as well: ghcr.io answers 401, 403 or 404 for an image that is not there.
describe("a base image the registry does not have", () => {
  let rig: Rig;
  before(async () => (rig = await Rig.create()));
  after(async () => await rig.close());

  it("init says so (exit 3), names what to check, and leaves nothing behind", async () => {
    const n = rig.name("no-image");
    const image = "ghcr.io/cal-tests/no-such-image:latest";
    const r = await rig.vm(["init", n, "--image", image]);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, /The registry has no image ghcr\.io\/cal-tests\/no-such-image:latest/);
    assert.match(r.stderr, /Check the image name .*`tart login HOST`/s);
    assert.equal((await rig.vm(["status", n])).code, 3, "no workspace is left");
    assert.ok(!(await rig.machineNames()).some((m) => m.includes(n)), "no VM is left");
  });
});

describe(
  "a killed init or start",
  { skip: REAL_TART && "needs the fake tart's delay knob" },
  () => {
    let rig: Rig;
    before(async () => (rig = await Rig.create()));
    after(async () => await rig.close());

    /**
     * Runs `cal-vm ARGS --json` with a fake tart knob, waits until stderr shows `when`, sends
     * `signal`, and returns the exit status and all of stderr.
     */
    const interrupt = async (
      args: string[],
      knob: Record<string, string>,
      when: string,
      signal: Deno.Signal,
    ) => {
      const r = await interruptAt({ ...rig.env, ...knob }, "cal-vm", [...args, "--json"], {
        when,
        signal,
        settleMs: 300,
      });
      return { code: r.code, stderr: r.stderr };
    };

    const killDuringClone = (n: string, signal: Deno.Signal) =>
      interrupt(["init", n], { FAKE_TART_CLONE_DELAY: "30" }, '"event":"clone"', signal);

    it("SIGINT: cal removes what it had made and exits 130", async () => {
      const n = rig.name("interrupted");
      const { code } = await killDuringClone(n, "SIGINT");
      assert.equal(code, 130);
      assert.equal((await rig.vm(["status", n])).code, 3);
      const list = JSON.parse((await rig.tart(["list", "--format", "json"])).stdout);
      assert.ok(!list.some((v: { Name: string }) => v.Name === `cal-${n}`));
    });

    it("SIGINT during start: the machine it started is stopped, exit 130, said once", async () => {
      const n = rig.name("half-started");
      assert.equal((await rig.vm(["init", n])).code, 0);
      const { code, stderr: seen } = await interrupt(
        ["start", n],
        { FAKE_TART_IP_DELAY: "30" },
        "to get an IP address",
        "SIGINT",
      );
      assert.equal(code, 130, seen);
      assert.match(seen, /Interrupted: cal undid what this command had begun/);
      assert.match(seen, /"code":"interrupted"/);
      assert.equal(seen.match(/^error: /gm)?.length, 1, seen);
      const st = await rig.vm(["status", n, "--json"]);
      assert.equal(st.records[0].state, "stopped", show(st));
      assert.equal((await rig.vm(["destroy", n, "--yes"])).code, 0);
    });

    it("SIGKILL: the half-made workspace is reported and cleanable", async () => {
      const n = rig.name("killed");
      await killDuringClone(n, "SIGKILL");
      // The orphaned `tart clone` may still finish; either way cal must report and clean it.
      const list = await rig.vm(["list", "--json"]);
      const rec = list.records.find((r) => r.workspace === n);
      assert.equal(rec?.state, "broken", show(list));
      assert.match(String(rec?.problem), /init did not finish/);
      const start = await rig.vm(["start", n]);
      assert.equal(start.code, 4, show(start));
      assert.match(start.stderr, /init was interrupted/);
      const c = await rig.vm(["cleanup", "--yes"]);
      assert.equal(c.code, 0, show(c));
      assert.ok(c.records.some((r) => r.workspace === n));
      assert.equal((await rig.vm(["status", n])).code, 3);
      const init = await rig.vm(["init", n]);
      assert.equal(init.code, 0, show(init));
    });
  },
);

describe("the cal dispatcher", () => {
  let rig: Rig;
  before(async () => (rig = await Rig.create()));
  after(async () => await rig.close());

  it("maps cal isolation, cal iso and cal vm onto cal-vm", async () => {
    for (const args of [["isolation", "list"], ["iso", "list"], ["vm", "list"]]) {
      const r = await rig.cal([...args, "--json"]);
      assert.equal(r.code, 0, `${args.join(" ")}: ${show(r)}`);
    }
    const bad = await rig.cal(["isolation", "frobnicate"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Known verbs: init, start/);
  });

  it("hands calendar invocations to the system's cal(1)", async () => {
    const stub = join(rig.root, "calendar");
    await Deno.writeTextFile(stub, '#!/bin/sh\necho "calendar: $*"\n', { mode: 0o755 });
    for (const args of [["2026"], ["11", "2026"], ["-y"], ["-3"]]) {
      const r = await rig.cal(args, { env: { CAL_CALENDAR: stub } });
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, `calendar: ${args.join(" ")}\n`);
    }
  });

  it("unknown options are usage errors (exit 2) with the next step", async () => {
    const r = await rig.vm(["list", "--frob"]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /unknown option '--frob'/);
    assert.match(r.stderr, /cal-vm --help/);
    assert.equal(r.stderr.match(/^error: /gm)?.length, 1, `said once: ${r.stderr}`);
    assert.equal(parseNdjson(r.stderr).filter((x) => x.kind === "error").length, 1, show(r));
  });
});
