/**
 * cal-sync's pure parts: artifact patterns and sorting, the guest listing and the copy plan,
 * hook command templates, property lists, provisioning profiles, identities, export options.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  BUNDLE_EXTENSIONS,
  categoryOf,
  compile,
  destinationFor,
  excluded,
  patternSet,
  Selector,
  shortHash,
} from "../lib/sync/patterns.ts";
import {
  GUEST_ROOTS,
  LISTING_LIMITS,
  LISTING_SCRIPT,
  listingCommand,
  ListingParser,
  parseListing,
  PRUNED,
} from "../lib/sync/listing.ts";
import { extractTar } from "../lib/sync/untar.ts";
import { forgedTar } from "./hostile/tar.ts";
import { CORE_DIR, loadDir } from "../lib/environments/registry.ts";
import { plan, type SyncManifest } from "../lib/sync/pull.ts";
import { hookScript } from "../lib/sync/hooks.ts";
import { embeddedPlist, parsePlist, type PlistDict, writePlist } from "../lib/sync/plist.ts";
import { readArchive } from "../lib/sync/archive.ts";
import { coversBundle, methodOf, parseProfile } from "../lib/sync/profile.ts";
import { exportOptions, identityMatches, parseIdentities } from "../lib/sync/sign.ts";
import { REPO } from "./helpers.ts";

const FIXTURES = join(REPO, "tests", "fixtures", "sync");

describe("artifact patterns", () => {
  const m = (p: string, rel: string) => compile(p).test(rel);

  it("a pattern without a slash matches the name at any depth, never a dotfile by wildcard", () => {
    assert.ok(m("*.apk", "app-release.apk"));
    assert.ok(m("*.apk", "repo/app/build/outputs/apk/release/app-release.apk"));
    assert.ok(!m("*.apk", "repo/app-release.apk.tmp"));
    assert.ok(!m("*.apk", "repo/.hidden.apk"));
    assert.ok(m(".*.apk", "repo/.hidden.apk"));
    assert.ok(m("*.{ipa,apk}", "x/My App.ipa"));
    assert.ok(m("app-[rd]*.apk", "x/app-debug.apk"));
    assert.ok(!m("app-[!rd]*.apk", "x/app-debug.apk"));
  });

  it("a pattern with a slash matches from any folder boundary", () => {
    assert.ok(m("build/outputs/**", "build/outputs/apk/release/app.apk"));
    assert.ok(m("build/outputs/**", "repo/app/build/outputs/mapping.txt"));
    assert.ok(!m("build/outputs/**", "repo/app/build/outputs"));
    assert.ok(!m("build/outputs/**", "repo/xbuild/outputs/a"));
    assert.ok(!m("build/outputs/**", "repo/build/outputsx/a"));
    assert.ok(m("target/release/*", "repo/target/release/myapp"));
    assert.ok(!m("target/release/*", "repo/target/release/deps/libx.rlib"));
    assert.ok(m("dist/*.tar.gz", "pkg/dist/pkg-1.0.tar.gz"));
    assert.ok(m("build/app/outputs/**/*.apk", "f/build/app/outputs/flutter-apk/app-release.apk"));
    assert.ok(m("build/app/outputs/**/*.apk", "f/build/app/outputs/app-release.apk"));
    assert.ok(m("**/x.ipa", "a/b/x.ipa"));
  });

  it("a leading slash anchors a pattern to the search root", () => {
    assert.ok(m("/dist/*.whl", "dist/a.whl"));
    assert.ok(!m("/dist/*.whl", "repo/dist/a.whl"));
    assert.ok(m("./dist/*.whl", "repo/dist/a.whl"));
  });

  it("an exclude matches the path or any folder above it", () => {
    const ex = ["node_modules/**", "DerivedData/**", "*.xcuserdata", "build/intermediates/**"]
      .map(compile);
    assert.ok(excluded("web/node_modules/pkg/bin/tool.exe", ex));
    assert.ok(excluded("ios/DerivedData/Build/Products/A.app", ex));
    assert.ok(excluded("ios/App.xcodeproj/me.xcuserdata/x.app", ex));
    assert.ok(excluded("app/build/intermediates/apk/x.apk", ex));
    assert.ok(!excluded("app/build/outputs/apk/x.apk", ex));
    assert.ok(!excluded("MyApp-abc/Build/Products/Release-iphoneos/MyApp.app", ex));
  });

  it("merges config and environment patterns, remembering where each came from", () => {
    const set = patternSet(["*.ipa", "*.apk"], [
      {
        name: "android",
        artifacts: { patterns: ["*.apk", "build/outputs/**"], exclude: [".gradle/**"] },
      },
      { name: "node", artifacts: { patterns: ["dist/**"], exclude: ["node_modules/**"] } },
      { name: "go" },
    ]);
    assert.deepEqual(set.include, [
      { pattern: "*.ipa", from: "config" },
      { pattern: "*.apk", from: "config" },
      { pattern: "build/outputs/**", from: "android" },
      { pattern: "dist/**", from: "node" },
    ]);
    const s = new Selector(set);
    assert.deepEqual(s.match("a/build/outputs/m.txt"), {
      pattern: "build/outputs/**",
      from: "android",
    });
    assert.equal(
      s.match("a/node_modules/x/dist/y.js"),
      undefined,
      "excludes apply to every pattern",
    );
    assert.equal(s.match("a/README.md"), undefined);
  });

  it("sorts artifacts into builds, test-results and logs", () => {
    for (
      const b of [
        "MyApp.ipa",
        "app.apk",
        "app.aab",
        "MyApp.app",
        "MyApp.xcarchive",
        "x.exe",
        "x.dll",
        "lib.jar",
      ]
    ) {
      assert.equal(categoryOf(`repo/out/${b}`), "builds", b);
    }
    for (
      const t of [
        "Tests.xcresult",
        "junit.xml",
        "report.junit.xml",
        "TEST-com.example.AppTest.xml",
        "r.trx",
      ]
    ) {
      assert.equal(categoryOf(`repo/${t}`), "test-results", t);
    }
    assert.equal(categoryOf("repo/build/test-results/test/results.xml"), "test-results");
    assert.equal(categoryOf("repo/AndroidManifest.xml"), "builds");
    assert.equal(categoryOf("repo/build.log"), "logs");
  });

  it("sorts test reports and coverage into test-results, build logs into logs", () => {
    for (
      const t of [
        "fastlane/test_output/report.junit",
        "target/failsafe-reports/it.xml",
        "Tests/TestResults/0f1e/results.xml",
        "coverage/lcov.info",
        "coverage/clover.xml",
        "coverage/cobertura-coverage.xml",
        "coverage/coverage-final.json",
        "coverage.xml",
        "coverage.json",
        "coverage.lcov",
        "TestResults/0f1e/coverage.cobertura.xml",
        "target/site/jacoco/jacoco.xml",
        "build/reports/jacoco/test/jacocoTestReport.xml",
        "app/build/reports/coverage/test/debug/report.xml",
      ]
    ) {
      assert.equal(categoryOf(`repo/${t}`), "test-results", t);
    }
    for (const l of ["msbuild.binlog", "build/Testing/Temporary/LastTest.log"]) {
      assert.equal(categoryOf(`repo/${l}`), "logs", l);
    }
    for (const b of ["coverage/dist/app.js", "coverage/report.html", "pom.xml"]) {
      assert.equal(categoryOf(`repo/${b}`), "builds", b);
    }
  });

  it("the core environments take their tools' default test reports, coverage and logs", async () => {
    const envs = (await loadDir(CORE_DIR, "core")).map((p) => p.manifest);
    const selector = (name: string) => {
      const e = envs.find((m) => m.name === name);
      assert.ok(e, name);
      return new Selector(patternSet([], [e]));
    };
    const cases: Record<string, [string, string][]> = {
      android: [
        ["app/build/test-results/testDebugUnitTest/TEST-com.example.AppTest.xml", "test-results"],
        ["app/build/reports/coverage/test/debug/report.xml", "test-results"],
        ["app/build/reports/jacoco/test/jacocoTestReport.xml", "test-results"],
        ["app/build/outputs/androidTest-results/connected/TEST-Pixel-app-.xml", "test-results"],
      ],
      java: [
        ["svc/build/test-results/test/TEST-com.example.SvcTest.xml", "test-results"],
        ["svc/target/surefire-reports/TEST-com.example.SvcTest.xml", "test-results"],
        ["svc/target/failsafe-reports/TEST-com.example.SvcIT.xml", "test-results"],
        ["svc/build/reports/jacoco/test/jacocoTestReport.xml", "test-results"],
        ["svc/target/site/jacoco/jacoco.xml", "test-results"],
      ],
      ios: [
        ["App/build/reports/junit.xml", "test-results"],
        ["App/fastlane/test_output/report.junit", "test-results"],
      ],
      node: [
        ["web/junit.xml", "test-results"],
        ["web/test-results.xml", "test-results"],
        ["web/coverage/lcov.info", "test-results"],
        ["web/coverage/clover.xml", "test-results"],
        ["web/coverage/cobertura-coverage.xml", "test-results"],
        ["web/coverage/coverage-final.json", "test-results"],
      ],
      python: [
        ["lib/coverage.xml", "test-results"],
        ["lib/coverage.json", "test-results"],
        ["lib/coverage.lcov", "test-results"],
      ],
      flutter: [["app/coverage/lcov.info", "test-results"]],
      dotnet: [
        ["Api.Tests/TestResults/me_mac_2026-01-17_10_30_00.trx", "test-results"],
        ["Api.Tests/TestResults/0f1e2d3c/coverage.cobertura.xml", "test-results"],
        ["Api/msbuild.binlog", "logs"],
      ],
      cpp: [["lib/build/Testing/Temporary/LastTest.log", "logs"]],
    };
    for (const [env, files] of Object.entries(cases)) {
      const s = selector(env);
      for (const [rel, category] of files) {
        assert.ok(s.match(rel), `${env} takes ${rel}`);
        assert.equal(categoryOf(rel), category, rel);
      }
    }
    // Artifacts, not every report, log or XML file in the repository.
    for (const env of envs) {
      const s = new Selector(patternSet([], [env]));
      for (
        const rel of [
          "repo/npm-debug.log",
          "repo/app/src/main/AndroidManifest.xml",
          "repo/pom.xml",
          "repo/app/build/reports/tests/testDebugUnitTest/index.html",
          "repo/coverage/lcov-report/index.html",
          "repo/app/build/test-results/test/binary/results.bin",
          "repo/web/node_modules/pkg/junit.xml",
        ]
      ) {
        assert.equal(s.match(rel), undefined, `${env.name} takes ${rel}`);
      }
    }
  });

  it("gives a same-named artifact from another source a stable, distinct name", async () => {
    const taken = new Set(["builds/app-release.apk"]);
    const d1 = await destinationFor(
      "workspace/a/app-release.apk",
      "a/app-release.apk",
      (d) => taken.has(d),
    );
    const d2 = await destinationFor(
      "workspace/a/app-release.apk",
      "a/app-release.apk",
      (d) => taken.has(d),
    );
    assert.equal(d1, d2);
    assert.equal(d1, `builds/app-release-${await shortHash("workspace/a/app-release.apk")}.apk`);
    assert.equal(
      await destinationFor("workspace/a/My App.ipa", "a/My App.ipa", () => false),
      "builds/My App.ipa",
    );
  });
});

describe("guest listing and copy plan", () => {
  const rec = (...f: string[]) => f.join("\t") + "\0";
  const listing = parseListing(
    "home\t/Users/admin\0" +
      "root\tworkspace\0" +
      rec("f", "10", "100", "1", "0", "workspace/a/build/outputs/apk/app-release.apk") +
      rec("f", "20", "100", "1", "0", "workspace/b/app-release.apk") +
      rec("f", "5", "100", "1", "0", "workspace/a/README.md") +
      rec("f", "7", "100", "1", "0", "workspace/a/odd\tname\nwith newline.ipa") +
      rec("b", "300", "160", "3", "1", "workspace/a/Tests.xcresult") +
      rec("b", "30", "170", "2", "0", "workspace/a/Half.xcarchive") +
      rec("f", "1", "1", "1", "0", "workspace/a/bad\uFFFDname.apk") +
      "root\tLibrary/Developer/Xcode/Archives\0" +
      rec(
        "b",
        "900",
        "180",
        "12",
        "1",
        "Library/Developer/Xcode/Archives/2026-01-17/MyApp 1-17-26.xcarchive",
      ),
  );
  const set = patternSet(["*.ipa", "*.apk", "*.xcarchive", "*.xcresult"], []);

  it("parses names with tabs and newlines, and keeps paths relative to their root", () => {
    assert.equal(listing.home, "/Users/admin");
    assert.deepEqual(listing.skipped, ["workspace/a/bad\uFFFDname.apk"]);
    const odd = listing.candidates.find((c) => c.path.includes("odd"));
    assert.equal(odd?.rel, "a/odd\tname\nwith newline.ipa");
    const archive = listing.candidates.at(-1)!;
    assert.equal(archive.rel, "2026-01-17/MyApp 1-17-26.xcarchive");
    assert.deepEqual(
      {
        type: archive.type,
        bytes: archive.bytes,
        files: archive.files,
        complete: archive.complete,
      },
      { type: "bundle", bytes: 900, files: 12, complete: true },
    );
  });

  it("takes exactly the matching, complete artifacts; a second plan finds them synced", async () => {
    const empty: SyncManifest = { version: 1, items: {} };
    const host = new Set<string>();
    const first = await plan(listing, set, empty, (d) => host.has(d));
    assert.deepEqual(first.incomplete.map((c) => c.rel), ["a/Half.xcarchive"]);
    const dests = first.planned.map((p) => p.dest);
    const hash = await shortHash("workspace/b/app-release.apk");
    assert.deepEqual(dests, [
      "builds/app-release.apk",
      `builds/app-release-${hash}.apk`,
      "builds/odd\tname\nwith newline.ipa",
      "test-results/Tests.xcresult",
      "builds/MyApp 1-17-26.xcarchive",
    ]);
    assert.ok(first.planned.every((p) => !p.synced));
    // Record them as synced, as a sync does.
    const manifest: SyncManifest = { version: 1, items: {} };
    for (const p of first.planned) {
      manifest.items[p.candidate.path] = {
        dest: p.dest,
        bytes: p.candidate.bytes,
        mtime: p.candidate.mtime,
        files: p.candidate.files,
        at: "",
      };
      host.add(p.dest);
    }
    const second = await plan(listing, set, manifest, (d) => host.has(d));
    assert.deepEqual(second.planned.map((p) => p.dest), dests, "destinations are stable");
    assert.ok(second.planned.every((p) => p.synced));
    // A changed source, or a host copy someone deleted, is copied again.
    manifest.items["workspace/b/app-release.apk"].bytes = 19;
    host.delete("test-results/Tests.xcresult");
    const third = await plan(listing, set, manifest, (d) => host.has(d));
    assert.deepEqual(
      third.planned.filter((p) => !p.synced).map((p) => p.candidate.path),
      ["workspace/b/app-release.apk", "workspace/a/Tests.xcresult"],
    );
  });

  it("the guest walk searches Xcode's Logs/Test, and still nothing else of DerivedData", async () => {
    assert.ok(GUEST_ROOTS.includes("Library/Developer/Xcode/DerivedData/*/Logs/Test"));
    const home = await Deno.makeTempDir();
    try {
      const files = [
        "workspace/app/build/test-results/test/TEST-x.xml",
        "Library/Developer/Xcode/DerivedData/App-abc/Logs/Test/Run.xcresult/Info.plist",
        "Library/Developer/Xcode/DerivedData/App-abc/Logs/Test/Run.xcresult/Data/data.0",
        "Library/Developer/Xcode/DerivedData/App-abc/Logs/Test/LogStoreManifest.plist",
        "Library/Developer/Xcode/DerivedData/App-abc/Logs/Build/x.xcactivitylog",
        "Library/Developer/Xcode/DerivedData/App-abc/Index.noindex/DataStore/v5/units/u",
        "Library/Developer/Xcode/DerivedData/App-abc/SourcePackages/checkouts/pkg/Info.plist",
        "Library/Developer/Xcode/DerivedData/My App-def/Logs/Test/Other.xcresult/Info.plist",
        "Library/Developer/Xcode/DerivedData/App-abc/Build/Products/Debug/App.app/Info.plist",
      ];
      for (const f of files) {
        await Deno.mkdir(join(home, f, ".."), { recursive: true });
        await Deno.writeTextFile(join(home, f), "x");
      }
      const out = await new Deno.Command("perl", {
        args: [
          "-e",
          LISTING_SCRIPT,
          BUNDLE_EXTENSIONS.join(","),
          PRUNED.join(","),
          ...GUEST_ROOTS,
        ],
        env: { HOME: home },
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const l = parseListing(new TextDecoder().decode(out.stdout));
      const D = "Library/Developer/Xcode/DerivedData";
      assert.deepEqual(
        l.candidates.map((c) => [c.type, c.path, c.rel, c.complete]).sort(),
        [
          ["bundle", `${D}/App-abc/Build/Products/Debug/App.app`, "Debug/App.app", true],
          ["bundle", `${D}/App-abc/Logs/Test/Run.xcresult`, "Run.xcresult", true],
          [
            "file",
            `${D}/App-abc/Logs/Test/LogStoreManifest.plist`,
            "LogStoreManifest.plist",
            true,
          ],
          ["bundle", `${D}/My App-def/Logs/Test/Other.xcresult`, "Other.xcresult", true],
          [
            "file",
            "workspace/app/build/test-results/test/TEST-x.xml",
            "app/build/test-results/test/TEST-x.xml",
            true,
          ],
        ].sort(),
      );
      const run = l.candidates.find((c) => c.rel === "Run.xcresult")!;
      assert.equal(run.files, 2);
      // Sorted into test-results; the ios environment's `DerivedData/**` exclude is relative to
      // the search root, so it does not hide Logs/Test.
      const ios = patternSet(["*.xcresult", "*.app"], [{
        name: "ios",
        artifacts: { patterns: ["*.xcresult"], exclude: ["DerivedData/**"] },
      }]);
      const r = await plan(l, ios, { version: 1, items: {} }, () => false);
      assert.deepEqual(r.planned.map((p) => p.dest).sort(), [
        "builds/App.app",
        "test-results/Other.xcresult",
        "test-results/Run.xcresult",
      ]);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  });

  it("never overwrites a host file it did not put there", async () => {
    const host = new Set(["builds/app-release.apk"]); // e.g. written through the shared folder
    const r = await plan(listing, set, { version: 1, items: {} }, (d) => host.has(d));
    assert.equal(
      r.planned[0].dest,
      `builds/app-release-${await shortHash("workspace/a/build/outputs/apk/app-release.apk")}.apk`,
    );
  });
});

describe("a hostile guest's listing and archive", () => {
  const rec = (...f: string[]) => f.join("\t") + "\0";

  it("refuses ../, absolute, empty-part, unknown-root and malformed records; the first home counts", () => {
    const l = parseListing(
      "home\t/Users/admin\0" +
        "root\toutput\0" +
        rec("f", "1", "1", "1", "0", "output/ok.ipa") +
        rec("f", "1", "1", "1", "0", "output/../../victim/x.ipa") +
        rec("f", "1", "1", "1", "0", "/etc/cron.d/x.ipa") +
        rec("f", "1", "1", "1", "0", "output//x.ipa") +
        rec("f", "1", "1", "1", "0", "output/./x.ipa") +
        rec("f", "1", "1", "1", "0", "workspace/not-under-its-root.ipa") +
        rec("f", "x", "1", "1", "0", "output/bad-size.ipa") +
        rec("f", "1", "1", "1", "0", "output/ok.ipa") +
        "home\t/Users/admin\x1b]0;forged\x07\0" +
        "root\t../..\0" +
        rec("f", "1", "1", "1", "0", "../../x.ipa") +
        "root\tLibrary/Developer/Xcode/DerivedData/P/Build/Products\0" +
        rec("b", "1", "1", "1", "1", "Library/Developer/Xcode/DerivedData/P/Build/Products/A.app"),
    );
    assert.equal(l.home, "/Users/admin");
    assert.deepEqual(l.candidates.map((c) => c.path), [
      "output/ok.ipa",
      "Library/Developer/Xcode/DerivedData/P/Build/Products/A.app",
    ]);
    assert.equal(l.rejected, 10);
  });

  it("a million entries and a megabyte name: bounded, and said so", () => {
    const p = new ListingParser((rel) => rel.endsWith(".ipa"));
    const enc = new TextEncoder();
    p.push(enc.encode("home\t/Users/admin\0root\toutput\0"));
    p.push(enc.encode(rec("f", "1", "0", "1", "0", "output/" + "A".repeat(1_000_000) + ".ipa")));
    let ok = true;
    const t0 = performance.now();
    for (let i = 0; i < 1000 && ok; i++) {
      let chunk = "";
      for (let j = 0; j < 1000; j++) {
        chunk += rec("f", "1", "0", "1", "0", `output/h/${i}-${j}.ipa`);
      }
      ok = p.push(enc.encode(chunk));
    }
    assert.equal(ok, false, "the parser stops at a bound");
    assert.match(p.listing.truncated ?? "", /artifacts|entries/);
    assert.ok(p.listing.candidates.length <= LISTING_LIMITS.candidates);
    assert.equal(p.listing.rejected, 1, "the megabyte name is refused");
    assert.ok(p.listing.rejectedExamples[0].length < 300, "and not quoted whole");
    assert.ok(performance.now() - t0 < 30_000);
  });

  it("the walk runs by system path with none of the guest's environment", () => {
    const cmd = listingCommand();
    assert.match(cmd, /^cd "\$HOME" && exec \/usr\/bin\/env -i HOME="\$HOME" /);
    assert.match(cmd, / '?\/usr\/bin\/perl'? /);
  });

  it("unpacks only plain files and folders of what was asked for", async () => {
    const dir = await Deno.makeTempDir();
    const victim = await Deno.makeTempDir();
    try {
      const tar = forgedTar([
        { name: "output/dev.ipa", type: "chardev", mode: 0o666, major: 1, minor: 3 },
        { name: "output/fifo.ipa", type: "fifo", mode: 0o666 },
        { name: "output/suid.ipa", type: "file", mode: 0o6755, content: "suid" },
        { name: "output/link.ipa", type: "symlink", target: `${victim}/x` },
        { name: "output/hard.ipa", type: "hardlink", target: `${victim}/x` },
        { name: `${victim}/abs.ipa`, type: "file", content: "abs" },
        { name: "../escape.ipa", type: "file", content: "up" },
        { name: "output/not-asked.ipa", type: "file", content: "no" },
        { name: "./output/A.app/", type: "dir", mode: 0o7777 },
        { name: "output/A.app/Info.plist", type: "file", content: "<plist/>" },
        { name: "output/A.app/Current", type: "symlink", target: "Versions/A" },
        { name: "output/A.app/Out", type: "symlink", target: "../../x" },
        { name: "output/A.app/Current/evil", type: "file", content: "through a link" },
        { name: "output/ok.ipa", type: "file", mode: 0o644, content: "ok" },
      ]);
      const stream = new Blob([new Uint8Array(tar), new Uint8Array(1024)]).stream();
      const wanted = new Map<string, "file" | "bundle">([
        ["output/dev.ipa", "file"],
        ["output/fifo.ipa", "file"],
        ["output/suid.ipa", "file"],
        ["output/link.ipa", "file"],
        ["output/hard.ipa", "file"],
        ["output/A.app", "bundle"],
        ["output/ok.ipa", "file"],
      ]);
      const r = await extractTar(stream, dir, wanted);
      const found: string[] = [];
      const walk = async (d: string) => {
        for await (const e of Deno.readDir(d)) {
          const p = join(d, e.name);
          const st = await Deno.lstat(p);
          found.push(
            `${p.slice(dir.length + 1)} ${
              st.isSymlink ? "link->" + await Deno.readLink(p) : st.isDirectory ? "dir" : "file"
            } ${(st.mode! & 0o7777).toString(8)}`,
          );
          if (st.isDirectory) await walk(p);
        }
      };
      await walk(dir);
      const mode = (m: number) => (m & ~Deno.umask()).toString(8);
      assert.deepEqual(found.sort(), [
        `output dir ${mode(0o755)}`,
        `output/A.app dir ${mode(0o755)}`,
        `output/A.app/Current link->Versions/A 777`,
        `output/A.app/Info.plist file ${mode(0o644)}`,
        `output/ok.ipa file ${mode(0o644)}`,
        `output/suid.ipa file ${mode(0o755)}`,
      ]);
      assert.equal(r.skipped, 9);
      assert.deepEqual([...Deno.readDirSync(victim)], []);
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(victim, { recursive: true });
    }
  });
});

describe("hook templates", () => {
  it("turns {} into a positional parameter in every quoting context", () => {
    assert.equal(hookScript("./sign.sh {}"), './sign.sh "$1"');
    assert.equal(hookScript('echo "got {} ok"'), 'echo "got $1 ok"');
    assert.equal(hookScript("echo 'got {} ok'"), `echo 'got '"$1"' ok'`);
    assert.equal(hookScript('echo "$(basename {})"'), 'echo "$(basename "$1")"');
    assert.equal(hookScript("cp {} ~/Desktop && say done"), 'cp "$1" ~/Desktop && say done');
    assert.equal(hookScript("echo \\{} {}"), 'echo \\{} "$1"');
    assert.equal(hookScript("notify-send built"), "notify-send built");
  });

  it("passes hostile paths through as one unchanged argument", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const hostile = join(dir, `a b'c"d $(touch pwned) \`id\` x\ny;z.ipa`);
      const templates = [
        "printf '%s\\0' {}",
        'printf "%s\\0" "{}"',
        "printf '%s\\0' '{}'",
        'printf "%s\\0" "$(printf %s {})"',
      ];
      for (const t of templates) {
        const out = await new Deno.Command("sh", {
          args: ["-c", hookScript(t), "cal-hook", hostile],
          cwd: dir,
        }).output();
        assert.equal(new TextDecoder().decode(out.stdout), hostile + "\0", t);
      }
      const names = [...Deno.readDirSync(dir)].map((e) => e.name);
      assert.deepEqual(names, [], "nothing was executed from the name");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

describe("property lists", () => {
  it("parses the value types and entities, and writes them back as Xcode does", () => {
    const xml = writePlist({
      s: "a & <b>",
      i: 42,
      r: 1.5,
      t: true,
      f: false,
      d: new Date("2026-01-17T10:30:00Z"),
      data: new Uint8Array([1, 2, 255]),
      a: ["x", { k: "v" }],
    });
    assert.match(xml, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<!DOCTYPE plist/);
    assert.match(xml, /\t<key>s<\/key>\n\t<string>a &amp; &lt;b&gt;<\/string>/);
    const v = parsePlist(xml) as PlistDict;
    assert.equal(v.s, "a & <b>");
    assert.equal(v.i, 42);
    assert.equal(v.r, 1.5);
    assert.equal(v.t, true);
    assert.equal(v.f, false);
    assert.equal((v.d as Date).toISOString(), "2026-01-17T10:30:00.000Z");
    assert.deepEqual([...(v.data as Uint8Array)], [1, 2, 255]);
    assert.deepEqual(v.a, ["x", { k: "v" }]);
  });

  it("finds the plist inside a signed envelope, and reports junk clearly", () => {
    const inner = writePlist({ Name: "x" });
    const bytes = new Uint8Array([0x30, 0x82, 0, 1, ...new TextEncoder().encode(inner), 0xa0, 0]);
    assert.equal(embeddedPlist(bytes), inner.trimEnd());
    assert.equal(embeddedPlist(new Uint8Array([1, 2, 3])), undefined);
    assert.throws(() => parsePlist("<plist><dict><key>a</key><bogus/></dict></plist>"), /bogus/);
  });
});

describe("provisioning profiles and signing inputs", () => {
  it("reads the fixture profile (a real CMS envelope)", async () => {
    const path = join(FIXTURES, "dev.mobileprovision");
    const p = await parseProfile(await Deno.readFile(path), path);
    assert.equal(p.name, "MyApp Development & Test");
    assert.equal(p.uuid, "6F9A1C2E-3B4D-4E5F-8A7B-1C2D3E4F5A6B");
    assert.equal(p.teamId, "ABCDE12345");
    assert.equal(p.bundleId, "com.example.MyApp");
    assert.equal(p.method, "development");
    assert.equal(p.devices, 1);
    assert.equal(p.expires?.toISOString(), "2099-01-01T00:00:00.000Z");
    assert.deepEqual(p.certificates, ["F8924F08C9B962778C1C05B3B0BAFB0405FE6218"]);
  });

  it("derives the method from devices, all-devices and get-task-allow", () => {
    assert.equal(methodOf({ ProvisionsAllDevices: true }), "enterprise");
    assert.equal(
      methodOf({ ProvisionedDevices: ["x"], Entitlements: { "get-task-allow": true } }),
      "development",
    );
    assert.equal(
      methodOf({ ProvisionedDevices: ["x"], Entitlements: { "get-task-allow": false } }),
      "ad-hoc",
    );
    assert.equal(methodOf({ Entitlements: {} }), "app-store");
  });

  it("rejects a file that is not a profile", async () => {
    await assert.rejects(
      parseProfile(new TextEncoder().encode("hello"), "x.mobileprovision"),
      /not a provisioning profile/,
    );
  });

  it("matches app ids with wildcards", () => {
    assert.ok(coversBundle("com.example.MyApp", "com.example.MyApp"));
    assert.ok(!coversBundle("com.example.MyApp", "com.example.MyApp.widget"));
    assert.ok(coversBundle("com.example.*", "com.example.MyApp.widget"));
    assert.ok(coversBundle("*", "org.other"));
  });

  it("parses the keychain's identities and matches them by name, prefix or SHA-1", () => {
    const ids = parseIdentities(
      '  1) F8924F08C9B962778C1C05B3B0BAFB0405FE6218 "Apple Development: you@example.com (ABCDE12345)"\n' +
        '  2) 0123456789ABCDEF0123456789ABCDEF01234567 "Apple Distribution: Example Team (ABCDE12345)"\n' +
        "     2 valid identities found\n",
    );
    assert.equal(ids.length, 2);
    const [dev, dist] = ids;
    assert.ok(identityMatches("Apple Development: you@example.com", dev));
    assert.ok(identityMatches("Apple Development: you@example.com (ABCDE12345)", dev));
    assert.ok(identityMatches("Apple Development", dev));
    assert.ok(identityMatches("f8924f08c9b962778c1c05b3b0bafb0405fe6218", dev));
    assert.ok(!identityMatches("Apple Development", dist));
    assert.ok(!identityMatches("Apple Development: you@example", dev));
  });

  it("writes the export options Xcode expects", () => {
    assert.equal(
      exportOptions({
        method: "development",
        teamId: "ABCDE12345",
        certificate: "Apple Development: you@example.com (ABCDE12345)",
        profiles: { "com.example.MyApp": "6F9A1C2E-3B4D-4E5F-8A7B-1C2D3E4F5A6B" },
      }),
      `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>method</key>
	<string>development</string>
	<key>provisioningProfiles</key>
	<dict>
		<key>com.example.MyApp</key>
		<string>6F9A1C2E-3B4D-4E5F-8A7B-1C2D3E4F5A6B</string>
	</dict>
	<key>signingCertificate</key>
	<string>Apple Development: you@example.com (ABCDE12345)</string>
	<key>signingStyle</key>
	<string>manual</string>
	<key>teamID</key>
	<string>ABCDE12345</string>
</dict>
</plist>
`,
    );
  });

  it("reads the fixture archive and refuses an incomplete one", async () => {
    const a = await readArchive(join(FIXTURES, "MyApp.xcarchive"));
    assert.deepEqual(
      { name: a.name, bundleId: a.bundleId, extensions: a.extensions },
      { name: "MyApp", bundleId: "com.example.MyApp", extensions: [] },
    );
    const dir = await Deno.makeTempDir();
    try {
      await Deno.mkdir(join(dir, "Half.xcarchive"));
      await assert.rejects(readArchive(join(dir, "Half.xcarchive")), /no Info.plist/);
      await assert.rejects(readArchive(join(dir, "Nope.xcarchive")), /No archive/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
