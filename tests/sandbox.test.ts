/**
 * The sandbox provider's isolation, proved from inside: the host's home, cal's own checkout and
 * other workspaces are unreadable and unwritable; `rm -rf ~` inside harms nothing outside and a
 * snapshot brings it back; `--network none` cuts the network; links the guest makes are never
 * written through; a deleted machine folder or pid file is reported and cleaned up; killed
 * copies are found as leftovers.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Rig, show } from "./rig_env.ts";
import { REPO } from "./helpers.ts";
import { SandboxProvider } from "../lib/providers/sandbox.ts";

const linux = Deno.build.os === "linux";

describe("sandbox isolation", { skip: !linux && "the sandbox provider needs Linux" }, () => {
  let rig: Rig;
  let ws: string;
  let other: string;
  let hostFile: string;
  before(async () => {
    rig = await Rig.create("", "sandbox");
    [ws, other] = [rig.name("boxed"), rig.name("neighbour")];
    for (const n of [ws, other]) {
      assert.equal((await rig.vm(["init", n, "--provider", "sandbox"])).code, 0);
      assert.equal((await rig.vm(["start", n])).code, 0);
    }
    hostFile = join(rig.env.HOME, "host-secret.txt");
    await Deno.writeTextFile(hostFile, "host data\n");
    assert.equal((await rig.vm(["ssh", other, "echo neighbour > ~/mine.txt"])).code, 0);
  });
  after(async () => await rig.close());

  it("status, list and the record say what the isolation is", async () => {
    const r = await rig.cal(["isolation", "status", ws, "--human"]);
    assert.match(
      r.stdout,
      /^Isolation: Linux namespaces \(bubblewrap\), not a VM: the kernel is shared$/m,
    );
    const j = await rig.vm(["status", ws, "--json"]);
    assert.equal(j.records[0].provider, "sandbox");
  });

  it("host paths are unreadable and unwritable from inside", async () => {
    const otherState = join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${other}`);
    const targets = [
      rig.env.HOME,
      hostFile,
      rig.env.CAL_HOME,
      REPO,
      otherState,
      "/root",
      "/work",
      "/home",
      // Through pid 1's root: the guest's own pid 1 may show its own root (whose /etc is the
      // host's, read-only, by design), never the host's folders.
      join("/proc/1/root", REPO),
      "/proc/1/root/root",
      join("/proc/1/root", rig.env.HOME),
    ];
    for (const t of targets) {
      const r = await rig.vm([
        "exec",
        ws,
        "--",
        "sh",
        "-c",
        'cat "$1" 2>/dev/null || ls "$1" 2>/dev/null && echo READABLE; touch "$1/x" 2>/dev/null && echo WRITABLE; true',
        "probe",
        t,
      ]);
      assert.equal(r.code, 0, show(r));
      assert.doesNotMatch(
        r.stdout,
        /READABLE|WRITABLE|host data/,
        `${t} is visible inside: ${r.stdout}`,
      );
    }
    const mine = await rig.vm(["exec", ws, "--", "sh", "-c", "cat ~/mine.txt 2>&1"]);
    assert.doesNotMatch(mine.stdout, /neighbour/, "another workspace's home");
  });

  it("rm -rf ~ inside leaves the host untouched, and a snapshot restore brings it back", async () => {
    assert.equal(
      (await rig.vm(["ssh", ws, "mkdir -p ~/project && echo precious > ~/project/a.txt"])).code,
      0,
    );
    assert.equal((await rig.snap(["create", ws, "--name", "before"])).code, 0);
    const wipe = await rig.vm(["ssh", ws, "rm -rf ~/* ~/.[!.]* 2>/dev/null; ls -A ~ | wc -l"]);
    assert.equal(wipe.stdout.trim(), "0");
    assert.equal(await Deno.readTextFile(hostFile), "host data\n");
    assert.ok((await Deno.stat(join(REPO, "deno.json"))).isFile);
    const neighbour = await rig.vm(["ssh", other, "cat ~/mine.txt"]);
    assert.equal(neighbour.stdout, "neighbour\n");
    const r = await rig.snap(["restore", ws, "--name", "before", "--force"]);
    assert.equal(r.code, 0, show(r));
    const back = await rig.vm(["ssh", ws, "cat ~/project/a.txt"]);
    assert.equal(back.stdout, "precious\n");
  });

  it("tools install into the workspace's own prefixes", async () => {
    const r = await rig.vm([
      "ssh",
      ws,
      "mkdir -p ~/.local/bin && printf '#!/bin/sh\\necho mine\\n' > ~/.local/bin/mytool && chmod +x ~/.local/bin/mytool && mytool && touch /opt/homebrew/x && touch /usr/local/y && echo ok",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "mine\nok\n");
    const onHost = await new Deno.Command("sh", {
      args: ["-c", "command -v mytool; ls /usr/local/y 2>&1"],
      stdout: "piped",
    }).output();
    assert.doesNotMatch(new TextDecoder().decode(onHost.stdout), /mytool$|^\/usr\/local\/y$/m);
  });

  it("/tmp is writable, and ~/.cargo/bin and ~/go/bin are on PATH (commands and login shells)", async () => {
    const setup = "touch /tmp/x /var/tmp/y && mkdir -p ~/.cargo/bin ~/go/bin && " +
      "printf '#!/bin/sh\\necho cargo-tool\\n' > ~/.cargo/bin/mycargo && " +
      "printf '#!/bin/sh\\necho go-tool\\n' > ~/go/bin/mygo && chmod +x ~/.cargo/bin/mycargo ~/go/bin/mygo";
    assert.equal((await rig.vm(["ssh", ws, setup])).code, 0);
    const direct = await rig.vm(["ssh", ws, "mycargo && mygo"]);
    assert.equal(direct.stdout, "cargo-tool\ngo-tool\n", show(direct));
    const login = await rig.vm([
      "ssh",
      ws,
      `"$SHELL" -l -c 'mycargo && mygo && cat <<EOF
heredoc
EOF'`,
    ]);
    assert.equal(login.stdout, "cargo-tool\ngo-tool\nheredoc\n", show(login));
  });

  it("npm installs a package into the workspace's prefix, offline, and it runs", async () => {
    const make = [
      "set -e; mkdir -p ~/src/hello-cal/bin; cd ~/src/hello-cal",
      `printf '%s' '{"name":"hello-cal","version":"1.0.0","bin":{"hello-cal":"bin/hello.js"}}' > package.json`,
      `printf '#!/usr/bin/env node\\nconsole.log("hello from npm")\\n' > bin/hello.js`,
      "npm pack --silent >/dev/null && npm install -g --offline --silent ./hello-cal-1.0.0.tgz",
      "command -v hello-cal && hello-cal",
    ].join("\n");
    const r = await rig.vm(["ssh", ws, make]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "/Users/admin/.local/bin/hello-cal\nhello from npm\n");
  });

  it("pip installs a package into the workspace's own site (the host's Python is externally managed)", async (t) => {
    const pip = await rig.vm(["ssh", ws, "python3 -m pip --version"]);
    if (pip.code !== 0) {
      return t.skip("no pip for the host's python3 (apt-get install python3-pip)");
    }
    const make = [
      "set -e; mkdir -p ~/src/hellopy; cd ~/src/hellopy",
      `printf 'def main():\\n    print("hello from pip")\\n' > hellocal.py`,
      `printf 'from setuptools import setup\\nsetup(name="hellocal", version="1.0", py_modules=["hellocal"], entry_points={"console_scripts": ["hello-pip=hellocal:main"]})\\n' > setup.py`,
      "python3 -m pip install --no-index --no-build-isolation --quiet . 2>&1",
      "command -v hello-pip && hello-pip",
    ].join("\n");
    const r = await rig.vm(["ssh", ws, make]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "/Users/admin/.local/bin/hello-pip\nhello from pip\n");
  });

  it("the host's loopback: cut by default (allowlist) and by --network none; --network open shares it", async () => {
    // A TCP server on the host's loopback: reachable from the host's network, not from a namespace
    // of the guest's own.
    const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (server.addr as Deno.NetAddr).port;
    (async () => {
      for await (const c of server) c.close();
    })();
    const probe = `echo RAN; exec 3<>/dev/tcp/127.0.0.1/${port} && echo CONNECTED`;
    const reach = async (n: string) => {
      const r = await rig.vm(["exec", n, "--", "bash", "-c", probe + " 2>&1; true"]);
      assert.match(r.stdout, /^RAN$/m, `the command must run in the guest: ${show(r)}`);
      return /CONNECTED/.test(r.stdout);
    };
    try {
      assert.equal(await reach(ws), false, "the default network reached the host's loopback");
      for (const [mode, reaches] of [["none", false], ["open", true], ["host", true]] as const) {
        const n = rig.name(`net-${mode}`);
        const made = await rig.vm(["init", n, "--provider", "sandbox", "--network", mode]);
        assert.equal(made.code, 0, show(made));
        const started = await rig.vm(["start", n]);
        assert.equal(started.code, 0, show(started));
        assert.equal(await reach(n), reaches, `--network ${mode}`);
        assert.equal((await rig.vm(["destroy", n, "--yes", "--force"])).code, 0);
      }
      const bad = await rig.vm(["init", rig.name("t1"), "--network", "sideways"]);
      assert.equal(bad.code, 2, show(bad));
      assert.match(bad.stderr, /allowlist, open or none/);
    } finally {
      server.close();
    }
  });

  it("a machine folder deleted by hand: status reports it, destroy cleans up", async () => {
    assert.equal((await rig.vm(["stop", other])).code, 0);
    await rig.deleteMachine(`cal-${other}`);
    const s = await rig.vm(["status", other, "--json"]);
    assert.equal(s.records[0].state, "missing");
    assert.match(String(s.records[0].problem), /is gone/);
    const d = await rig.vm(["destroy", other, "--yes"]);
    assert.equal(d.code, 0, show(d));
    assert.equal((await rig.vm(["status", other])).code, 3);
  });

  it("start says when CPU and memory limits cannot be enforced (they need systemd)", async () => {
    const n = rig.name("limits");
    assert.equal((await rig.vm(["init", n, "--provider", "sandbox", "--cpu", "2"])).code, 0);
    const started = await rig.vm(["start", n]);
    assert.equal(started.code, 0, show(started));
    const systemd = await Deno.stat("/run/systemd/system").then(() => true, () => false);
    const warned = /limits are not enforced: this host has no systemd/.test(started.stderr);
    assert.equal(warned, !systemd, show(started));
    assert.equal((await rig.vm(["destroy", n, "--yes", "--force"])).code, 0);
  });

  it("a machine folder deleted by hand while it runs: destroy --force stops what still runs", async () => {
    const n = rig.name("orphan");
    assert.equal((await rig.vm(["init", n, "--provider", "sandbox"])).code, 0);
    assert.equal((await rig.vm(["start", n])).code, 0);
    const dir = join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${n}`);
    const processes = async () => {
      const found: number[] = [];
      for await (const e of Deno.readDir("/proc")) {
        const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
        if (Number(e.name) && cmd.includes(dir + "/")) found.push(Number(e.name));
      }
      return found;
    };
    assert.ok((await processes()).length > 0, "the sandbox runs");
    await rig.deleteMachine(`cal-${n}`);
    const s = await rig.vm(["status", n, "--json"]);
    assert.equal(s.records[0].state, "running", show(s));
    const d = await rig.vm(["destroy", n, "--yes", "--force"]);
    assert.equal(d.code, 0, show(d));
    assert.deepEqual(await processes(), [], "nothing of it still runs");
    assert.equal((await rig.vm(["status", n])).code, 3);
  });

  it("links the guest makes at ~/.ssh and ~/.ssh/authorized_keys are never written through (start, snapshot)", async () => {
    const n = rig.name("linker");
    assert.equal((await rig.vm(["init", n, "--provider", "sandbox"])).code, 0);
    assert.equal((await rig.vm(["start", n])).code, 0);
    const victimFile = join(rig.root, "victim.txt");
    const victimDir = join(rig.root, "victim-dir");
    await Deno.writeTextFile(victimFile, "host file\n");
    await Deno.chmod(victimFile, 0o644);
    await Deno.mkdir(victimDir);
    await Deno.writeTextFile(join(victimDir, "kept.txt"), "host folder\n");
    await Deno.chmod(victimDir, 0o755);
    const past = new Date("2020-01-02T03:04:05Z");
    for (const v of [victimFile, victimDir]) await Deno.utime(v, past, past);
    const state = async (p: string) => {
      const i = await Deno.lstat(p);
      const entries = i.isDirectory
        ? [...Deno.readDirSync(p)].map((e) => e.name).sort().join(",")
        : await Deno.readTextFile(p);
      return { mode: i.mode! & 0o7777, mtime: i.mtime?.getTime(), uid: i.uid, entries };
    };
    const before = { file: await state(victimFile), dir: await state(victimDir) };
    const untouched = async (when: string) =>
      assert.deepEqual(
        { file: await state(victimFile), dir: await state(victimDir) },
        before,
        `a host victim changed (${when})`,
      );
    // The guest cannot see the host's paths, but its links name them all the same.
    for (
      const link of [
        `mkdir -p ~/.ssh && rm -f ~/.ssh/authorized_keys && ln -s ${victimFile} ~/.ssh/authorized_keys`,
        `rm -rf ~/.ssh && ln -s ${victimDir} ~/.ssh`,
      ]
    ) {
      assert.equal((await rig.vm(["ssh", n, link])).code, 0);
      assert.equal((await rig.vm(["stop", n])).code, 0);
      const started = await rig.vm(["start", n]);
      assert.equal(started.code, 0, show(started));
      await untouched(`start after: ${link}`);
      const snap = await rig.snap(["create", n, "--name", `s${Date.now()}`]);
      assert.equal(snap.code, 0, show(snap));
      await untouched(`snapshot of a running one after: ${link}`);
      assert.equal((await rig.vm(["ssh", n, "true"])).code, 0, "cal's login needs no ~/.ssh");
    }
    assert.equal((await rig.vm(["destroy", n, "--yes", "--force"])).code, 0);
    await untouched("destroy");
  });

  it("a missing run.pid still reads as running; destroy refuses, --force stops it before deleting", async () => {
    const n = rig.name("nopid");
    assert.equal((await rig.vm(["init", n, "--provider", "sandbox"])).code, 0);
    assert.equal((await rig.vm(["start", n])).code, 0);
    const dir = join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${n}`);
    const processes = async () => {
      const found: number[] = [];
      for await (const e of Deno.readDir("/proc")) {
        const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
        if (Number(e.name) && cmd.includes(dir + "/")) found.push(Number(e.name));
      }
      return found;
    };
    await Deno.remove(join(dir, "run.pid"));
    const s = await rig.vm(["status", n, "--json"]);
    assert.equal(s.records[0].state, "running", show(s));
    const l = await rig.vm(["list", "--json"]);
    assert.equal(l.records.find((r) => r.workspace === n)?.state, "running", show(l));
    assert.equal((await rig.vm(["ssh", n, "true"])).code, 0, "still reachable");
    // As for any running workspace: destroy refuses (its folder stays), --force stops it first.
    const refused = await rig.vm(["destroy", n, "--yes"]);
    assert.equal(refused.code, 4, show(refused));
    assert.match(refused.stderr, /is running/);
    assert.ok((await Deno.lstat(join(dir, "guest"))).isDirectory, "its folder is still there");
    assert.equal((await rig.vm(["ssh", n, "true"])).code, 0, "and it still runs");
    const d = await rig.vm(["destroy", n, "--yes", "--force"]);
    assert.equal(d.code, 0, show(d));
    assert.deepEqual(await processes(), [], "nothing of it still runs");
    assert.equal(await Deno.lstat(dir).then(() => "there", () => "gone"), "gone");
    assert.equal((await rig.vm(["status", n])).code, 3);
  });

  it("leftovers: killed copies and folders without machine.json, never a running machine", async () => {
    const saved = Deno.env.get("CAL_HOME");
    Deno.env.set("CAL_HOME", rig.env.CAL_HOME);
    try {
      const p = new SandboxProvider();
      const root = p.root();
      const dead = join(root, ".tmp-999999999-dead");
      const busy = join(root, `.tmp-${Deno.pid}-busy`);
      const half = join(root, "cal-half");
      for (const d of [dead, busy, half]) await Deno.mkdir(join(d, "guest"), { recursive: true });
      const found = await p.leftovers();
      assert.ok(found.includes(dead) && found.includes(half), JSON.stringify(found));
      assert.ok(!found.includes(busy), "a copy whose cal still runs is no leftover");
      assert.ok(!found.some((f) => f.endsWith(`cal-${ws}`)), "a machine is no leftover");
      await assert.rejects(p.removeLeftover(p.dir(`cal-${ws}`)), /not a leftover/);
      await assert.rejects(p.removeLeftover(busy), /not a leftover/);
      for (const f of [dead, half]) await p.removeLeftover(f);
      for (const f of [dead, half]) {
        assert.equal(await Deno.lstat(f).then(() => "there", () => "gone"), "gone");
      }
      assert.equal((await rig.vm(["ssh", ws, "true"])).code, 0, "the running machine is intact");
      await Deno.remove(busy, { recursive: true });
    } finally {
      if (saved === undefined) Deno.env.delete("CAL_HOME");
      else Deno.env.set("CAL_HOME", saved);
    }
  });
});
