/**
 * Small reliability fixes a new user ran into (issue 16): each test failed on the code before
 * its fix.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { REAL_TART, Rig, show } from "./rig_env.ts";
import { getDenoDir, REPO, runTool, tempDir } from "./helpers.ts";
import { hasTmux, tmux, waitFor } from "./tmux.ts";
import { controlDirFits, Guest } from "../lib/guest/ssh.ts";

describe("ssh's control socket", () => {
  it("the limit counts ssh's whole socket path: folder, /, %C, its temporary suffix, NUL", () => {
    const limit = Deno.build.os === "linux" ? 108 : 104;
    // A folder of (limit - 59) bytes is the longest that fits.
    assert.equal(controlDirFits("/" + "a".repeat(limit - 60)), true);
    assert.equal(controlDirFits("/" + "a".repeat(limit - 59)), false);
    // Bytes, not characters: é is two.
    assert.equal(controlDirFits("/" + "é".repeat((limit - 60) / 2)), true);
    assert.equal(controlDirFits("/" + "é".repeat((limit - 58) / 2)), false);
  });

  it("a local ssh failure is told apart from a guest not yet up, in ssh's words", async () => {
    const home = await tempDir();
    const saved = Deno.env.get("CAL_HOME");
    Deno.env.set("CAL_HOME", home);
    try {
      const g = new Guest("w", { host: "127.0.0.1", port: 1 }, "u");
      await g.prepare();
      const refused = await g.probe(2);
      assert.equal(refused.ok, false);
      assert.equal(refused.local, false, refused.reason);
      await Deno.writeTextFile(g.configFile, "  NoSuchOptionCal yes\n", { append: true });
      const bad = await g.probe(2);
      assert.equal(bad.local, true, bad.reason);
      assert.match(g.sshError(bad.reason).message, /Bad configuration option: nosuchoptioncal/i);
    } finally {
      if (saved === undefined) Deno.env.delete("CAL_HOME");
      else Deno.env.set("CAL_HOME", saved);
      await Deno.remove(home, { recursive: true });
    }
  });
});

describe("start with a CAL_HOME whose run folder is 46 to 58 characters long", {
  skip: REAL_TART && "the fake tart's guests are enough",
}, () => {
  let rig: Rig;
  let calHome: string;
  before(async () => {
    rig = await Rig.create();
    // The run folder is 55 characters: over Linux's and macOS's real limit, under the old check.
    const run = join(rig.root, "h".repeat(Math.max(1, 55 - rig.root.length - 10)), ".cal", "run");
    calHome = join(run, "..");
    assert.equal(run.length, 55, run);
    await Deno.mkdir(calHome, { recursive: true });
    await Deno.copyFile(join(rig.env.CAL_HOME, "config.yaml"), join(calHome, "config.yaml"));
  });
  after(async () => await rig.close());

  it("starts (the control socket goes to a short folder)", async () => {
    const n = rig.name("longhome");
    const env = { CAL_HOME: calHome };
    assert.equal((await rig.vm(["init", n], { env })).code, 0);
    const t0 = Date.now();
    const r = await rig.vm(["start", n, "--timeout", "25"], { env });
    assert.equal(r.code, 0, show(r) + ` after ${Date.now() - t0} ms`);
    assert.equal((await rig.vm(["ssh", n, "true"], { env })).code, 0);
    await rig.vm(["stop", n, "--force"], { env });
  });
});

describe("destroy's question", { skip: !hasTmux && "tmux is not installed" }, () => {
  let rig: Rig;
  const session = `cal-rel-${crypto.randomUUID().slice(0, 8)}`;
  before(async () => (rig = await Rig.create()));
  after(async () => {
    await tmux("kill-session", "-t", session);
    await rig.close();
  });

  it("without a terminal: exit 2, the question quoted whole", async () => {
    const n = rig.name("asked");
    assert.equal((await rig.vm(["init", n])).code, 0);
    const r = await rig.vm(["destroy", n]);
    assert.equal(r.code, 2, show(r));
    assert.match(
      r.stderr,
      /cal needs a confirmation and there is no terminal to ask: Destroy workspace "asked"\? Everything inside it is lost\.\n/,
    );
    assert.doesNotMatch(r.stderr, /lost\.:/);
  });

  it("answered no: the workspace is kept, exit 2, and no error: is printed", async () => {
    const n = rig.name("kept");
    assert.equal((await rig.vm(["init", n])).code, 0);
    const env = Object.entries({ ...rig.env, DENO_DIR: await getDenoDir(), TERM: "xterm" })
      .map(([k, v]) => `${k}=${v}`);
    await tmux(
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "120",
      "-y",
      "30",
      "env",
      ...env,
      "sh",
      "-c",
      `"$@"; echo "[exit $?]"; sleep 60`,
      "cal-rel",
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      join(REPO, "commands", "cal-vm.ts"),
      "destroy",
      n,
    );
    await waitFor(session, /Everything inside it is lost\. \[y\/N\]/);
    await tmux("send-keys", "-t", session, "n", "Enter");
    const screen = await waitFor(session, /\[exit \d+\]/);
    assert.match(screen, /\[exit 2\]/, screen);
    assert.match(screen, /^Kept workspace "kept"\.$/m, screen);
    assert.match(screen, /^Nothing was changed\.$/m, screen);
    assert.doesNotMatch(screen, /error/i, screen);
    assert.equal((await rig.vm(["status", n])).code, 0, "the workspace is still there");
  });
});

describe("a mistyped cal verb", () => {
  it("cal isolation strat suggests start, as cal-vm strat does; a mistyped noun too", async () => {
    const home = await tempDir();
    try {
      const env = { HOME: home, CAL_HOME: join(home, ".cal") };
      const r = await runTool("cal", ["isolation", "strat", "ws"], env);
      assert.equal(r.code, 2, show(r));
      assert.match(
        r.stderr,
        /"strat" is not a cal isolation verb\. Did you mean `cal isolation start`\?/,
      );
      const n = await runTool("cal", ["agnet", "list"], env);
      assert.equal(n.code, 2, show(n));
      assert.match(n.stderr, /Did you mean `cal agent`\?/);
      const far = await runTool("cal", ["isolation", "zzz"], env);
      assert.equal(far.code, 2, show(far));
      assert.doesNotMatch(far.stderr, /Did you mean/);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  });
});
