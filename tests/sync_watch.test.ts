/**
 * cal-sync watch: the real watcher as a subprocess on a temporary output folder. Artifacts with
 * hostile names, one written slowly in chunks, a bundle that gets its Info.plist late, a failing
 * hook, a renamed-into-place file, and a growing build log. Each hook must fire exactly once per
 * finished artifact, with the exact path, and never on a partial one.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { getDenoDir, parseNdjson, REPO } from "./helpers.ts";

const DEBOUNCE = 700;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The NUL-separated fields a hook appended to a file. */
async function fired(file: string): Promise<string[]> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text ? text.split("\0").slice(0, -1) : [];
}

describe("cal-sync watch", () => {
  let root: string;
  let out: string;
  let child: Deno.ChildProcess;
  let stdout: Promise<string>;
  const stderrLines: string[] = [];
  let stderrDone: Promise<void>;
  const logs = (name: string) => join(root, `fired-${name}`);

  before(async () => {
    root = await Deno.makeTempDir({ prefix: "cal-watch-" });
    const home = join(root, "home");
    // Under the sync folder (~/cal-output): cal refuses an output_dir anywhere else.
    out = join(home, "cal-output", "watcher");
    const calHome = join(home, ".cal");
    const vmDir = join(calHome, "isolation", "vms", "watcher");
    await Deno.mkdir(vmDir, { recursive: true });
    await Deno.writeTextFile(
      join(vmDir, "vm.yaml"),
      [
        "name: watcher",
        "base_image: ghcr.io/cirruslabs/macos-sequoia-base:latest",
        "created_at: 2026-01-17T10:00:00Z",
        "provider: tart",
        "resources: {cpu: 4, memory: 8192, disk_size: 80}",
        `output_dir: ${out}`,
        "",
      ].join("\n"),
    );
    await Deno.mkdir(join(out, "builds"), { recursive: true });
    await Deno.mkdir(join(out, "logs"), { recursive: true });
    // There before the watch: seen, never fired.
    await Deno.writeTextFile(join(out, "builds", "Old.ipa"), "old");
    await Deno.writeTextFile(join(out, "logs", "build.log"), "old line\n");

    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        join(REPO, "commands", "cal-sync.ts"),
        "watch",
        "watcher",
        "--json",
        "--debounce",
        String(DEBOUNCE),
        "--on-ipa",
        `printf '%s\\0%s\\0' {} "$(wc -c < {} | tr -d ' ')" >> ${logs("ipa")}`,
        "--on-archive",
        `printf '%s\\0%s\\0' {} "$(ls {} | tr '\\n' ,)" >> ${logs("archive")}`,
        "--on-apk",
        `printf '%s\\0' {} >> ${logs("apk")}; exit 3`,
        "--on-any",
        `printf '%s\\0' "{}" >> '${logs("any")}'`,
      ],
      cwd: root,
      env: { HOME: home, CAL_HOME: calHome, NO_COLOR: "1", DENO_DIR: await getDenoDir() },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    stdout = new Response(child.stdout).text();
    stderrDone = (async () => {
      let pending = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        stderrLines.push(...lines);
      }
    })();
    await waitFor("the watcher to start", () => stderrLines.some((l) => l.includes('"watch"')));
  });

  after(async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await Deno.remove(root, { recursive: true });
  });

  it("fires each hook exactly once per finished artifact, with the exact path", async () => {
    const b = (name: string) => join(out, "builds", name);
    const hostile = b(`My App 'q' "dq" $(touch pwned) \`id\`.ipa`);
    const newline = b("line\nbreak.ipa");
    const slow = b("Slow.ipa");
    const archive = join(out, "My Archive $(touch pwned).xcarchive");
    const apk1 = b("app-release.apk");
    const apk2 = b("second.aab");
    const renamed = b("Renamed.ipa");

    await Deno.writeTextFile(hostile, "hostile");
    await Deno.writeTextFile(newline, "newline");
    await Deno.writeTextFile(apk1, "apk");

    // Written in chunks, slower than a scan, faster than the debounce window.
    const chunk = "x".repeat(1000);
    const f = await Deno.open(slow, { write: true, create: true });
    for (let i = 0; i < 5; i++) {
      await f.write(new TextEncoder().encode(chunk));
      await sleep(DEBOUNCE / 3);
    }
    f.close();

    // A bundle without its Info.plist is not finished, however long it sits.
    await Deno.mkdir(join(archive, "Products", "Applications", "A.app"), { recursive: true });
    await Deno.writeTextFile(join(archive, "Products", "Applications", "A.app", "A"), "bin");
    await sleep(DEBOUNCE * 2.5);
    assert.deepEqual(await fired(logs("archive")), [], "no hook for a partial archive");
    await Deno.writeTextFile(join(archive, "Info.plist"), "<plist/>");

    // Written under a temporary name, then renamed into place.
    await Deno.writeTextFile(b("Renamed.ipa.part"), "renamed");
    await Deno.rename(b("Renamed.ipa.part"), renamed);

    // A hook that fails does not stop the watcher.
    await waitFor("the failing apk hook", async () => (await fired(logs("apk"))).length === 1);
    await Deno.writeTextFile(apk2, "aab");

    // Build logs stream.
    await Deno.writeTextFile(join(out, "logs", "build.log"), "line one\nline two\n", {
      append: true,
    });

    const ipas = [hostile, newline, slow, renamed];
    await waitFor("every hook", async () =>
      (await fired(logs("ipa"))).length === 2 * ipas.length &&
      (await fired(logs("archive"))).length === 2 &&
      (await fired(logs("apk"))).length === 2 &&
      (await fired(logs("any"))).length === ipas.length + 3);
    await sleep(DEBOUNCE * 3); // nothing may fire twice

    const ipaFired = await fired(logs("ipa"));
    const byPath = new Map<string, string>();
    for (let i = 0; i < ipaFired.length; i += 2) byPath.set(ipaFired[i], ipaFired[i + 1]);
    assert.equal(byPath.size, ipas.length, "each .ipa once");
    assert.deepEqual([...byPath.keys()].sort(), [...ipas].sort());
    assert.equal(byPath.get(slow), "5000", "the slow file was complete when its hook ran");
    assert.equal(byPath.get(hostile), "7");

    const arch = await fired(logs("archive"));
    assert.deepEqual(arch, [archive, "Info.plist,Products,"]);
    assert.deepEqual((await fired(logs("apk"))).sort(), [apk1, apk2].sort());
    assert.deepEqual(
      (await fired(logs("any"))).sort(),
      [...ipas, archive, apk1, apk2].sort(),
      "on-any once per artifact, never for Old.ipa",
    );

    for (const dir of [root, out, join(out, "builds")]) {
      assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name === "pwned"), `pwned in ${dir}`);
    }

    // Stop it as a user would; it ends cleanly.
    child.kill("SIGTERM");
    const status = await child.status;
    await stderrDone;
    assert.equal(status.code, 0, stderrLines.join("\n"));
    const records = parseNdjson(await stdout);
    const artifacts = records.filter((r) => r.kind === "artifact");
    assert.deepEqual(
      artifacts.map((r) => r.path).sort(),
      [...ipas, archive, apk1, apk2].sort(),
    );
    assert.deepEqual(
      artifacts.find((r) => r.path === archive),
      {
        kind: "artifact",
        workspace: "watcher",
        path: archive,
        category: "builds",
        bytes: 11,
        new: true,
        type: "xcarchive",
      },
    );
    const hooks = records.filter((r) => r.kind === "hook");
    assert.equal(hooks.length, ipas.length * 2 + 2 * 2 + 2);
    const failed = hooks.filter((r) => r.exit !== 0);
    assert.deepEqual(
      failed.map((r) => [r.hook, r.exit, r.path]).sort(),
      [
        ["on-apk", 3, apk1],
        ["on-apk", 3, apk2],
      ].sort(),
    );
    assert.ok(
      stderrLines.some((l) => l.includes("--on-apk failed with exit 3")),
      "the failure is reported",
    );
    const logLines = stderrLines.map((l) => JSON.parse(l)).filter((e) => e.event === "log");
    assert.deepEqual(logLines.map((e) => [e.file, e.message]), [
      ["logs/build.log", "line one"],
      ["logs/build.log", "line two"],
    ]);
  });
});
