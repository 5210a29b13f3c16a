/** cal-snap on the rig: snapshots, restore, rollback, cleanup, disk usage, pipes, git safety. */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, Rig, show, type TestProvider } from "./rig_env.ts";

function suite(provider: TestProvider) {
  describe(`snapshots (${provider})`, () => {
    let rig: Rig;
    let ws: string;
    before(async () => {
      rig = await Rig.create("", provider);
      ws = rig.name("snappy");
      assert.equal((await rig.vm(["init", ws])).code, 0);
      assert.equal((await rig.vm(["start", ws])).code, 0);
    });
    after(async () => await rig.close());

    it("create on a running workspace pauses it for the copy and resumes it", async () => {
      assert.equal((await rig.vm(["ssh", ws, "echo before > ~/a.txt"])).code, 0);
      const r = await rig.cal(["isolation", "snapshot", "create", ws, "--name", "before-refactor"]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.records[0].snapshot, "before-refactor");
      assert.equal(r.records[0].auto, false);
      assert.match(r.stderr, /the session is interrupted/);
      const s = await rig.vm(["status", ws, "--json"]);
      assert.equal(s.records[0].state, "running");
    });

    it("list shows NAME CREATED SIZE", async () => {
      const r = await rig.cal(["isolation", "snapshot", "list", ws, "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^NAME\s+CREATED\s+SIZE\s+KIND$/m);
      assert.match(r.stdout, /^before-refactor\s+(\d+ seconds? ago|just now)\s+\d+ GB\s+manual$/m);
    });

    it("restore brings back the snapshot's files and keeps the snapshot", async () => {
      assert.equal((await rig.vm(["ssh", ws, "echo after > ~/b.txt; rm ~/a.txt"])).code, 0);
      const r = await rig.cal([
        "isolation",
        "snapshot",
        "restore",
        ws,
        "--name",
        "before-refactor",
      ]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout + r.stderr, /before-refactor/);
      const ls = await rig.vm(["ssh", ws, "ls ~"]);
      assert.match(ls.stdout, /a\.txt/);
      assert.doesNotMatch(ls.stdout, /b\.txt/);
      const list = await rig.snap(["list", ws, "--json"]);
      assert.deepEqual(list.records.map((x) => x.snapshot), ["before-refactor"]);
      assert.ok((await rig.machineNames()).includes(`cal-${ws}--before-refactor`));
    });

    it("restore prints how long it took", async () => {
      const r = await rig.snap(["restore", ws, "--name", "before-refactor", "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^Restored to snapshot: before-refactor \(\d+(\.\d)? seconds\)$/m);
    });

    it("refuses to restore over uncommitted or unpushed work without --force", async () => {
      const setup = "mkdir -p ~/workspace/app && cd ~/workspace/app && git init -q && " +
        "git -c user.email=a@b -c user.name=a commit -q --allow-empty -m one && echo x > new.txt";
      assert.equal((await rig.vm(["ssh", ws, setup])).code, 0);
      const r = await rig.snap(["restore", ws, "--name", "before-refactor"]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /workspace\/app: 1 uncommitted change, 1 unpushed commit/);
      assert.match(r.stderr, /--force/);
      const still = await rig.vm(["ssh", ws, "ls ~/workspace/app"]);
      assert.match(still.stdout, /new\.txt/, "nothing was touched");
      const forced = await rig.snap(["restore", ws, "--name", "before-refactor", "--force"]);
      assert.equal(forced.code, 0, show(forced));
      const gone = await rig.vm(["ssh", ws, "ls ~/workspace 2>&1"]);
      assert.doesNotMatch(gone.stdout, /app/);
    });

    it("over a running workspace SSH cannot reach: restore needs --force, and brings SSH back", async () => {
      await rig.breakSsh(ws);
      const r = await rig.snap(["restore", ws, "--name", "before-refactor"]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /could not be checked for unsaved work/);
      assert.match(r.stderr, /running but cannot be reached/);
      assert.match(r.stderr, /--force/);
      assert.notEqual((await rig.vm(["ssh", ws, "true"])).code, 0, "nothing was touched");
      const forced = await rig.snap(["restore", ws, "--name", "before-refactor", "--force"]);
      assert.equal(forced.code, 0, show(forced));
      assert.equal((await rig.vm(["ssh", ws, "true"])).code, 0, show(forced));
    });

    it("restore and delete of a missing snapshot are exit 3 and touch nothing", async () => {
      const before = (await rig.tartCalls()).length;
      const machines = await rig.machineNames();
      const r = await rig.snap(["restore", ws, "--name", "nope"]);
      assert.equal(r.code, 3, show(r));
      assert.match(r.stderr, /no snapshot named "nope"/);
      assert.match(r.stderr, /before-refactor/);
      const d = await rig.snap(["delete", ws, "--name", "nope"]);
      assert.equal(d.code, 3, show(d));
      assert.deepEqual(await rig.machineNames(), machines);
      const calls = (await rig.tartCalls()).slice(before);
      assert.ok(
        !calls.some((a) => ["delete", "clone", "stop", "rename"].includes(a[0])),
        JSON.stringify(calls),
      );
    });

    it("hostile and duplicate snapshot names are refused", async () => {
      for (const bad of ["../x", "a b", "$(touch pwned)", "a--b", "x".repeat(300)]) {
        const r = await rig.snap(["create", ws, "--name", bad]);
        assert.equal(r.code, 2, `${bad}: ${show(r)}`);
      }
      const dup = await rig.snap(["create", ws, "--name", "before-refactor"]);
      assert.equal(dup.code, 4, show(dup));
    });

    it("a restore whose copy fails leaves workspace and snapshot intact and says how to retry", {
      skip: provider !== "tart" && "the failure knob is the fake tart's",
    }, async () => {
      assert.equal((await rig.vm(["ssh", ws, "echo still-here > ~/c.txt"])).code, 0);
      const machines = await rig.machineNames();
      const r = await rig.snap(["restore", ws, "--name", "before-refactor", "--force"], {
        env: { FAKE_TART_FAIL: "clone" },
      });
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, /failed while copying it/);
      assert.match(r.stderr, /retry with `cal-snap restore .* --name before-refactor`/);
      assert.deepEqual(await rig.machineNames(), machines, "nothing deleted");
      const st = await rig.vm(["status", ws, "--json"]);
      assert.equal(st.records[0].state, "running", "running again, as before the restore");
      assert.equal((await rig.vm(["ssh", ws, "cat ~/c.txt"])).stdout, "still-here\n");
    });

    it("restore works when the workspace's VM is gone", async () => {
      assert.equal((await rig.vm(["stop", ws])).code, 0);
      await rig.deleteMachine(`cal-${ws}`);
      const st = await rig.vm(["status", ws, "--json"]);
      assert.equal(st.records[0].state, "missing");
      const r = await rig.snap(["restore", ws, "--name", "before-refactor"]);
      assert.equal(r.code, 0, show(r));
      const st2 = await rig.vm(["status", ws, "--json"]);
      assert.equal(st2.records[0].state, "stopped");
    });

    it("disk-usage shows the VM, the snapshots and the total", async () => {
      const r = await rig.cal(["isolation", "disk-usage", ws, "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^VM: +\d+ GB\nSnapshots: +\d+ GB \(1 snapshot\)\nTotal: +\d+ GB$/m);
      const j = await rig.snap(["disk-usage", ws, "--json"]);
      assert.equal(j.records[0].kind, "disk-usage");
      assert.equal(j.records[0].snapshots, 1);
    });

    it("delete removes the snapshot and its machine", async () => {
      const r = await rig.cal(["isolation", "snapshot", "delete", ws, "--name", "before-refactor"]);
      assert.equal(r.code, 0, show(r));
      assert.ok(!(await rig.machineNames()).some((n) => n.startsWith(`cal-${ws}--`)));
    });
  });

  describe(`automatic snapshots, rollback and cleanup (${provider})`, () => {
    let rig: Rig;
    let ws: string;
    before(async () => {
      rig = await Rig.create("", provider);
      const cfg = join(rig.env.CAL_HOME, "config.yaml");
      await Deno.writeTextFile(
        cfg,
        (await Deno.readTextFile(cfg)) + "  snapshots:\n    max_auto_snapshots: 2\n",
      );
      ws = rig.name("auto");
      assert.equal((await rig.vm(["init", ws])).code, 0);
    });
    after(async () => await rig.close());

    it("session snapshots are named by date and time and pruned to max_auto_snapshots", async () => {
      const names: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await rig.snap(["create", ws, "--auto", "--json"]);
        assert.equal(r.code, 0, show(r));
        assert.match(String(r.records[0].snapshot), /^session-\d{4}-\d{2}-\d{2}-\d{4}(-\d+)?$/);
        names.push(String(r.records[0].snapshot));
      }
      const list = await rig.snap(["list", ws, "--json"]);
      assert.deepEqual(list.records.map((x) => x.snapshot).sort(), names.slice(2).sort());
    });

    it("rollback picks the newest session-start snapshot", async () => {
      assert.equal((await rig.snap(["create", ws, "--name", "manual"])).code, 0);
      const list = await rig.snap(["list", ws, "--json"]);
      const newestAuto = list.records.filter((r) => r.auto)
        .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))[0];
      // Stopped: its repositories cannot be looked into, so it takes --force (or a yes).
      const refused = await rig.cal(["isolation", "rollback", ws, "--json"]);
      assert.equal(refused.code, 4, show(refused));
      assert.match(refused.stderr, /it is not running, so its repositories could not be checked/);
      assert.match(refused.stderr, /cal-vm start .*--force/);
      const r = await rig.cal(["isolation", "rollback", ws, "--force", "--json"]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.records[0].snapshot, newestAuto.snapshot);
    });

    it("cleanup --older-than deletes only old snapshots; --auto-only only automatic ones", async () => {
      // Age the manual snapshot by editing its record, as if it had been taken 10 days ago.
      const file = join(rig.env.CAL_HOME, "isolation", "vms", ws, "vm.yaml");
      const old = new Date(Date.now() - 10 * 86_400_000).toISOString();
      const text = await Deno.readTextFile(file);
      await Deno.writeTextFile(
        file,
        text.replace(/(- name: manual\n\s+created_at: )"?[^"\n]+"?/, `$1"${old}"`),
      );
      const r = await rig.cal(["isolation", "snapshot", "cleanup", ws, "--older-than", "7d"]);
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(r.records.map((x) => x.snapshot), ["manual"]);
      const auto = await rig.cal(["isolation", "snapshot", "cleanup", ws, "--auto-only"]);
      assert.equal(auto.code, 0, show(auto));
      assert.equal(auto.records.length, 2);
      assert.deepEqual((await rig.snap(["list", ws, "--json"])).records, []);
    });

    it("records on stdin: list --all | select auto | delete -", async () => {
      for (let i = 0; i < 2; i++) assert.equal((await rig.snap(["create", ws, "--auto"])).code, 0);
      assert.equal((await rig.snap(["create", ws, "--name", "keep-me"])).code, 0);
      const list = await rig.snap(["list", "--all", "--json"]);
      const autos = list.records.filter((r) => r.kind === "snapshot" && r.auto);
      assert.equal(autos.length, 2);
      const r = await rig.snap(["delete", "-"], {
        stdin: autos.map((x) => JSON.stringify(x)).join("\n") + "\n",
      });
      assert.equal(r.code, 0, show(r));
      const left = await rig.snap(["list", ws, "--json"]);
      assert.deepEqual(left.records.map((x) => x.snapshot), ["keep-me"]);
    });

    it("destroy removes the workspace's snapshot machines too", async () => {
      const r = await rig.vm(["destroy", ws, "--yes"]);
      assert.equal(r.code, 0, show(r));
      assert.ok(!(await rig.machineNames()).some((n) => n.startsWith(`cal-${ws}`)));
    });
  });
}

for (const provider of PROVIDERS) suite(provider);

describe("scheduled cleanup", () => {
  let rig: Rig;
  before(async () => (rig = await Rig.create()));
  after(async () => await rig.close());

  it("prints a crontab line that runs cleanup for all workspaces", async () => {
    const r = await rig.snap([
      "schedule",
      "--every",
      "1d",
      "--older-than",
      "7d",
      "--print",
      "--scheduler",
      "cron",
      "--human",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.match(
      r.stdout,
      /^0 3 \* \* \* .*cleanup --all --auto-only --older-than 7d --json >>.*2>&1 # cal-snap schedule$/m,
    );
  });

  it("the scheduled job keeps the configured policy, run as cron runs it (no environment)", async () => {
    const ws = rig.name("sched");
    assert.equal((await rig.vm(["init", ws])).code, 0);
    // One named snapshot, and more session snapshots than max_auto_snapshots (3) keeps.
    assert.equal((await rig.snap(["create", ws, "--name", "keep-me"])).code, 0);
    for (let i = 0; i < 4; i++) assert.equal((await rig.snap(["create", ws, "--auto"])).code, 0);
    const printed = await rig.snap(["schedule", "--print", "--scheduler", "cron", "--human"]);
    assert.equal(printed.code, 0, show(printed));
    const line = printed.stdout.trim();
    assert.doesNotMatch(line, /--auto-only/, "no flags: the policy, read when the job runs");
    const command = /^(?:\S+ ){5}(.*) # cal-snap schedule$/.exec(line)?.[1];
    assert.ok(command, line);
    await Deno.mkdir(join(rig.env.CAL_HOME, "isolation", "logs"), { recursive: true }); // install makes it
    const cron = await new Deno.Command("env", {
      args: ["-i", `HOME=${rig.env.HOME}`, "SHELL=/bin/sh", "/bin/sh", "-c", command],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(cron.code, 0, new TextDecoder().decode(cron.stderr));
    const list = await rig.snap(["list", ws, "--json"]);
    const names = list.records.map((r) => String(r.snapshot));
    assert.ok(names.includes("keep-me"), names.join(", "));
    assert.equal(names.filter((n) => n.startsWith("session-")).length, 3, names.join(", "));
    const log = await Deno.readTextFile(
      join(rig.env.CAL_HOME, "isolation", "logs", "snapshot-cleanup.log"),
    );
    assert.doesNotMatch(log, /"kind":"error"/, log);
  });

  it("--include-manual without an age is refused", async () => {
    const r = await rig.snap(["schedule", "--include-manual", "--print"]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--include-manual --older-than/);
  });

  it("prints a well-formed launchd plist", async (t) => {
    const r = await rig.snap([
      "schedule",
      "--every",
      "6h",
      "--print",
      "--scheduler",
      "launchd",
      "--human",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /<key>StartInterval<\/key>\s*<integer>21600<\/integer>/);
    const lint = await new Deno.Command("xmllint", {
      args: ["--noout", "-"],
      stdin: "piped",
      stderr: "piped",
    })
      .spawn();
    const w = lint.stdin.getWriter();
    await w.write(new TextEncoder().encode(r.stdout));
    await w.close();
    const st = await lint.output().catch(() => undefined);
    if (!st) return t.skip("xmllint is not installed");
    assert.equal(st.code, 0, new TextDecoder().decode(st.stderr));
  });

  it("installs into and removes from the real crontab", async (t) => {
    if (Deno.build.os === "darwin") return t.skip("crontab test is for Linux hosts");
    const has = await new Deno.Command("sh", { args: ["-c", "command -v crontab"] }).output();
    if (has.code !== 0) return t.skip("crontab is not installed (apt-get install cron)");
    const saved = await new Deno.Command("crontab", {
      args: ["-l"],
      stdout: "piped",
      stderr: "null",
    }).output();
    try {
      const r = await rig.snap(["schedule", "--every", "1d", "--scheduler", "cron", "--json"]);
      assert.equal(r.code, 0, show(r));
      const tab = new TextDecoder().decode(
        (await new Deno.Command("crontab", { args: ["-l"], stdout: "piped" }).output()).stdout,
      );
      assert.match(tab, /cleanup --all --json .*# cal-snap schedule/);
      const again = await rig.snap(["schedule", "--every", "12h", "--scheduler", "cron"]);
      assert.equal(again.code, 0, show(again));
      const tab2 = new TextDecoder().decode(
        (await new Deno.Command("crontab", { args: ["-l"], stdout: "piped" }).output()).stdout,
      );
      assert.equal(
        tab2.match(/# cal-snap schedule/g)?.length,
        1,
        "re-scheduling replaces the entry",
      );
      const rm = await rig.snap(["schedule", "--remove", "--scheduler", "cron"]);
      assert.equal(rm.code, 0, show(rm));
      const tab3 = await new Deno.Command("crontab", {
        args: ["-l"],
        stdout: "piped",
        stderr: "null",
      }).output();
      assert.doesNotMatch(new TextDecoder().decode(tab3.stdout), /cal-snap schedule/);
    } finally {
      const restore = new Deno.Command("crontab", { args: ["-"], stdin: "piped" }).spawn();
      const w = restore.stdin.getWriter();
      await w.write(saved.code === 0 ? saved.stdout : new Uint8Array());
      await w.close();
      await restore.status;
    }
  });

  it("refuses intervals cron cannot express, and absurd ones", async () => {
    for (
      const [every, scheduler] of [
        ["7m", "cron"],
        ["40d", "cron"],
        ["99999999999999999999d", "cron"],
        ["99999999999999999999d", "launchd"],
        ["0m", "launchd"],
      ]
    ) {
      const r = await rig.snap(["schedule", "--every", every, "--print", "--scheduler", scheduler]);
      assert.equal(r.code, 2, `${every} (${scheduler}): ${show(r)}`);
    }
  });
});
