/**
 * cal-sync on the rig: sync pulls exactly the matching artifacts from a real guest over SSH
 * (config patterns plus installed environments' patterns and excludes, including test reports
 * and the result bundles in Xcode's DerivedData/<project>/Logs/Test), sorts them, skips
 * what it already has, never writes to the guest, and never overwrites what the guest wrote
 * through the shared output folder; logs shows what builds wrote there.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { PROVIDERS, REAL_TART, Rig, show, type TestProvider } from "./rig_env.ts";
import { shortHash } from "../lib/sync/patterns.ts";
import { REPO, streamRecords } from "./helpers.ts";

const SHARED = "/Volumes/My Shared Files/output";
const HOSTILE = "weird 'n' $(touch pwned)\nname.ipa";

/** Every file and folder under `dir` (relative), with each file's size and mtime. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(d: string) {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      const st = await Deno.lstat(p);
      out[relative(dir, p)] = st.isDirectory ? "dir" : `${st.size}@${st.mtime?.getTime()}`;
      if (st.isDirectory) await walk(p);
    }
  }
  await walk(dir);
  return out;
}

/** Writes the guest's build outputs: argv only, so hostile names need no quoting. */
const SETUP = `set -e
cd "$HOME"
mk() { mkdir -p "$(dirname "$1")"; printf '%s' "$2" > "$1"; }
mk workspace/app/build/outputs/apk/release/app-release.apk apk-release
mk workspace/app/build/outputs/mapping/release/mapping.txt mapping
mk workspace/app/build/intermediates/apk/debug/app-debug.apk excluded-by-android
mk workspace/app/.gradle/cache/x.apk pruned
mk workspace/web/node_modules/pkg/bin/tool.apk pruned
mk workspace/app/README.md no-pattern
mk workspace/app/build.log "$(printf 'step 1\\nstep 2\\nstep 3\\n')"
mk workspace/app/build/test-results/junit-report.xml "<testsuite/>"
mk "workspace/ios/build/$1" hostile
mk workspace/ios/Tests.xcresult/Info.plist "<plist/>"
mk workspace/ios/Tests.xcresult/Data/data.0 results
mk workspace/ios/Half.xcarchive/Products/Applications/H.app/H half
A="Library/Developer/Xcode/Archives/2026-01-17/MyApp 1-17-26, 10.30.xcarchive"
mk "$A/Info.plist" "<plist/>"
mk "$A/Products/Applications/MyApp.app/Info.plist" "<plist/>"
mk "$A/Products/Applications/MyApp.app/MyApp" binary
P=Library/Developer/Xcode/DerivedData/MyApp-abcdef/Build/Products/Release-iphoneos
mk "$P/MyApp.app/Info.plist" "<plist/>"
mk "$P/MyApp.app/MyApp" derived-binary
mk Library/Developer/Xcode/DerivedData/MyApp-abcdef/Build/Intermediates.noindex/X.app/Info.plist no
mkdir -p .cal-env
printf '{"name":"android","version":"1.0.0","installed_at":"2026-01-17T10:00:00Z"}' > .cal-env/android.installed
`;

function suite(provider: TestProvider) {
  describe(`cal-sync on the rig (${provider})`, () => {
    let rig: Rig;
    let ws: string;
    let out: string;
    let home: string;
    const config = (p: TestProvider) =>
      [
        "isolation:",
        "  defaults:",
        "    vm:",
        `      provider: ${p}`,
        `      boot_timeout: ${REAL_TART ? 240 : 30}`,
        "    output:",
        "      watch_patterns:",
        '        - "*.ipa"',
        '        - "*.xcarchive"',
        '        - "*.app"',
        '        - "*.xcresult"',
        '        - "*.log"',
        '        - "junit*.xml"',
        "",
      ].join("\n");

    before(async () => {
      rig = await Rig.create(config(provider), provider);
      ws = rig.name("syncy");
      assert.equal((await rig.vm(["init", ws])).code, 0);
      const started = await rig.vm(["start", ws]);
      assert.equal(started.code, 0, show(started));
      out = join(rig.env.HOME, "cal-output", ws);
      const setup = await rig.vm(["exec", ws, "--", "sh", "-c", SETUP, "sh", HOSTILE]);
      assert.equal(setup.code, 0, show(setup));
      const h = await rig.vm(["exec", ws, "--", "sh", "-c", 'printf %s "$HOME"']);
      home = h.stdout;
      // VirtioFS lets the guest user write the share; the rig's bind mount keeps host owners,
      // so open it up the way a real share behaves (matters when the tests run as root).
      for (const d of ["", "builds", "logs", "test-results"]) await Deno.chmod(join(out, d), 0o777);
      // Through the shared folder, the guest already wrote an app-release.apk of its own.
      const shared = await rig.vm([
        "exec",
        ws,
        "--",
        "sh",
        "-c",
        `printf shared > "${SHARED}/builds/app-release.apk" && printf 'mount 1\\nmount 2\\n' > "${SHARED}/logs/xcodebuild.log"`,
      ]);
      assert.equal(shared.code, 0, show(shared));
    });
    after(async () => await rig.close());

    it("copies exactly the matching artifacts, sorted, and nothing else", async () => {
      const marker = await rig.vm(["exec", ws, "--", "sh", "-c", "sleep 1; touch ~/.sync-marker"]);
      assert.equal(marker.code, 0, show(marker));
      const before = await tree(out);
      const r = await rig.cal(["isolation", "sync", ws, "--json"]);
      assert.equal(r.code, 0, show(r));
      const hostileDest = "builds/" + HOSTILE;
      const apkDest = `builds/app-release-${await shortHash(
        "workspace/app/build/outputs/apk/release/app-release.apk",
      )}.apk`;
      const expected: Record<string, string> = {
        "workspace/app/build.log": "logs/build.log",
        "workspace/app/build/outputs/apk/release/app-release.apk": apkDest,
        "workspace/app/build/outputs/mapping/release/mapping.txt": "builds/mapping.txt",
        "workspace/app/build/test-results/junit-report.xml": "test-results/junit-report.xml",
        [`workspace/ios/build/${HOSTILE}`]: hostileDest,
        "workspace/ios/Tests.xcresult": "test-results/Tests.xcresult",
        "Library/Developer/Xcode/Archives/2026-01-17/MyApp 1-17-26, 10.30.xcarchive":
          "builds/MyApp 1-17-26, 10.30.xcarchive",
        "Library/Developer/Xcode/DerivedData/MyApp-abcdef/Build/Products/Release-iphoneos/MyApp.app":
          "builds/MyApp.app",
      };
      // The archive's MyApp.app stays inside it: bundles are never searched inside.
      const got = Object.fromEntries(
        r.records.map((
          x,
        ) => [String(x.source).slice(home.length + 1), relative(out, String(x.path))]),
      );
      assert.deepEqual(got, expected);
      assert.ok(
        r.records.every((x) => x.kind === "artifact" && x.new === true && x.workspace === ws),
      );
      const apk = r.records.find((x) => String(x.path).endsWith(".apk"))!;
      assert.equal(apk.pattern_from, "android", "the installed environment's pattern");
      assert.match(r.stderr, /Half\.xcarchive has no Info\.plist yet/);

      // On the host: exactly those, with their contents; the shared folder's files untouched.
      const after = await tree(out);
      const added = Object.keys(after).filter((k) => !(k in before)).sort();
      const bundleFiles = [
        "builds/MyApp 1-17-26, 10.30.xcarchive/Info.plist",
        "builds/MyApp 1-17-26, 10.30.xcarchive/Products",
        "builds/MyApp 1-17-26, 10.30.xcarchive/Products/Applications",
        "builds/MyApp 1-17-26, 10.30.xcarchive/Products/Applications/MyApp.app",
        "builds/MyApp 1-17-26, 10.30.xcarchive/Products/Applications/MyApp.app/Info.plist",
        "builds/MyApp 1-17-26, 10.30.xcarchive/Products/Applications/MyApp.app/MyApp",
        "builds/MyApp.app/Info.plist",
        "builds/MyApp.app/MyApp",
        "test-results/Tests.xcresult/Info.plist",
        "test-results/Tests.xcresult/Data",
        "test-results/Tests.xcresult/Data/data.0",
      ];
      assert.deepEqual(added, [...Object.values(expected), ...bundleFiles].sort());
      assert.equal(await Deno.readTextFile(join(out, hostileDest)), "hostile");
      assert.equal(await Deno.readTextFile(join(out, apkDest)), "apk-release");
      assert.equal(await Deno.readTextFile(join(out, "builds/app-release.apk")), "shared");
      assert.equal(
        await Deno.readTextFile(join(out, "builds/MyApp.app/MyApp")),
        "derived-binary",
      );
      assert.equal(before["builds/app-release.apk"], after["builds/app-release.apk"]);

      // One way: nothing in the guest was written (and nothing ran from a name).
      const changed = await rig.vm([
        "exec",
        ws,
        "--",
        "sh",
        "-c",
        // What sync reads (on a real Mac, the rest of ~/Library changes on its own).
        'cd "$HOME" && find workspace Library/Developer -newer .sync-marker -print',
      ]);
      assert.equal(changed.code, 0, show(changed));
      assert.equal(changed.stdout, "", "the guest is unchanged");
      const pwned = await rig.vm([
        "exec",
        ws,
        "--",
        "sh",
        "-c",
        'find "$HOME" /tmp -name pwned 2>/dev/null; true',
      ]);
      assert.equal(pwned.stdout, "");
      for (const dir of [Deno.cwd(), out, join(out, "builds")]) {
        assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name === "pwned"), dir);
      }
    });

    it("a second sync copies nothing new", async () => {
      const before = await tree(out);
      const r = await rig.sync(["sync", ws, "--json"]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.records.length, 8);
      assert.ok(r.records.every((x) => x.new === false), show(r));
      assert.deepEqual(await tree(out), before, "not one file touched");
      const h = await rig.sync(["sync", ws, "--human"]);
      assert.match(h.stdout, /^Nothing new: 8 artifacts already in /m);
    });

    it("copies again only what changed in the guest", async () => {
      const w = await rig.vm([
        "exec",
        ws,
        "--",
        "sh",
        "-c",
        'sleep 1; printf " v2" >> "$HOME/workspace/app/build/test-results/junit-report.xml"',
      ]);
      assert.equal(w.code, 0, show(w));
      const dry = await rig.sync(["sync", ws, "--dry-run", "--json"]);
      assert.deepEqual(
        dry.records.filter((x) => x.new).map((x) => relative(out, String(x.path))),
        ["test-results/junit-report.xml"],
      );
      assert.equal(
        await Deno.readTextFile(join(out, "test-results/junit-report.xml")),
        "<testsuite/>",
      );
      const r = await rig.sync(["sync", ws, "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^Copied 1 artifact \(\d+ B\) to /m);
      assert.match(r.stdout, /test-results\/junit-report\.xml/);
      assert.equal(
        await Deno.readTextFile(join(out, "test-results/junit-report.xml")),
        "<testsuite/> v2",
      );
    });

    it("logs shows the build logs and --tail takes the last lines", async () => {
      const r = await rig.cal(["isolation", "logs", ws, "--tail", "2", "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /==> logs\/build\.log <==\nstep 2\nstep 3\n/);
      assert.match(r.stdout, /==> logs\/xcodebuild\.log <==\nmount 1\nmount 2\n/);
      assert.match(r.stdout, /==> vm\.log <==/);
      const j = await rig.sync(["logs", ws, "--json", "--tail", "1"]);
      const build = j.records.filter((x) => String(x.file).endsWith("/logs/build.log"));
      assert.deepEqual(build.map((x) => x.line), ["step 3"]);
    });

    it("sync --watch pulls new artifacts as they appear, until stopped", async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          join(REPO, "commands", "cal-sync.ts"),
          "sync",
          ws,
          "--watch",
          "--interval",
          "1",
          "--json",
        ],
        env: { ...rig.env, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const records: Record<string, unknown>[] = [];
      const reading = streamRecords(child.stdout, records);
      const stderr = new Response(child.stderr).text();
      const until = async (what: string, ok: () => boolean) => {
        const end = Date.now() + 30_000;
        while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
        assert.ok(ok(), what);
      };
      await until("the first round", () => records.length === 8);
      assert.ok(records.every((x) => x.new === false));
      const w = await rig.vm([
        "exec",
        ws,
        "--",
        "sh",
        "-c",
        'printf later > "$HOME/workspace/Later.ipa"',
      ]);
      assert.equal(w.code, 0, show(w));
      await until("the new artifact", () => records.length === 9);
      assert.equal(records[8].path, join(out, "builds", "Later.ipa"));
      assert.equal(records[8].new, true);
      assert.equal(await Deno.readTextFile(join(out, "builds", "Later.ipa")), "later");
      child.kill("SIGTERM");
      const status = await child.status;
      await reading;
      assert.equal(status.code, 0, await stderr);
    });

    it("pulls test reports and Xcode's Logs/Test results into test-results", async () => {
      // Reports where the tools put them by default, with ios and java installed too.
      const w = await rig.vm([
        "exec",
        ws,
        "--",
        "sh",
        "-c",
        `set -e; cd "$HOME"
mk() { mkdir -p "$(dirname "$1")"; printf '%s' "$2" > "$1"; }
mk workspace/app/build/test-results/test/TEST-x.xml "<testsuite name='x'/>"
mk workspace/svc/target/surefire-reports/TEST-com.example.SvcTest.xml "<testsuite name='svc'/>"
mk workspace/svc/target/site/jacoco/jacoco.xml "<report/>"
mk workspace/app/build/reports/tests/test/index.html "not an artifact"
L=Library/Developer/Xcode/DerivedData/App-abc/Logs
mk $L/Test/Run.xcresult/Info.plist "<plist/>"
mk $L/Test/Run.xcresult/Data/data.0 run
mk $L/Test/LogStoreManifest.plist "<plist/>"
mk $L/Build/Build.xcactivitylog no
for e in ios java; do
  printf '{"name":"%s","version":"1.0.0","installed_at":"2026-01-17T10:00:00Z"}' $e > .cal-env/$e.installed
done`,
      ]);
      assert.equal(w.code, 0, show(w));
      const r = await rig.sync(["sync", ws, "--json"]);
      assert.equal(r.code, 0, show(r));
      const got = Object.fromEntries(
        r.records.filter((x) => x.new).map((x) => [
          String(x.source).slice(home.length + 1),
          [relative(out, String(x.path)), x.pattern_from],
        ]),
      );
      assert.deepEqual(got, {
        "workspace/app/build/test-results/test/TEST-x.xml": [
          "test-results/TEST-x.xml",
          "android",
        ],
        "workspace/svc/target/surefire-reports/TEST-com.example.SvcTest.xml": [
          "test-results/TEST-com.example.SvcTest.xml",
          "java",
        ],
        "workspace/svc/target/site/jacoco/jacoco.xml": ["test-results/jacoco.xml", "java"],
        "Library/Developer/Xcode/DerivedData/App-abc/Logs/Test/Run.xcresult": [
          "test-results/Run.xcresult",
          "config",
        ],
      });
      assert.equal(
        await Deno.readTextFile(join(out, "test-results/TEST-x.xml")),
        "<testsuite name='x'/>",
      );
      assert.equal(
        await Deno.readTextFile(join(out, "test-results/Run.xcresult/Data/data.0")),
        "run",
      );
    });

    it("a stopped workspace: sync says to start it (exit 4)", async () => {
      assert.equal((await rig.vm(["stop", ws])).code, 0);
      const r = await rig.sync(["sync", ws]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /cal-vm start/);
    });
  });
}

for (const p of PROVIDERS) suite(p);
