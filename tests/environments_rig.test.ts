/**
 * cal-env on the rig, against a real guest: `env install flutter` installs what flutter needs
 * first (the brew stand-in's log shows the order), markers and the env file, `verify` with a
 * failing check and its reason, `remove` refused while required, an install that fails halfway
 * and resumes, templates and `--env` at init, and a community plugin installed on first start
 * with the template's post_init.
 *
 * The workspace tests run on both providers. The guest has Homebrew's stand-in (the fake tart's
 * image has it; a sandbox guest is given it) but no JDK, Android SDK or Xcode, so the SDK tools
 * the core manifests call are stand-ins too (tests/fixtures/environments/bin/fake-tool): they log
 * their calls and print what the manifests' checks look for.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, REAL_TART, Rig, show, type TestProvider } from "./rig_env.ts";
import { REPO } from "./helpers.ts";

const FIXTURES = join(REPO, "tests", "fixtures", "environments");
const TOOLS = [
  "java",
  "javac",
  "mvn",
  "gradle",
  "kotlin",
  "adb",
  "sdkmanager",
  "avdmanager",
  "flutter",
  "dart",
  "xcodes",
  "xcodebuild",
  "swift",
  "xcrun",
  "pod",
];
const SECRET = "apple-id-" + crypto.randomUUID() + "-SECRET";
const LONG = { timeoutMs: 600_000 };
const skip = REAL_TART ? "uses the rig's Homebrew stand-in and SDK stand-ins" : false;

async function sh(rig: Rig, ws: string, command: string, stdin?: string) {
  const r = await rig.vm(["ssh", ws, command], stdin === undefined ? {} : { stdin });
  assert.equal(r.code, 0, show(r));
  return r.stdout;
}

/** The brew stand-in's log: one line per call ("install --cask flutter"). */
async function brewLog(rig: Rig, ws: string): Promise<string[]> {
  return (await sh(rig, ws, "cat /opt/homebrew/var/log/brew.log 2>/dev/null || true"))
    .split("\n").filter(Boolean);
}

async function installTools(rig: Rig, ws: string) {
  if (rig.provider === "sandbox") {
    // A sandbox guest has no Homebrew: give it the fake tart image's stand-in.
    const brew = join(REPO, "tests", "faketart", "image", "root", "opt", "homebrew", "bin", "brew");
    await sh(
      rig,
      ws,
      "mkdir -p /opt/homebrew/bin && cat > /opt/homebrew/bin/brew && chmod +x /opt/homebrew/bin/brew",
      await Deno.readTextFile(brew),
    );
  }
  const script = await Deno.readTextFile(join(FIXTURES, "bin", "fake-tool"));
  await sh(
    rig,
    ws,
    "mkdir -p ~/.local/bin && cat > ~/.local/bin/fake-tool && chmod +x ~/.local/bin/fake-tool && " +
      `for t in ${TOOLS.join(" ")}; do ln -sf fake-tool ~/.local/bin/$t; done && ` +
      // Ahead of the rig's own sudo: system-wide steps have nowhere to go in this guest.
      "ln -sf ~/.local/bin/fake-tool /opt/homebrew/bin/sudo",
    script,
  );
}

/** Every file under a folder, for "the secret is nowhere" checks. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) out.push(...await filesUnder(p));
      else if (e.isFile) out.push(p);
    }
  } catch { /* gone */ }
  return out;
}

function suite(provider: TestProvider) {
  describe(`environments in a workspace (${provider})`, { skip }, () => {
    let rig: Rig;
    let ws: string;

    before(async () => {
      rig = await Rig.create("", provider);
      ws = rig.name("envs");
      const init = await rig.vm(["init", ws]);
      assert.equal(init.code, 0, show(init));
      const start = await rig.vm(["start", ws]);
      assert.equal(start.code, 0, show(start));
      await installTools(rig, ws);
    });
    after(async () => await rig.close());

    it("env install flutter installs what flutter needs first, in dependency order", async () => {
      const r = await rig.cal(["isolation", "env", "install", ws, "flutter", "--json"], {
        ...LONG,
        env: { XCODES_USERNAME: "dev@example.com", XCODES_PASSWORD: SECRET },
      });
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(r.records.map((x) => [x.environment, x.status]), [
        ["ios", "installed"],
        ["java", "installed"],
        ["android", "installed"],
        ["flutter", "installed"],
      ]);
      const installs = (await brewLog(rig, ws)).filter((l) => /^(install|reinstall) /.test(l));
      assert.deepEqual(installs, [
        "install xcodes",
        "install aria2",
        "install swiftlint",
        "install swiftformat",
        "install xcbeautify",
        "install cocoapods",
        "install fastlane",
        "install openjdk@17",
        "install maven",
        "install gradle",
        "install kotlin",
        "install --cask android-commandlinetools",
        "install --cask flutter",
      ]);
      // Progress per step, as events on stderr.
      assert.match(
        r.stderr,
        /"event":"environment".*Installing java 1\.0\.0 \(required by android\)/,
      );
      assert.match(r.stderr, /"message":"android: brew install kotlin"/);
      assert.match(r.stderr, /"message":"android: sdkmanager --sdk_root=/);
      assert.match(r.stderr, /"message":"flutter: installed \(1\.0\.0\)"/);
    });

    it("the Apple ID reached xcodes through stdin, and nothing kept it", async () => {
      const log = await sh(rig, ws, "cat ~/fake-tools.log");
      assert.match(log, new RegExp(`xcodes saw a password of ${SECRET.length} characters`));
      assert.match(log, /^xcodes install --latest --experimental-unxip$/m);
      assert.ok(!log.includes(SECRET), "not in any tool's argv");
      assert.ok(!(await brewLog(rig, ws)).join("\n").includes(SECRET));
      const guestFiles = await sh(rig, ws, "cat ~/.cal-env/* 2>/dev/null");
      assert.ok(!guestFiles.includes(SECRET));
      for (const f of await filesUnder(rig.env.CAL_HOME)) {
        const text = await Deno.readTextFile(f).catch(() => "");
        assert.ok(!text.includes(SECRET), f);
      }
    });

    it("markers are written last, and the env file reaches every command", async () => {
      const ls = await sh(rig, ws, "ls ~/.cal-env");
      for (const n of ["ios", "java", "android", "flutter"]) {
        assert.match(ls, new RegExp(`^${n}\\.installed$`, "m"));
      }
      assert.doesNotMatch(ls, /\.(failed|progress)$/m);
      const marker = JSON.parse(await sh(rig, ws, "cat ~/.cal-env/android.installed"));
      assert.equal(marker.version, "1.0.0");
      assert.deepEqual(marker.options, { api_level: "35", build_tools: "35.0.0" });
      assert.ok(Date.parse(marker.installed_at) > Date.now() - 600_000);
      const vars = await sh(rig, ws, 'printf "%s\\n%s\\n%s" "$ANDROID_HOME" "$JAVA_HOME" "$PATH"');
      const [androidHome, javaHome, path] = vars.split("\n");
      assert.equal(androidHome, "/Users/admin/Library/Android/sdk");
      assert.equal(javaHome, "/opt/homebrew/opt/openjdk@17/libexec/openjdk.jdk/Contents/Home");
      assert.ok(
        path.startsWith("/Users/admin/.pub-cache/bin:/Users/admin/Library/Android/sdk/"),
        path,
      );
      const env = await sh(rig, ws, "cat ~/.cal-env/env");
      assert.doesNotMatch(env, /\$\(|`/);
      assert.ok(env.indexOf("# java") < env.indexOf("# android"));
      // The SDK packages were installed into ANDROID_HOME.
      assert.match(
        await sh(rig, ws, "cat ~/fake-tools.log"),
        /^sdkmanager --sdk_root=\/Users\/admin\/Library\/Android\/sdk cmdline-tools;latest platform-tools platforms;android-35 build-tools;35\.0\.0$/m,
      );
    });

    it("env list shows status, size, description and source, as in the spec", async () => {
      const r = await rig.cal(["isolation", "env", "list", ws, "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^ENVIRONMENT +STATUS +SIZE +DESCRIPTION +SOURCE$/m);
      assert.match(
        r.stdout,
        /^flutter +installed +\S+ \S+ +Flutter \(requires: ios\?, android\?\) +core$/m,
      );
      assert.match(r.stdout, /^node +available +~200 MB +Node\.js Development +core$/m);
      const j = await rig.calEnv(["list", ws, "--json"]);
      const android = j.records.find((x) => x.environment === "android")!;
      assert.equal(android.status, "installed");
      assert.deepEqual(android.requires, ["java"]);
    });

    it("env info shows provides, requires and size", async () => {
      const r = await rig.cal(["isolation", "env", "info", "android", "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /^Android Development$/m);
      assert.match(r.stdout, /^Provides: android-sdk, .*adb/m);
      assert.match(r.stdout, /^Requires: java$/m);
      assert.match(r.stdout, /^Size: ~12 GB$/m);
    });

    it("verify prints a check per environment, with versions", async () => {
      const r = await rig.cal(["isolation", "env", "verify", ws, "--human"]);
      assert.equal(r.code, 0, show(r));
      const lines = r.stdout.trim().split("\n");
      assert.deepEqual(lines.map((l) => l.split(":")[0]), [
        "✓ ios",
        "✓ java",
        "✓ android",
        "✓ flutter",
      ]);
      assert.ok(
        lines.includes(
          "✓ java: openjdk 17.0.13 2024-10-15, Apache Maven 3.9.9, Gradle 8.11.1",
        ),
        r.stdout,
      );
      assert.ok(
        lines.includes(
          "✓ flutter: Flutter 3.27.1 • channel stable, Dart SDK version: 3.6.0 (stable)",
        ),
        r.stdout,
      );
    });

    it("a failing check shows as ✗ with its reason, and exit 1", async () => {
      await sh(rig, ws, "rm ~/.local/bin/kotlin");
      try {
        const r = await rig.calEnv(["verify", ws, "--human"]);
        assert.equal(r.code, 1, show(r));
        assert.match(
          r.stdout,
          /^✗ android: `kotlin -version`: exit status 127: .*kotlin.*not found$/m,
        );
        assert.match(r.stdout, /^✓ java: /m);
        const j = await rig.calEnv(["verify", ws, "android", "--json"]);
        assert.equal(j.code, 1);
        const [rec] = j.records;
        assert.equal(rec.status, "failed");
        const checks = rec.checks as { command: string; ok: boolean }[];
        assert.deepEqual(checks.map((c) => c.ok), [true, true, true, false]);
      } finally {
        await sh(rig, ws, "ln -sf fake-tool ~/.local/bin/kotlin");
      }
    });

    it("remove of an environment another one requires is refused (exit 4)", async () => {
      const r = await rig.cal(["isolation", "env", "remove", ws, "java"]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /Cannot remove java: android requires it\./);
      assert.match(await sh(rig, ws, "ls ~/.cal-env"), /^java\.installed$/m);
    });

    it("update upgrades what is there and rewrites the marker", async () => {
      const before = JSON.parse(await sh(rig, ws, "cat ~/.cal-env/android.installed"));
      await sh(rig, ws, ": > /opt/homebrew/var/log/brew.log");
      const r = await rig.calEnv(["update", ws, "android"], LONG);
      assert.equal(r.code, 0, show(r));
      const log = await brewLog(rig, ws);
      assert.ok(log.includes("upgrade kotlin"), log.join("\n"));
      assert.ok(log.includes("upgrade --cask android-commandlinetools"), log.join("\n"));
      const marker = JSON.parse(await sh(rig, ws, "cat ~/.cal-env/android.installed"));
      assert.notEqual(marker.installed_at, before.installed_at);
    });

    it("remove takes an environment out: its casks, its marker, its env lines", async () => {
      await sh(rig, ws, ": > /opt/homebrew/var/log/brew.log");
      const r = await rig.calEnv(["remove", ws, "flutter"]);
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(await brewLog(rig, ws), ["uninstall --cask flutter"]);
      assert.doesNotMatch(await sh(rig, ws, "ls ~/.cal-env"), /^flutter\.installed$/m);
      assert.doesNotMatch(await sh(rig, ws, "cat ~/.cal-env/env"), /pub-cache/);
      // android is no longer required by anything: it can go, and takes its own formulae only.
      await sh(rig, ws, ": > /opt/homebrew/var/log/brew.log");
      const a = await rig.calEnv(["remove", ws, "android"]);
      assert.equal(a.code, 0, show(a));
      assert.deepEqual(await brewLog(rig, ws), [
        "uninstall --cask android-commandlinetools",
        "uninstall kotlin",
      ]);
      const status = await rig.vm(["status", ws, "--json"]);
      assert.deepEqual(status.records[0].environments, ["ios", "java"]);
    });

    it("an install that fails halfway leaves no marker; verify shows what is missing", async () => {
      await sh(rig, ws, "echo kotlin > /opt/homebrew/var/brew-fail; : > ~/fake-tools.log");
      const r = await rig.calEnv(["install", ws, "android"], LONG);
      assert.equal(r.code, 1, show(r));
      assert.match(
        r.stderr,
        /Installing android stopped at `brew install kotlin`: Error: kotlin: failed/,
      );
      assert.match(r.stderr, /run `cal-env install .* android` again: it resumes where it stopped/);
      assert.doesNotMatch(await sh(rig, ws, "ls ~/.cal-env"), /^android\.installed$/m);
      const v = await rig.calEnv(["verify", ws, "android", "--human"]);
      assert.equal(v.code, 1, show(v));
      assert.match(
        v.stdout,
        /^✗ android: install stopped: brew install kotlin: .*; lacks formula kotlin, cask android-commandlinetools, 3 of 3 post_install steps$/m,
      );
      const list = await rig.calEnv(["list", ws, "--json"]);
      assert.equal(list.records.find((x) => x.environment === "android")?.status, "failed");
    });

    it("a post_install failure keeps the steps done; re-running install resumes", async () => {
      await sh(
        rig,
        ws,
        "rm /opt/homebrew/var/brew-fail; echo 'sdkmanager platform-tools' > ~/fake-fail",
      );
      const r = await rig.calEnv(["install", ws, "android"], LONG);
      assert.equal(r.code, 1, show(r));
      assert.match(
        r.stderr,
        /Installing android stopped at `sdkmanager --sdk_root=.*`: sdkmanager: injected failure/,
      );
      await sh(rig, ws, ": > /opt/homebrew/var/log/brew.log");
      const again = await rig.calEnv(["install", ws, "android"], LONG);
      assert.equal(again.code, 0, show(again));
      assert.match(again.stderr, /android: formula kotlin is already installed/);
      assert.match(again.stderr, /android: already done: yes \| sdkmanager/);
      const installs = (await brewLog(rig, ws)).filter((l) => l.startsWith("install"));
      assert.deepEqual(installs, [], "nothing reinstalled");
      const tools = await sh(rig, ws, "cat ~/fake-tools.log");
      assert.equal(tools.match(/--licenses/g)?.length, 1, "licenses accepted once:\n" + tools);
      assert.match(await sh(rig, ws, "ls ~/.cal-env"), /^android\.installed$/m);
      assert.doesNotMatch(await sh(rig, ws, "ls ~/.cal-env"), /\.(failed|progress)$/m);
    });
  });
}

for (const provider of PROVIDERS) suite(provider);

describe("templates and first start", { skip }, () => {
  let rig: Rig;
  before(async () => {
    rig = await Rig.create();
  });
  after(async () => await rig.close());

  it("init --env ios --env android --agent claude-code records them, dependencies included", async () => {
    const ws = rig.name("mobile-app");
    const r = await rig.cal([
      "isolation",
      "init",
      ws,
      "--env",
      "ios",
      "--env",
      "android",
      "--agent",
      "claude-code",
      "--json",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(r.records[0].environments, ["ios", "java", "android"]);
    assert.equal(r.records[0].agent, "claude-code");
  });

  it("init --template mobile takes its environments and resources", async () => {
    const ws = rig.name("my-app");
    const r = await rig.cal(["isolation", "init", ws, "--template", "mobile", "--json"]);
    assert.equal(r.code, 0, show(r));
    const [rec] = r.records;
    assert.deepEqual(rec.environments, ["ios", "java", "android"]);
    assert.deepEqual([rec.cpu, rec.memory, rec.disk], [6, 12288, 100]);
    const vm = await Deno.readTextFile(join(rig.env.CAL_HOME, "isolation", "vms", ws, "vm.yaml"));
    assert.match(vm, /^template: mobile$/m);
  });

  it("--template and --env combine; flags override the template's resources", async () => {
    const ws = rig.name("combo");
    const r = await rig.vm([
      "init",
      ws,
      "--template",
      "backend",
      "--env",
      "cpp",
      "--cpu",
      "5",
      "--json",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(r.records[0].environments, ["node", "python", "go", "rust", "cpp"]);
    assert.equal(r.records[0].cpu, 5);
  });

  it("an unknown template or environment is refused before any VM is made", async () => {
    const t = await rig.vm(["init", rig.name("bad1"), "--template", "nope"]);
    assert.equal(t.code, 2, show(t));
    assert.match(t.stderr, /Unknown template "nope"\.\nKnown templates: android, backend, /);
    const e = await rig.vm(["init", rig.name("bad2"), "--env", "ios", "--env", "cobol"]);
    assert.equal(e.code, 2, show(e));
    assert.match(e.stderr, /Unknown environment "cobol"/);
    const machines = await rig.machineNames();
    assert.ok(!machines.some((m) => /bad[12]/.test(m)), machines.join(","));
  });

  it("a community plugin and a template of yours install on first start, once", async () => {
    const community = join(rig.env.CAL_HOME, "environments", "plugins", "community", "hello");
    await Deno.mkdir(community, { recursive: true });
    await Deno.copyFile(
      join(FIXTURES, "community", "hello", "manifest.yaml"),
      join(community, "manifest.yaml"),
    );
    const templates = join(rig.env.CAL_HOME, "isolation", "templates");
    await Deno.mkdir(templates, { recursive: true });
    await Deno.writeTextFile(
      join(templates, "hello-world.yaml"),
      [
        "name: hello-world",
        'description: "A greeting"',
        "environments: [hello]",
        "post_init:",
        `  - echo "post_init ran" >> "$HOME/post-init.txt"`,
        "",
      ].join("\n"),
    );
    const ws = rig.name("hello");
    assert.equal((await rig.vm(["init", ws, "--template", "hello-world"])).code, 0);
    const start = await rig.vm(["start", ws, "--json"]);
    assert.equal(start.code, 0, show(start));
    assert.match(start.stderr, /"message":"hello: brew install hello"/);
    assert.match(start.stderr, /"event":"post-init"/);
    assert.equal(start.records[0].state, "running");
    const greeting = await sh(rig, ws, "cat ~/hello-greeting.txt");
    assert.equal(greeting, `it's /Users/admin's "hello" ; echo not-run\n`);
    assert.equal(await sh(rig, ws, "cat ~/post-init.txt"), "post_init ran\n");

    const list = await rig.calEnv(["list", ws, "--json"]);
    const hello = list.records.find((x) => x.environment === "hello")!;
    assert.deepEqual([hello.status, hello.source], ["installed", "community"]);
    const human = await rig.calEnv(["list", "--human"]);
    assert.match(
      human.stdout,
      /^hello +available +~1 MB +Hello \(community test plugin\) +community$/m,
    );

    // A second start installs nothing and does not run post_init again.
    assert.equal((await rig.vm(["stop", ws])).code, 0);
    const again = await rig.vm(["start", ws, "--json"]);
    assert.equal(again.code, 0, show(again));
    assert.doesNotMatch(again.stderr, /brew install|post-init/);
    assert.equal(await sh(rig, ws, "cat ~/post-init.txt"), "post_init ran\n");
    const installs = (await brewLog(rig, ws)).filter((l) => l.startsWith("install"));
    assert.deepEqual(installs, ["install hello"]);

    // A stopped workspace answers from what cal last saw.
    assert.equal((await rig.vm(["stop", ws])).code, 0);
    const stopped = await rig.calEnv(["list", ws, "--json"]);
    assert.equal(stopped.code, 0, show(stopped));
    assert.equal(stopped.records.find((x) => x.environment === "hello")?.status, "installed");
    assert.match(stopped.stderr, /is not running; showing what cal last saw/);
  });
});
