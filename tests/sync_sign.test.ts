/**
 * cal-sync sign: host-side signing with the fixture archive and profile. `ssh` and `tart` on PATH
 * are stand-ins that record any call (none may happen); `security` and `xcodebuild` are
 * stand-ins where a test needs a Mac's, and absent otherwise (as on Linux).
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { type CalResult, type Env, REPO, runTool } from "./helpers.ts";
import { show } from "./rig_env.ts";

const FIXTURES = join(REPO, "tests", "fixtures", "sync");
const ARCHIVE = join(FIXTURES, "MyApp.xcarchive");
const PROFILE = join(FIXTURES, "dev.mobileprovision");
const UUID = "6F9A1C2E-3B4D-4E5F-8A7B-1C2D3E4F5A6B";
const SHA1 = "F8924F08C9B962778C1C05B3B0BAFB0405FE6218";
const FULL = "Apple Development: you@example.com (ABCDE12345)";

let root: string;
let env: Env;
let out: string;
let bin: string;

async function script(dir: string, name: string, body: string) {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, name), "#!/bin/sh\n" + body, { mode: 0o755 });
}

/** Runs cal with extra stand-ins: `security` (listing `identities`) and/or `xcodebuild`. */
async function cal(
  args: string[],
  opts: { identities?: string; xcodebuild?: boolean } = {},
): Promise<CalResult> {
  const extra = await Deno.makeTempDir({ dir: root, prefix: "bin-" });
  if (opts.identities !== undefined) {
    await Deno.writeTextFile(join(extra, "identities.txt"), opts.identities);
    await script(
      extra,
      "security",
      `[ "$1" = find-identity ] || { echo "unexpected security $*" >&2; exit 1; }\ncat "${extra}/identities.txt"\n`,
    );
  }
  if (opts.xcodebuild) {
    await script(
      extra,
      "xcodebuild",
      `printf '%s\\0' "$@" > "${root}/xcodebuild-argv"
while [ $# -gt 0 ]; do
  case "$1" in -exportPath) out="$2"; shift;; -exportOptionsPlist) plist="$2"; shift;; esac
  shift
done
cp "$plist" "${root}/xcodebuild-plist"
echo "** EXPORT SUCCEEDED **"
printf 'signed ipa' > "$out/MyApp.ipa"
`,
    );
  }
  return await runTool("cal", args, { ...env, PATH: `${extra}:${bin}:${Deno.env.get("PATH")}` });
}

async function calls(): Promise<string> {
  return await Deno.readTextFile(join(root, "remote-calls")).catch(() => "");
}

const signArgs = (...more: string[]) => [
  "isolation",
  "sign",
  "signer",
  "--archive",
  ARCHIVE,
  "--identity",
  "Apple Development: you@example.com",
  "--profile",
  PROFILE,
  ...more,
];

describe("cal-sync sign", () => {
  before(async () => {
    root = await Deno.makeTempDir({ prefix: "cal-sign-" });
    const home = join(root, "home");
    out = join(home, "cal-output", "signer"); // under output.sync_dir, as cal requires
    bin = join(root, "bin");
    env = { HOME: home, CAL_HOME: join(home, ".cal") };
    // A workspace on a provider whose VM would need `tart` and `ssh`: both record and fail.
    for (const tool of ["ssh", "tart", "scp", "sftp"]) {
      await script(bin, tool, `echo "${tool} $*" >> "${root}/remote-calls"\nexit 255\n`);
    }
    const vmDir = join(env.CAL_HOME, "isolation", "vms", "signer");
    await Deno.mkdir(vmDir, { recursive: true });
    await Deno.writeTextFile(
      join(vmDir, "vm.yaml"),
      [
        "name: signer",
        "base_image: ghcr.io/cirruslabs/macos-sequoia-xcode:latest",
        "created_at: 2026-01-17T10:00:00Z",
        "provider: tart",
        "vm: cal-signer",
        "resources: {cpu: 4, memory: 8192, disk_size: 80}",
        "user: admin",
        `output_dir: ${out}`,
        "",
      ].join("\n"),
    );
  });
  after(async () => await Deno.remove(root, { recursive: true }));

  it("--dry-run prints the exact xcodebuild command and plist, and touches nothing", async () => {
    const r = await cal(signArgs("--dry-run", "--human"));
    assert.equal(r.code, 0, show(r));
    const work = join(out, "builds", ".cal-sign-MyApp");
    const plistPath = join(work, "ExportOptions.plist");
    const command = `xcodebuild -exportArchive -archivePath ${ARCHIVE} -exportPath ${
      join(work, "export")
    } -exportOptionsPlist ${plistPath}`;
    assert.ok(r.stdout.includes("\nCommand:\n" + command + "\n"), r.stdout);
    const plist = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>method</key>
	<string>development</string>
	<key>provisioningProfiles</key>
	<dict>
		<key>com.example.MyApp</key>
		<string>${UUID}</string>
	</dict>
	<key>signingCertificate</key>
	<string>Apple Development: you@example.com</string>
	<key>signingStyle</key>
	<string>manual</string>
	<key>teamID</key>
	<string>ABCDE12345</string>
</dict>
</plist>`;
    assert.ok(r.stdout.includes(`${plistPath}:\n${plist}\n`), r.stdout);
    assert.match(r.stdout, /not checked on this host/);
    assert.match(r.stdout, /xcodebuild is not installed on this host/);
    assert.equal(await calls(), "", "no ssh or tart call");
    assert.equal(await Deno.stat(out).catch(() => undefined), undefined, "nothing written");
  });

  it("--dry-run --json gives the plan as a record", async () => {
    const r = await cal(signArgs("--dry-run", "--json"));
    assert.equal(r.code, 0, show(r));
    assert.equal(r.records.length, 1);
    const p = r.records[0];
    assert.equal(p.kind, "sign-plan");
    assert.equal(p.method, "development");
    assert.equal(p.team_id, "ABCDE12345");
    assert.equal(p.bundle_id, "com.example.MyApp");
    assert.equal(p.identity_checked, false);
    assert.deepEqual((p.command as string[]).slice(0, 4), [
      "xcodebuild",
      "-exportArchive",
      "-archivePath",
      ARCHIVE,
    ]);
    assert.equal(p.output, join(out, "builds", "MyApp.ipa"));
    assert.equal(await calls(), "");
  });

  it("with a keychain, the identity resolves to the profile's certificate", async () => {
    const r = await cal(signArgs("--dry-run", "--json"), {
      identities: `  1) ${SHA1} "${FULL}"\n     1 valid identities found\n`,
    });
    assert.equal(r.code, 0, show(r));
    assert.equal(r.records[0].identity, FULL);
    assert.equal(r.records[0].identity_checked, true);
    assert.match(
      r.records[0].export_options as string,
      new RegExp(`<string>${FULL.replace(/[()]/g, "\\$&")}</string>`),
    );
  });

  it("signs: runs xcodebuild with the plan and moves the .ipa into builds/", async () => {
    const r = await cal(signArgs("--json"), {
      identities: `  1) ${SHA1} "${FULL}"\n     1 valid identities found\n`,
      xcodebuild: true,
    });
    assert.equal(r.code, 0, show(r));
    const ipa = join(out, "builds", "MyApp.ipa");
    assert.deepEqual(r.records, [{
      kind: "artifact",
      workspace: "signer",
      path: ipa,
      category: "builds",
      bytes: 10,
      source: ARCHIVE,
      new: true,
      type: "ipa",
    }]);
    assert.equal(await Deno.readTextFile(ipa), "signed ipa");
    const work = join(out, "builds", ".cal-sign-MyApp");
    const argv = (await Deno.readTextFile(join(root, "xcodebuild-argv"))).split("\0").slice(0, -1);
    assert.deepEqual(argv, [
      "-exportArchive",
      "-archivePath",
      ARCHIVE,
      "-exportPath",
      join(work, "export"),
      "-exportOptionsPlist",
      join(work, "ExportOptions.plist"),
    ]);
    const plist = await Deno.readTextFile(join(root, "xcodebuild-plist"));
    assert.match(plist, /<key>method<\/key>\n\t<string>development<\/string>/);
    assert.equal(await Deno.stat(work).catch(() => undefined), undefined, "work folder removed");
    for (const dir of ["Library/Developer/Xcode/UserData", "Library/MobileDevice"]) {
      const installed = join(env.HOME, dir, "Provisioning Profiles", `${UUID}.mobileprovision`);
      assert.ok((await Deno.stat(installed)).isFile, installed);
    }
    assert.equal(await calls(), "", "no ssh or tart call");
  });

  it("without xcodebuild (Linux) fails clearly and writes nothing", async () => {
    const r = await cal(signArgs("--output", join(root, "elsewhere", "A.ipa")), {
      identities: `  1) ${SHA1} "${FULL}"\n`,
    });
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /`xcodebuild` is not installed/);
    assert.match(r.stderr, /--dry-run/);
    assert.equal(await Deno.stat(join(root, "elsewhere")).catch(() => undefined), undefined);
    assert.equal(await calls(), "");
  });

  it("checks identity, profile and archive before running anything", async () => {
    await Deno.remove(join(root, "xcodebuild-argv")).catch(() => {});
    const other =
      `  1) 0123456789ABCDEF0123456789ABCDEF01234567 "Apple Distribution: Someone (ZZZ)"\n`;
    const missing = await cal(signArgs("--dry-run"), { identities: other, xcodebuild: true });
    assert.equal(missing.code, 3, show(missing));
    assert.match(missing.stderr, /No valid signing identity "Apple Development: you@example.com"/);

    const wrongCert = `  1) 0123456789ABCDEF0123456789ABCDEF01234567 "${FULL}"\n`;
    const notInProfile = await cal(signArgs(), { identities: wrongCert, xcodebuild: true });
    assert.equal(notInProfile.code, 2, show(notInProfile));
    assert.match(notInProfile.stderr, /does not include the certificate/);

    const noArchive = await cal([
      ...signArgs("--dry-run").slice(0, 4),
      join(root, "Nope.xcarchive"),
      ...signArgs("--dry-run").slice(5),
    ]);
    assert.equal(noArchive.code, 3, show(noArchive));
    assert.match(noArchive.stderr, /No archive at/);

    const junk = join(root, "junk.mobileprovision");
    await Deno.writeTextFile(junk, "not a profile");
    const badProfile = await cal([...signArgs("--dry-run").slice(0, 8), junk, "--dry-run"]);
    assert.equal(badProfile.code, 2, show(badProfile));
    assert.match(badProfile.stderr, /not a provisioning profile/);
    // What cannot be a profile is refused before it is read: a folder, a device.
    for (const [what, path] of [["a folder", root], ["a device", "/dev/zero"]]) {
      const r = await cal([...signArgs("--dry-run").slice(0, 8), path, "--dry-run"]);
      assert.equal(r.code, 2, `${what}: ${show(r)}`);
      assert.match(r.stderr, /is not a provisioning profile \(not a file\)/);
      assert.match(r.stderr, /\.mobileprovision file itself/);
    }

    // A profile for another app id.
    const text = new TextDecoder("latin1").decode(await Deno.readFile(PROFILE))
      .replace("ABCDE12345.com.example.MyApp", "ABCDE12345.com.example.Other");
    const otherApp = join(root, "other.mobileprovision");
    await Deno.writeFile(otherApp, Uint8Array.from(text, (c) => c.charCodeAt(0)));
    const wrongApp = await cal([...signArgs("--dry-run").slice(0, 8), otherApp, "--dry-run"]);
    assert.equal(wrongApp.code, 2, show(wrongApp));
    assert.match(wrongApp.stderr, /No profile given covers the app com\.example\.MyApp/);
    assert.equal(await calls(), "", "no ssh or tart call in any of them");
    assert.equal(
      await Deno.stat(join(root, "xcodebuild-argv")).catch(() => undefined),
      undefined,
      "xcodebuild never ran",
    );
  });
});
