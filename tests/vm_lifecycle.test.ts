/**
 * cal-vm end to end on the rig: every command of the foundation issue's "What a user gets",
 * through `cal isolation`, `cal iso`, `cal vm` and `cal-vm`, against a real guest.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PROVIDERS, REAL_TART, Rig, show, type TestProvider } from "./rig_env.ts";
import { REPO } from "./helpers.ts";

function suite(provider: TestProvider) {
  describe(`workspace lifecycle (${provider})`, () => {
    let rig: Rig;
    let ws: string;
    before(async () => {
      rig = await Rig.create("", provider);
      ws = rig.name("my-workspace");
    });
    after(async () => await rig.close());

    it("init creates the VM with the requested resources", async () => {
      const r = await rig.cal([
        "isolation",
        "init",
        ws,
        "--cpu",
        "6",
        "--memory",
        "16384",
        "--disk",
        "150",
      ]);
      assert.equal(r.code, 0, show(r));
      const [rec] = r.records;
      assert.equal(rec.kind, "workspace");
      assert.equal(rec.workspace, ws);
      assert.equal(rec.state, "stopped");
      assert.deepEqual([rec.cpu, rec.memory, rec.disk], [6, 16384, 150]);
      if (provider === "tart") {
        const got = await rig.tart(["get", `cal-${ws}`, "--format", "json"]);
        const info = JSON.parse(got.stdout);
        assert.deepEqual([info.CPU, info.Memory, info.Disk], [6, 16384, 150]);
      }
      assert.deepEqual(await rig.machineNames(), [`cal-${ws}`]);
    });

    it("a second init of the same name is refused with exit 4", async () => {
      const r = await rig.vm(["init", ws]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /already exists/);
    });

    it("start waits for a real SSH login and reports the IP", async () => {
      const r = await rig.cal(["isolation", "start", ws]);
      assert.equal(r.code, 0, show(r));
      const [rec] = r.records;
      assert.equal(rec.state, "running");
      assert.match(String(rec.ip), /^\d+\.\d+\.\d+\.\d+$/);
      assert.match(r.stderr, /"event":"ready"/);
    });

    it("the output folder is shared into the guest", async () => {
      const r = await rig.vm(["ssh", ws, 'ls "/Volumes/My Shared Files/output"']);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /builds/);
      const w = await rig.vm([
        "ssh",
        ws,
        'echo built > "/Volumes/My Shared Files/output/builds/app.txt"',
      ]);
      assert.equal(w.code, 0, show(w));
      const host = await Deno.readTextFile(`${rig.env.HOME}/cal-output/${ws}/builds/app.txt`);
      assert.equal(host, "built\n", "the guest's write shows up on the host");
    });

    it("a second start is refused with exit 4", async () => {
      const r = await rig.cal(["iso", "start", ws]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /already running/);
    });

    it("status shows state, IP, resources, agent and environments", async () => {
      const r = await rig.cal(["isolation", "status", ws, "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`^VM: ${ws} \\(running\\)`, "m"));
      assert.match(r.stdout, /^IP: \d+\.\d+\.\d+\.\d+$/m);
      assert.match(r.stdout, /^Resources: 6 CPU, 16384 MB memory, 150 GB disk/m);
      assert.match(r.stdout, /^Agent: \(none\)$/m);
      assert.match(r.stdout, /^Environments: \(none\)$/m);
      const j = await rig.vm(["status", ws, "--json"]);
      assert.equal(j.records[0].state, "running");
    });

    it("ssh runs one command line and passes its exit code through", async () => {
      const r = await rig.cal([
        "isolation",
        "ssh",
        ws,
        provider === "tart" ? "sw_vers" : "uname -s",
      ]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, provider === "tart" ? /ProductName:\s+macOS/ : /^Linux$/m);
      const seven = await rig.cal(["isolation", "ssh", ws, "echo out; echo err >&2; exit 7"]);
      assert.equal(seven.code, 7);
      assert.equal(seven.stdout, "out\n");
      assert.match(seven.stderr, /err/);
    });

    it("exec passes hostile arguments byte for byte", async () => {
      const argv = [
        "printf",
        "%s\\n",
        "a b",
        "$(touch pwned)",
        "it's",
        "`id`",
        "ünï ✓",
        "x;y",
        "-rf",
      ];
      const r = await rig.vm(["exec", ws, "--", ...argv]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, argv.slice(2).join("\n") + "\n");
      const pwned = await rig.vm(["exec", ws, "--", "ls", "-a"]);
      assert.doesNotMatch(pwned.stdout, /pwned/);
    });

    it("ip prints the bare address, like tart ip", async () => {
      const r = await rig.vm(["ip", ws]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^\d+\.\d+\.\d+\.\d+\n$/);
    });

    it("health checks every layer", async () => {
      const r = await rig.vm(["health", ws, "--json"]);
      assert.equal(r.code, 0, show(r));
      const checks = Object.fromEntries(r.records.map((c) => [c.check, c.ok]));
      for (const c of ["metadata", "machine", "running", "address", "ssh", "disk", "output"]) {
        assert.equal(checks[c], true, `${c}: ${show(r)}`);
      }
    });

    it("list prints NDJSON that parses, and a table on request", async () => {
      const r = await rig.vm(["list"]);
      assert.equal(r.code, 0, show(r));
      for (const line of r.stdout.trim().split("\n")) JSON.parse(line);
      assert.ok(r.records.some((x) => x.workspace === ws && x.state === "running"));
      const t = await rig.cal(["vm", "list", "--human"]);
      assert.match(t.stdout, /^NAME\s+STATE\s+PROVIDER/);
      assert.match(t.stdout, new RegExp(`^${ws}\\s+running\\s+${provider}`, "m"));
    });

    it("destroy of a running workspace is refused with exit 4, nothing changed", async () => {
      const r = await rig.cal(["isolation", "destroy", ws, "--yes"]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /is running/);
      const s = await rig.vm(["status", ws, "--json"]);
      assert.equal(s.records[0].state, "running");
    });

    it("files survive stop and start (the guest is flushed before the stop)", async () => {
      const w = await rig.vm(["ssh", ws, "echo kept > ~/note.txt"]);
      assert.equal(w.code, 0, show(w));
      const stop = await rig.cal(["isolation", "stop", ws]);
      assert.equal(stop.code, 0, show(stop));
      assert.equal(stop.records[0].state, "stopped");
      const again = await rig.vm(["stop", ws]);
      assert.equal(again.code, 4, show(again));
      const start = await rig.vm(["start", ws]);
      assert.equal(start.code, 0, show(start));
      const r = await rig.vm(["ssh", ws, "cat ~/note.txt"]);
      assert.equal(r.stdout, "kept\n");
    });

    it("stop --force stops at once", async () => {
      const r = await rig.cal(["isolation", "stop", ws, "--force"]);
      assert.equal(r.code, 0, show(r));
      const s = await rig.vm(["status", ws, "--json"]);
      assert.equal(s.records[0].state, "stopped");
    });

    it("ssh to a stopped workspace says so with exit 4", async () => {
      const r = await rig.vm(["ssh", ws, "true"]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /not running|stopped/);
    });

    it("cleanup --stopped removes stopped workspaces, and destroy removes the rest", async () => {
      const other = rig.name("other");
      assert.equal((await rig.vm(["init", other])).code, 0);
      const c = await rig.cal(["isolation", "cleanup", "--stopped", "--yes"]);
      assert.equal(c.code, 0, show(c));
      const names = c.records.map((r) => r.workspace).sort();
      assert.deepEqual(names, [ws, other].sort());
      assert.equal((await rig.vm(["status", ws])).code, 3);
      assert.ok(!(await rig.machineNames()).includes(`cal-${ws}`));
    });

    it("cleanup --all removes running workspaces too", async () => {
      const [a, b] = [rig.name("all-a"), rig.name("all-b")];
      for (const n of [a, b]) assert.equal((await rig.vm(["init", n])).code, 0);
      assert.equal((await rig.vm(["start", a])).code, 0);
      const c = await rig.cal(["isolation", "cleanup", "--all", "--yes"]);
      assert.equal(c.code, 0, show(c));
      assert.deepEqual(c.records.map((r) => r.workspace).sort(), [a, b].sort());
      for (const n of [a, b]) assert.equal((await rig.vm(["status", n])).code, 3);
      assert.ok(!(await rig.machineNames()).some((m) => m === `cal-${a}` || m === `cal-${b}`));
    });

    it(
      provider === "tart"
        ? "start --vnc also serves the screen, and says where"
        : "start --vnc is refused: a sandbox has no screen",
      async () => {
        const n = rig.name("screen");
        assert.equal((await rig.vm(["init", n])).code, 0);
        const r = await rig.vm(["start", n, "--vnc"]);
        if (provider === "tart") {
          assert.equal(r.code, 0, show(r));
          assert.match(r.stderr, /"event":"vnc".*"url":"vnc:\/\/[^"]+"/);
          assert.ok((await rig.tartCalls()).some((a) => a[0] === "run" && a.includes("--vnc")));
          assert.equal((await rig.vm(["stop", n, "--force"])).code, 0);
        } else {
          assert.equal(r.code, 2, show(r));
          assert.match(r.stderr, /has no screen for --vnc/);
          assert.equal((await rig.vm(["status", n, "--json"])).records[0].state, "stopped");
        }
        assert.equal((await rig.vm(["destroy", n, "--yes"])).code, 0);
      },
    );

    it("destroy asks, and refuses without a terminal unless --yes", async () => {
      const d = rig.name("doomed");
      assert.equal((await rig.vm(["init", d])).code, 0);
      const refused = await rig.cal(["isolation", "destroy", d]);
      assert.equal(refused.code, 2, show(refused));
      assert.match(refused.stderr, /--yes/);
      const r = await rig.cal(["isolation", "destroy", d, "--yes"]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.records[0].state, "destroyed");
      assert.equal((await rig.vm(["status", d])).code, 3);
    });
  });

  describe(`workspace lifecycle, bad input (${provider})`, () => {
    let rig: Rig;
    before(async () => (rig = await Rig.create("", provider)));
    after(async () => await rig.close());

    it("refuses hostile names with exit 2 before any tart call", async () => {
      for (const bad of ["../x", "a b", "$(touch pwned)", "-rf", "", "x".repeat(300)]) {
        const r = await rig.vm(["init", "--", bad]);
        assert.equal(r.code, 2, `${JSON.stringify(bad)}: ${show(r)}`);
      }
      assert.deepEqual(await rig.tartCalls(), []);
      assert.deepEqual(await rig.machineNames(), []);
    });

    it("numbers out of range are usage errors, before anything is made", async () => {
      const cases = [
        ["vm", "init", "big", "--cpu", "99999999999999999999"],
        ["vm", "init", "big", "--memory", "0"],
        ["vm", "init", "big", "--disk", "-1"],
        ["vm", "start", "big", "--timeout", "3000000"],
        ["agent", "run", "big", "--prompt", "x", "--timeout", "3000000"],
      ];
      for (const args of cases) {
        const r = await rig.cal(args);
        assert.equal(r.code, 2, `${args.join(" ")}: ${show(r)}`);
        assert.match(r.stderr, /must be a positive whole number|can be at most/);
      }
      assert.equal((await rig.vm(["status", "big"])).code, 3, "nothing was made");
    });

    it("an option given an empty value is a usage error, not 'not given'", async () => {
      const cases = [
        ["vm", "init", "blank", "--agent", ""],
        ["vm", "init", "blank", "--image", ""],
        ["snap", "cleanup", "blank", "--older-than", ""],
        ["gh", "clone", "blank", "--repo", "octo/app", "--new-branch", ""],
      ];
      for (const args of cases) {
        const r = await rig.cal(args);
        assert.equal(r.code, 2, `${args.join(" ")}: ${show(r)}`);
        assert.match(r.stderr, /was given an empty value/);
      }
      assert.equal((await rig.vm(["status", "blank"])).code, 3, "nothing was made");
    });

    it("an unknown workspace is exit 3", async () => {
      for (const verb of ["start", "stop", "status", "ip", "health", "destroy"]) {
        const r = await rig.vm([verb, "nope"]);
        assert.equal(r.code, 3, `${verb}: ${show(r)}`);
        assert.match(r.stderr, /No workspace named "nope"/);
      }
    });

    it("a malformed config.yaml names the file, line and column", async () => {
      const cfg = `${rig.env.CAL_HOME}/config.yaml`;
      const saved = await Deno.readTextFile(cfg);
      await Deno.writeTextFile(cfg, "isolation:\n  defaults:\n    vm:\n      cpus: 4\n");
      try {
        const r = await rig.vm(["init", "x"]);
        assert.equal(r.code, 2, show(r));
        assert.match(r.stderr, /config\.yaml:4:7: isolation\.defaults\.vm: unknown key "cpus"/);
      } finally {
        await Deno.writeTextFile(cfg, saved);
      }
    });

    it("a malformed vm.yaml names the file, line and column", async () => {
      const n = rig.name("badmeta");
      assert.equal((await rig.vm(["init", n])).code, 0);
      const file = `${rig.env.CAL_HOME}/isolation/vms/${n}/vm.yaml`;
      const text = await Deno.readTextFile(file);
      await Deno.writeTextFile(
        file,
        text.replace(/^resources:\n {2}cpu: \d+/m, "resources:\n  cpu: many"),
      );
      const r = await rig.vm(["status", n]);
      assert.equal(r.code, 2, show(r));
      assert.match(r.stderr, /vm\.yaml:\d+:\d+: resources\.cpu: /);
      const list = await rig.vm(["list", "--json"]);
      const rec = list.records.find((x) => x.workspace === n);
      assert.equal(rec?.state, "broken");
      assert.match(String(rec?.problem), /vm\.yaml:\d+:\d+/);
    });

    it("reads names from records on stdin with -", async () => {
      const a = rig.name("pipe-a");
      assert.equal((await rig.vm(["init", a])).code, 0);
      const listed = await rig.vm(["list", "--json"]);
      const stopped = listed.records.filter((r) => r.workspace === a).map((r) => JSON.stringify(r));
      const r = await rig.vm(["status", "-"], { stdin: stopped.join("\n") + "\n" });
      assert.equal(r.code, 0, show(r));
      assert.equal(r.records[0].workspace, a);
      const bad = await rig.vm(["status", "-"], { stdin: '{"kind":"workspace"}\n' });
      assert.equal(bad.code, 2, show(bad));
      // The listing verbs take them too.
      const stdin = stopped.join("\n") + "\n";
      const usage = await rig.snap(["disk-usage", "-"], { stdin });
      assert.equal(usage.records[0]?.workspace, a, show(usage));
      const snaps = await rig.snap(["list", "-"], { stdin });
      assert.equal(snaps.code, 0, show(snaps));
      // ... and answer as they do for the name itself.
      for (const verb of [["agent", "list"], ["gh", "status"], ["vm", "ip"]]) {
        const piped = await rig.cal([...verb, "-", "--json"], { stdin });
        const named = await rig.cal([...verb, a, "--json"]);
        assert.equal(piped.code, named.code, `${verb.join(" ")}: ${show(piped)}`);
        assert.deepEqual(piped.records, named.records, verb.join(" "));
      }
    });

    it("a closed pipe ends quietly", async () => {
      const out = await new Deno.Command("bash", {
        args: [
          "-o",
          "pipefail",
          "-c",
          `deno run -A --quiet commands/cal-vm.ts list --human | head -0`,
        ],
        env: rig.env,
        cwd: REPO,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(new TextDecoder().decode(out.stderr), "");
      assert.equal(out.code, 0);
    });

    it(
      "says how to install the provider's tool when it is missing",
      { skip: REAL_TART },
      async () => {
        const bin = await Deno.makeTempDir();
        // A PATH with deno but neither tart nor bwrap.
        await Deno.symlink(Deno.execPath(), `${bin}/deno`);
        const r = await rig.vm(["init", "x"], { env: { PATH: `${bin}:/nonexistent` } });
        assert.equal(r.code, 1, show(r));
        if (provider === "tart") {
          assert.match(r.stderr, /`tart` is not installed/);
          assert.match(r.stderr, /brew install cirruslabs\/cli\/tart/);
        } else {
          assert.match(r.stderr, /bubblewrap \(`bwrap`\) is not installed/);
          assert.match(r.stderr, /apt-get install bubblewrap/);
        }
        await Deno.remove(bin, { recursive: true });
      },
    );
  });
}

for (const provider of PROVIDERS) suite(provider);
