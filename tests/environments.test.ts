/**
 * Environment plugins and templates without a guest: the manifest schema (errors at
 * file:line:column), every core manifest and template, the published JSON Schemas, the
 * dependency graph (order, optional dependencies, cycles and missing plugins named by their
 * chain), the env file, and quoting: hostile values reach a real shell only as data.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { CalError } from "../lib/errors.ts";
import { renderEnvFile, renderValue } from "../lib/environments/envfile.ts";
import { dependenciesOf, resolve } from "../lib/environments/graph.ts";
import { installOne, optionValues } from "../lib/environments/install.ts";
import { type GuestShell, readGuestState } from "../lib/environments/state.ts";
import { Manifest, parseManifest } from "../lib/environments/manifest.ts";
import { CORE_DIR, loadDir, loadRegistry } from "../lib/environments/registry.ts";
import { CORE_TEMPLATES, loadTemplates } from "../lib/environments/templates.ts";
import { PREAMBLE } from "../lib/guest/ssh.ts";
import { Output } from "../lib/output.ts";
import { run } from "../lib/process.ts";
import { InvalidFile } from "../lib/yaml.ts";
import { render, SCHEMAS } from "../scripts/environment-schemas.ts";
import { REPO, tempDir } from "./helpers.ts";

const FIXTURES = join(REPO, "tests", "fixtures", "environments");
const NONE = "/nonexistent-cal-community";

/** A manifest from a plain object (validated like a file). */
const m = (o: Record<string, unknown>) =>
  Manifest.parse({ display_name: String(o.name), version: "1.0.0", ...o });

function lookupOf(...ms: ReturnType<typeof m>[]) {
  const map = new Map(ms.map((x) => [x.name, x]));
  return (n: string) => map.get(n);
}

function errorOf(fn: () => unknown): CalError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof CalError, `expected a CalError, got ${e}`);
    return e;
  }
  assert.fail("expected an error");
}

describe("core manifests", () => {
  it("all twelve of the spec's table load and validate", async () => {
    const r = await loadRegistry({ community: NONE });
    assert.deepEqual(r.names().sort(), [
      "android",
      "cpp",
      "dotnet",
      "flutter",
      "go",
      "ios",
      "java",
      "node",
      "python",
      "python-ml",
      "react-native",
      "rust",
    ]);
    for (const p of r.plugins.values()) assert.equal(p.source, "core");
  });

  it("declare the spec's dependencies", async () => {
    const r = await loadRegistry({ community: NONE });
    const req = (n: string) => r.manifest(n)?.requires ?? [];
    assert.deepEqual(req("android"), ["java"]);
    assert.deepEqual(req("flutter"), ["ios?", "android?"]);
    assert.deepEqual(req("react-native"), ["node", "ios?", "android?"]);
    assert.deepEqual(req("python-ml"), ["python"]);
    for (const n of ["ios", "java", "dotnet", "node", "python", "rust", "go", "cpp"]) {
      assert.deepEqual(req(n), [], n);
    }
  });

  it("every dependency, recommendation and variant names a plugin that exists", async () => {
    const r = await loadRegistry({ community: NONE });
    for (const p of r.plugins.values()) {
      const names = [
        ...(p.manifest.requires ?? []).map((d) => d.replace(/\?$/, "")),
        ...(p.manifest.recommends ?? []),
        ...Object.values(p.manifest.variants ?? {}).flatMap((v) => v.with ?? []),
      ];
      for (const n of names) assert.ok(r.get(n), `${p.manifest.name} names ${n}`);
      // Each resolves on its own without errors.
      resolve([p.manifest.name], (n) => r.manifest(n));
    }
  });

  it("install something, can be checked, and say where artifacts are", async () => {
    const r = await loadRegistry({ community: NONE });
    for (const { manifest: x } of r.plugins.values()) {
      const i = x.install ?? {};
      assert.ok(
        (i.brew?.length ?? 0) + (i.cask?.length ?? 0) + (i.post_install?.length ?? 0) > 0,
        `${x.name} installs nothing`,
      );
      assert.ok(x.verify?.length, `${x.name} has no checks`);
      assert.ok(x.artifacts?.patterns.length, `${x.name} has no artifact patterns`);
      assert.ok(x.size_estimate, `${x.name} has no size`);
    }
  });

  it("android says the emulator cannot run in a macOS VM, and what to use instead", async () => {
    const r = await loadRegistry({ community: NONE });
    const a = r.manifest("android")!;
    assert.match(a.notes ?? "", /emulator cannot run/);
    assert.match(a.notes ?? "", /nested virtualization/);
    assert.match(a.notes ?? "", /physical device|device farm/);
    assert.ok(!a.install?.post_install?.some((l) => /system-images|avdmanager create/.test(l)));
  });

  it("ios gets Xcode with xcodes and fails clearly without an Apple ID", async () => {
    const r = await loadRegistry({ community: NONE });
    const ios = r.manifest("ios")!;
    assert.ok(ios.install?.brew?.includes("xcodes"));
    assert.deepEqual(ios.install?.secrets, ["XCODES_USERNAME", "XCODES_PASSWORD"]);
    const first = ios.install?.post_install?.[0] ?? "";
    assert.match(first, /XCODES_USERNAME/);
    assert.match(first, /exit 1/);
  });
});

describe("templates", () => {
  it("the spec's eight validate and resolve against the core plugins", async () => {
    const all = await loadTemplates({ user: NONE });
    const r = await loadRegistry({ community: NONE });
    const expect: Record<string, string[]> = {
      minimal: [],
      ios: ["ios"],
      android: ["java", "android"],
      mobile: ["ios", "java", "android"],
      "mobile-full": ["ios", "java", "android", "flutter", "node"],
      "cross-platform": ["java", "android", "dotnet", "flutter", "node"],
      backend: ["node", "python", "go", "rust"],
      fullstack: ["ios", "node", "python"],
    };
    assert.deepEqual([...all.keys()].sort(), Object.keys(expect).sort());
    for (const [name, envs] of Object.entries(expect)) {
      const t = all.get(name)!.template;
      assert.deepEqual(t.environments ?? [], envs, name);
      assert.match(t.base_image ?? "", /^ghcr\.io\/cirruslabs\/macos-/);
      const plan = resolve(envs, (n) => r.manifest(n), { selected: envs });
      // Nothing beyond what the template lists: the spec's tables list dependencies too.
      assert.deepEqual(plan.map((p) => p.name).sort(), [...envs].sort(), name);
    }
  });

  it("cross-platform leaves out flutter's optional ios", async () => {
    const r = await loadRegistry({ community: NONE });
    const envs = (await loadTemplates({ user: NONE })).get("cross-platform")!.template
      .environments!;
    const plan = resolve(envs, (n) => r.manifest(n), { selected: envs });
    assert.ok(!plan.some((p) => p.name === "ios"));
  });

  it("mobile has the spec's resources", async () => {
    const t = (await loadTemplates({ user: NONE })).get("mobile")!.template;
    assert.deepEqual(t.resources, { cpu: 6, memory: 12288, disk_size: 100 });
    assert.deepEqual(t.post_init, ['echo "Mobile development environment ready!"']);
  });

  it("a template with a typo'd key fails at its line", async () => {
    const dir = await tempDir();
    try {
      await Deno.writeTextFile(
        join(dir, "mine.yaml"),
        "name: mine\ndescription: x\nenvironment:\n  - node\n",
      );
      await assert.rejects(loadTemplates({ core: CORE_TEMPLATES, user: dir }), (e) => {
        assert.ok(e instanceof InvalidFile);
        assert.match(
          e.message,
          /mine\.yaml:3:1: \(top level\): unknown key "environment" \(allowed: .*environments/,
        );
        return true;
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

describe("broken manifests", () => {
  const load = async (name: string) => {
    const file = join(FIXTURES, "broken", name, "manifest.yaml");
    try {
      parseManifest(await Deno.readTextFile(file), file);
    } catch (e) {
      assert.ok(e instanceof InvalidFile, String(e));
      return { e, file };
    }
    assert.fail(`${name} loaded`);
  };

  it("a typo'd key: file:line:column and the keys allowed there", async () => {
    const { e, file } = await load("typo");
    assert.equal(e.message.split(": (top level)")[0], `${file}:4:1`);
    assert.match(
      e.message,
      /unknown key "requirs" \(allowed: name, display_name, version, .*requires/,
    );
    assert.equal(e.exit, 2);
  });

  it("a wrong type, at the value", async () => {
    const { e, file } = await load("wrong-type");
    assert.ok(e.message.startsWith(`${file}:5:9: install.brew: `), e.message);
    assert.match(e.message, /expected array/);
  });

  it("a shell metacharacter in a formula name, at that item", async () => {
    const { e, file } = await load("metachar");
    assert.ok(e.message.startsWith(`${file}:7:7: install.brew.1: `), e.message);
    assert.match(e.message, /Homebrew name/);
  });

  it("a command substitution in an env value", async () => {
    const { e, file } = await load("env-subst");
    assert.ok(e.message.startsWith(`${file}:6:16: install.env.JAVA_HOME: `), e.message);
  });

  it("an env variable name a shell cannot take: at the key, with the rule", async () => {
    const { e, file } = await load("env-key");
    assert.equal(
      e.message,
      `${file}:7:5: install.env.bad-name: "bad-name" is not an environment variable name like ` +
        "`JAVA_HOME`",
    );
  });

  it("a manifest whose name is not its folder's", async () => {
    const dir = await tempDir();
    try {
      await Deno.mkdir(join(dir, "foo"));
      await Deno.writeTextFile(
        join(dir, "foo", "manifest.yaml"),
        '# x\nname: bar\ndisplay_name: Bar\nversion: "1.0.0"\n',
      );
      await assert.rejects(
        loadDir(dir, "community"),
        /manifest\.yaml:2:1: name: "bar" does not match its folder "foo"/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  it("a community plugin cannot replace a core one", async () => {
    const dir = await tempDir();
    try {
      await Deno.mkdir(join(dir, "node"));
      await Deno.writeTextFile(
        join(dir, "node", "manifest.yaml"),
        'name: node\ndisplay_name: Mine\nversion: "1.0.0"\n',
      );
      await assert.rejects(
        loadRegistry({ core: CORE_DIR, community: dir }),
        /cannot replace the core environment "node"/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  it("community plugins load like core ones", async () => {
    const r = await loadRegistry({ community: join(FIXTURES, "community") });
    assert.equal(r.get("hello")?.source, "community");
    assert.equal(r.get("node")?.source, "core");
  });

  for (
    const [what, env, message] of [
      ["$(...)", { X: "$(id)" }, /\$\(\.\.\.\)/],
      ["backquotes", { X: "`id`" }, /backquotes/],
      ["${X:-default}", { X: "${HOME:-/}" }, /not allowed/],
      ["an unknown variable", { X: "$SECRET/x" }, /\$SECRET is not allowed/],
      ["a later variable", { X: "$Y", Y: "y" }, /\$Y is not allowed/],
      ["PATH that does not end in :$PATH", { PATH: "/x:$PATH:/y" }, /must end in ":\$PATH"/],
      ["a lowercase variable name", { x: "1" }, /Invalid key/],
    ] as const
  ) {
    it(`env values refuse ${what}`, () => {
      const r = Manifest.safeParse({
        name: "x",
        display_name: "x",
        version: "1.0.0",
        install: { env },
      });
      assert.ok(!r.success);
      assert.match(r.error.issues.map((i) => i.message).join("\n"), message);
    });
  }

  it("formula names refuse paths and shell text", () => {
    for (const bad of ["../evil", "a/../../b", "-rf", "jq && id", "JQ", "jq\n", "a b"]) {
      const r = Manifest.safeParse({
        name: "x",
        display_name: "x",
        version: "1.0.0",
        install: { brew: [bad] },
      });
      assert.ok(!r.success, bad);
    }
    for (const good of ["openjdk@17", "python@3.12", "xcodesorg/made/xcodes", "gcc+", "a.b_c-d"]) {
      assert.ok(m({ name: "x", install: { cask: [good] } }), good);
    }
  });
});

describe("published JSON Schemas", () => {
  for (const { file, schema } of SCHEMAS) {
    it(`${file.slice(REPO.length + 1)} is up to date`, async () => {
      const committed = await Deno.readTextFile(file).catch(() => "");
      assert.equal(
        committed,
        render(schema()),
        "stale: run `deno run -A scripts/environment-schemas.ts`",
      );
    });
  }

  it("the manifest schema forbids unknown keys and types its fields", () => {
    const s = JSON.parse(render(SCHEMAS[0].schema()));
    assert.equal(s.additionalProperties, false);
    assert.deepEqual(s.required.sort(), ["display_name", "name", "version"]);
    assert.equal(s.properties.install.properties.brew.type, "array");
  });
});

describe("dependency graph", () => {
  const java = m({ name: "java" });
  const android = m({ name: "android", requires: ["java"] });
  const ios = m({ name: "ios" });
  const flutter = m({ name: "flutter", requires: ["ios?", "android?"] });
  const node = m({ name: "node" });
  const python = m({
    name: "python",
    variants: { ml: { description: "ml", with: ["python-ml"] } },
  });
  const pythonMl = m({ name: "python-ml", requires: ["python"] });
  const lookup = lookupOf(java, android, ios, flutter, node, python, pythonMl);
  const names = (xs: { name: string }[]) => xs.map((x) => x.name);

  it("requires come first; each environment once", () => {
    assert.deepEqual(names(resolve(["android", "java"], lookup)), ["java", "android"]);
  });

  it("optional dependencies follow what was asked for", () => {
    assert.deepEqual(names(resolve(["flutter"], lookup, { selected: ["android"] })), [
      "java",
      "android",
      "flutter",
    ]);
    assert.deepEqual(names(resolve(["flutter"], lookup, { selected: ["ios"] })), [
      "ios",
      "flutter",
    ]);
  });

  it("with none asked for, all optional dependencies come (the spec's flutter example)", () => {
    const plan = resolve(["flutter"], lookup);
    assert.deepEqual(names(plan), ["ios", "java", "android", "flutter"]);
    assert.equal(plan.find((p) => p.name === "java")?.requiredBy, "android");
    assert.equal(plan.find((p) => p.name === "flutter")?.requested, true);
    assert.deepEqual(names(resolve(["flutter"], lookup, { noOptional: true })), ["flutter"]);
  });

  it("dependenciesOf keeps the manifest's order", () => {
    assert.deepEqual(dependenciesOf(flutter, new Set()), ["ios", "android"]);
    assert.deepEqual(dependenciesOf(flutter, new Set(["android"])), ["android"]);
  });

  it("a variant's `with` environments come after it", () => {
    const plan = resolve(["python"], lookup, { variants: { python: "ml" } });
    assert.deepEqual(names(plan), ["python", "python-ml"]);
    assert.equal(plan[0].variant, "ml");
    assert.match(
      errorOf(() => resolve(["python"], lookup, { variants: { python: "gpu" } })).message,
      /no variant "gpu"/,
    );
  });

  it("a cycle is an error naming the chain", () => {
    const l = lookupOf(
      m({ name: "a", requires: ["b"] }),
      m({ name: "b", requires: ["c?"] }),
      m({ name: "c", requires: ["a"] }),
    );
    const e = errorOf(() => resolve(["a"], l));
    assert.equal(e.message, "Environment dependency cycle: a → b → c → a.");
    assert.equal(e.exit, 2);
  });

  it("a missing plugin is an error naming the chain", () => {
    const l = lookupOf(flutter, android, ios);
    const e = errorOf(() => resolve(["flutter"], l, { selected: ["android"] }));
    assert.match(e.message, /^flutter → android → java: no environment plugin named "java"/);
    assert.match(e.hint ?? "", /community\/java/);
    const top = errorOf(() => resolve(["nope"], l, { origin: 'template "mobile"' }));
    assert.equal(top.message, 'Unknown environment "nope" (in template "mobile").');
  });
});

describe("the env file", () => {
  async function shell(script: string, home = "/Users/admin"): Promise<string> {
    const r = await run("/bin/sh", ["-c", script], { env: { HOME: home, PATH: "/usr/bin:/bin" } });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  }

  it("values are literal but for $HOME and earlier variables", async () => {
    const hostile = `it's "q" \\ $HOME/x ; touch /tmp/cal-pwned-${crypto.randomUUID()} | \n`;
    const text = renderValue(hostile);
    const got = await shell(`K=${text}; printf '%s' "$K"`);
    assert.equal(got, hostile.replace("$HOME", "/Users/admin"));
  });

  it("PATH additions are prepended; references use earlier exports", async () => {
    const file = renderEnvFile([
      {
        manifest: m({
          name: "android",
          install: {
            env: {
              ANDROID_HOME: "$HOME/Library/Android/sdk",
              PATH: "$ANDROID_HOME/platform-tools:$PATH",
            },
          },
        }),
      },
      {
        manifest: m({
          name: "node",
          install: { env: { PATH: "/opt/homebrew/opt/node@22/bin:$PATH" } },
        }),
      },
    ]);
    assert.ok(!/\$\(|`/.test(file));
    const got = await shell(`${file}\nprintf '%s|%s' "$ANDROID_HOME" "$PATH"`, "/h");
    assert.equal(
      got,
      "/h/Library/Android/sdk|/opt/homebrew/opt/node@22/bin:/h/Library/Android/sdk/platform-tools:/usr/bin:/bin",
    );
  });

  it("every core manifest's exports load in sh without errors", async () => {
    const r = await loadRegistry({ community: NONE });
    const items = resolve(r.names(), (n) => r.manifest(n)).map((p) => ({ manifest: p.manifest }));
    const out = await shell(`${renderEnvFile(items)}\nprintf '%s' "$JAVA_HOME"`);
    assert.equal(out, "/opt/homebrew/opt/openjdk@17/libexec/openjdk.jdk/Contents/Home");
  });
});

/**
 * A guest that is this machine's /bin/sh with its own HOME: what cal sends is run by a real
 * shell, so quoting mistakes show up as wrong values or files that should not exist.
 */
class LocalGuest implements GuestShell {
  readonly workspace = "local";
  commands: string[] = [];
  stdins: string[] = [];
  constructor(readonly home: string) {}
  async sh(command: string, opts: { stdin?: string; timeoutMs?: number } = {}) {
    this.commands.push(command);
    if (opts.stdin !== undefined) this.stdins.push(opts.stdin);
    return await run("/bin/sh", ["-c", PREAMBLE + command], {
      stdin: opts.stdin,
      env: { HOME: this.home, PATH: "/usr/bin:/bin" },
      cwd: this.home,
    });
  }
}

describe("installing into a shell (no Homebrew)", () => {
  let home: string;
  let guest: LocalGuest;
  const out = new Output({ json: true });
  const SECRET = `s3cr3t'"$(touch pwned)\`id\`-${crypto.randomUUID()}`;
  const HOSTILE = `16.0; touch pwned 'q' "d" $(touch pwned) \`touch pwned\``;
  const manifest = m({
    name: "demo",
    version: "2.0.0",
    options: { xcode_version: { description: "v", default: "latest" } },
    install: {
      env: { DEMO_HOME: "$HOME/demo" },
      secrets: ["DEMO_TOKEN"],
      post_install: [
        'mkdir -p "$DEMO_HOME" && printf "%s" "$CAL_OPT_XCODE_VERSION" > "$DEMO_HOME/option"',
        'printf "%s" "$DEMO_TOKEN" > "$DEMO_HOME/token"; echo step2 >> "$DEMO_HOME/runs"',
        '[ ! -f "$HOME/fail-once" ] || { rm "$HOME/fail-once"; echo "disk full" >&2; exit 3; }',
      ],
    },
    verify: [{ command: 'cat "$DEMO_HOME/option"', expect_contains: "16.0" }],
  });

  before(async () => {
    home = await tempDir();
    guest = new LocalGuest(home);
  });
  after(async () => await Deno.remove(home, { recursive: true }));

  const install = async () =>
    await installOne(guest, { name: "demo", manifest, options: { xcode_version: HOSTILE } }, {
      out,
      mode: "install",
      envFile: renderEnvFile([{ manifest }]),
      progress: (await readGuestState(guest)).progress.get("demo"),
      env: (n) => (n === "DEMO_TOKEN" ? SECRET : undefined),
    });

  it("a failing step leaves no marker, says why, and keeps what was done", async () => {
    await Deno.writeTextFile(join(home, "fail-once"), "");
    await assert.rejects(install(), (e) => {
      assert.ok(e instanceof CalError);
      assert.match(e.message, /^Installing demo stopped at `\[ ! -f .*`: disk full$/);
      assert.match(e.hint ?? "", /resumes where it stopped/);
      return true;
    });
    const state = await readGuestState(guest);
    assert.equal(state.installed.has("demo"), false);
    assert.match(state.failed.get("demo") ?? "", /disk full/);
    assert.equal(state.progress.get("demo")?.size, 2);
  });

  it("running it again resumes: done steps are not repeated; the marker comes last", async () => {
    const marker = await install();
    assert.equal(marker.version, "2.0.0");
    assert.deepEqual(marker.options, { xcode_version: HOSTILE });
    const runs = await Deno.readTextFile(join(home, "demo", "runs"));
    assert.equal(runs, "step2\n", "step 2 ran once");
    const state = await readGuestState(guest);
    assert.equal(state.installed.get("demo")?.version, "2.0.0");
    assert.equal(state.failed.size + state.progress.size, 0);
  });

  it("hostile option values and secrets arrive as data, never as shell text", async () => {
    assert.equal(await Deno.readTextFile(join(home, "demo", "option")), HOSTILE);
    assert.equal(await Deno.readTextFile(join(home, "demo", "token")), SECRET);
    for (const dir of [home, join(home, "demo")]) {
      await assert.rejects(Deno.stat(join(dir, "pwned")), Deno.errors.NotFound);
    }
  });

  it("the secret travels on stdin only: in no command line, in no file cal wrote", async () => {
    assert.ok(guest.commands.every((c) => !c.includes(SECRET)));
    assert.ok(guest.stdins.some((s) => s.includes("DEMO_TOKEN=")));
    for (const f of ["env", "demo.installed"]) {
      const text = await Deno.readTextFile(join(home, ".cal-env", f));
      assert.ok(!text.includes(SECRET), f);
    }
  });

  it("the env file holds the manifest's variables", async () => {
    const env = await Deno.readTextFile(join(home, ".cal-env", "env"));
    assert.match(env, /^export DEMO_HOME="\$\{HOME\}"\/demo$/m);
  });

  it("option values are checked against the option's pattern", () => {
    const strict = m({
      name: "x",
      options: { api_level: { description: "", default: "35", pattern: "\\d+" } },
    });
    assert.deepEqual(optionValues(strict), { api_level: "35" });
    assert.deepEqual(optionValues(strict, { api_level: "34" }), { api_level: "34" });
    assert.match(errorOf(() => optionValues(strict, { api_level: "34; id" })).message, /not valid/);
    assert.match(errorOf(() => optionValues(strict, { nope: "1" })).message, /no option "nope"/);
  });
});
