/**
 * cal-sync logs, on the host only (no VM needed): build logs in the output folder and the VM's
 * own log, all of them, `--tail N`, and `--follow` (growing, new and truncated files).
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Env, getDenoDir, REPO, runTool, streamRecords } from "./helpers.ts";
import { show } from "./rig_env.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("cal-sync logs", () => {
  let root: string;
  let out: string;
  let env: Env;
  let vmDir: string;

  before(async () => {
    root = await Deno.makeTempDir({ prefix: "cal-logs-" });
    const home = join(root, "home");
    // Under the sync folder (~/cal-output): cal refuses an output_dir anywhere else.
    out = join(home, "cal-output", "logger");
    env = { HOME: home, CAL_HOME: join(home, ".cal") };
    vmDir = join(env.CAL_HOME, "isolation", "vms", "logger");
    await Deno.mkdir(vmDir, { recursive: true });
    await Deno.writeTextFile(
      join(vmDir, "vm.yaml"),
      [
        "name: logger",
        "base_image: x",
        "created_at: 2026-01-17T10:00:00Z",
        "provider: tart",
        "resources: {cpu: 4, memory: 8192, disk_size: 80}",
        `output_dir: ${out}`,
        "",
      ].join("\n"),
    );
    await Deno.mkdir(join(out, "logs"), { recursive: true });
    await Deno.mkdir(join(out, "builds", "T.xcresult"), { recursive: true });
    await Deno.writeTextFile(join(out, "logs", "build.log"), "b1\nb2\nb3\n");
    await Deno.writeTextFile(join(out, "gradle.log"), "g1\ng2");
    await Deno.writeTextFile(join(out, "builds", "T.xcresult", "inside.log"), "not a build log\n");
    await Deno.writeTextFile(join(vmDir, "vm.log"), "boot\nready\n");
  });
  after(async () => await Deno.remove(root, { recursive: true }));

  it("prints every build log and the VM's log, tail-style", async () => {
    const r = await runTool("cal", ["isolation", "logs", "logger", "--human"], env);
    assert.equal(r.code, 0, show(r));
    assert.equal(
      r.stdout,
      "==> gradle.log <==\ng1\ng2\n\n==> logs/build.log <==\nb1\nb2\nb3\n\n==> vm.log <==\nboot\nready\n",
    );
  });

  it("--tail N gives the last N lines of each, as records with --json", async () => {
    const r = await runTool("cal-sync", ["logs", "logger", "--tail", "1", "--json"], env);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(r.records, [
      { kind: "log", workspace: "logger", file: join(out, "gradle.log"), line: "g2" },
      { kind: "log", workspace: "logger", file: join(out, "logs", "build.log"), line: "b3" },
      { kind: "log", workspace: "logger", file: join(vmDir, "vm.log"), line: "ready" },
    ]);
    const bad = await runTool("cal-sync", ["logs", "logger", "--tail", "x"], env);
    assert.equal(bad.code, 2, show(bad));
  });

  it("--follow prints new lines, new files and truncated files until stopped", async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        join(REPO, "commands", "cal-sync.ts"),
        "logs",
        "logger",
        "--follow",
        "--tail",
        "0",
        "--json",
      ],
      env: { ...env, NO_COLOR: "1", DENO_DIR: await getDenoDir() },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines: { file: string; line: string }[] = [];
    const reading = streamRecords(child.stdout, lines);
    const stderr = new Response(child.stderr).text();
    const waitLines = async (n: number) => {
      const end = Date.now() + 15_000;
      while (lines.length < n && Date.now() < end) await sleep(50);
      assert.equal(lines.length, n, JSON.stringify(lines));
    };
    await sleep(1500); // started (it prints nothing with --tail 0)
    const build = join(out, "logs", "build.log");
    await Deno.writeTextFile(build, "b4\nhalf", { append: true });
    await waitLines(1);
    await Deno.writeTextFile(build, " done\n", { append: true });
    await waitLines(2);
    await Deno.mkdir(join(out, "logs", "later"), { recursive: true });
    await Deno.writeTextFile(join(out, "logs", "later", "new.log"), "n1\n");
    await waitLines(3);
    await Deno.writeTextFile(build, "fresh\n"); // truncated and rewritten
    await waitLines(4);
    child.kill("SIGTERM");
    const status = await child.status;
    await reading;
    assert.equal(status.code, 0, await stderr);
    assert.deepEqual(lines.map((l) => [l.file.slice(out.length + 1), l.line]), [
      ["logs/build.log", "b4"],
      ["logs/build.log", "half done"],
      ["logs/later/new.log", "n1"],
      ["logs/build.log", "fresh"],
    ]);
  });
});
