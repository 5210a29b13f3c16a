/**
 * `cal-sync sign`: host-side signing of an archive built in the VM (the spec's "Code Signing
 * Strategy"). Signing identities and profiles never enter the guest, and this never talks to it:
 * no SSH, no provider call; the workspace only names the default output folder.
 *
 * Before anything runs it checks the archive (an .xcarchive with an Info.plist naming its app),
 * each provisioning profile (the plist inside the CMS envelope: name, UUID, team, app id,
 * devices, certificates, expiry; the app's bundle id must match one), and the identity (found by
 * `security find-identity -v -p codesigning`, and its certificate must be in the profile). Then
 * it writes ExportOptions.plist (method from the profile: ProvisionsAllDevices → enterprise;
 * ProvisionedDevices → development when the profile allows debugging (get-task-allow), else
 * ad-hoc; neither → app-store), runs `xcodebuild -exportArchive`, and moves the .ipa to the
 * output path. `--dry-run` does every check and prints the command and the plist instead.
 *
 * A profile that is not installed is copied (by UUID) to where Xcode looks for profiles, as
 * double-clicking it would: `~/Library/Developer/Xcode/UserData/Provisioning Profiles` (Xcode 16)
 * and `~/Library/MobileDevice/Provisioning Profiles` (earlier).
 */

import { basename, dirname, join } from "node:path";
import { type Config } from "../config.ts";
import { CalError, ExitCode, notFound, usageError } from "../errors.ts";
import { expandHome } from "../paths.ts";
import { run, toolMissing, which } from "../process.ts";
import type { ArtifactRecord, SignPlanRecord } from "../records.ts";
import { readVm } from "../store.ts";
import { readArchive } from "./archive.ts";
import { writePlist } from "./plist.ts";
import {
  coversBundle,
  type Method,
  parseProfile,
  type Profile,
  profileDirs,
  readProfileFile,
} from "./profile.ts";

export interface Identity {
  sha1: string;
  name: string;
}

/** Parses `security find-identity -v -p codesigning`. */
export function parseIdentities(text: string): Identity[] {
  const out: Identity[] = [];
  for (const line of text.split("\n")) {
    const m = line.match(/^\s*\d+\)\s+([0-9A-Fa-f]{40})\s+"(.*)"\s*$/);
    if (m) out.push({ sha1: m[1].toUpperCase(), name: m[2] });
  }
  return out;
}

/** Whether a keychain identity is the one asked for (a SHA-1, a full name, or a name's prefix). */
export function identityMatches(given: string, id: Identity): boolean {
  if (/^[0-9A-Fa-f]{40}$/.test(given)) return id.sha1 === given.toUpperCase();
  return id.name === given || id.name.startsWith(given + " (") || id.name.startsWith(given + ":");
}

/** The ExportOptions.plist for a signing. */
export function exportOptions(o: {
  method: string;
  teamId: string;
  certificate: string;
  profiles: Record<string, string>;
}): string {
  return writePlist({
    method: o.method,
    provisioningProfiles: o.profiles,
    signingCertificate: o.certificate,
    signingStyle: "manual",
    teamID: o.teamId,
  });
}

export interface SignOptions {
  workspace: string;
  archive: string;
  identity: string;
  profiles: string[];
  output?: string;
  method?: Method;
  dryRun: boolean;
}

export interface SignSteps {
  plan: SignPlanRecord;
  /** Profiles to copy to where Xcode finds them: [from, to]. */
  installs: [string, string][];
  warnings: string[];
}

/** The workspace's host output folder, read from its vm.yaml without touching the VM. */
async function workspaceOutput(workspace: string, config: Config): Promise<string> {
  try {
    const vm = await readVm(workspace);
    if (vm.output_dir) return vm.output_dir;
  } catch (e) {
    if (!(e instanceof CalError && e.exit === ExitCode.notFound)) throw e;
  }
  return join(expandHome(config.output.sync_dir), workspace);
}

/** Every check, and what signing would run. Nothing is changed. */
export async function planSigning(o: SignOptions, config: Config): Promise<SignSteps> {
  const warnings: string[] = [];
  const archivePath = expandHome(o.archive).replace(/\/$/, "");
  const archive = await readArchive(archivePath);
  if (!o.profiles.length) throw usageError("Which provisioning profile?", "Pass --profile FILE.");
  const profiles: Profile[] = [];
  for (const p of o.profiles) {
    const path = expandHome(p);
    const bytes = await readProfileFile(path);
    const profile = await parseProfile(bytes, path);
    if (profile.expires && profile.expires.getTime() < Date.now()) {
      throw usageError(
        `The profile "${profile.name}" (${path}) expired on ${
          profile.expires.toISOString().slice(0, 10)
        }.`,
        "Renew it in the Apple Developer portal and download it again.",
      );
    }
    profiles.push(profile);
  }
  // Each bundle (the app, then its extensions) gets the most specific profile that covers it.
  const pick = (id: string) =>
    profiles.filter((p) => coversBundle(p.bundleId, id))
      .sort((a, b) => b.bundleId.replace("*", "").length - a.bundleId.replace("*", "").length)[0];
  const main = pick(archive.bundleId);
  if (!main) {
    throw usageError(
      `No profile given covers the app ${archive.bundleId} (${
        profiles.map((p) => `"${p.name}": ${p.bundleId}`).join(", ")
      }).`,
      `Pass a profile made for ${archive.bundleId}.`,
    );
  }
  const mapping: Record<string, string> = { [archive.bundleId]: main.uuid };
  for (const ext of archive.extensions) {
    const p = pick(ext);
    if (!p) {
      throw usageError(
        `No profile given covers the extension ${ext}.`,
        `Pass one more --profile, made for ${ext}.`,
      );
    }
    mapping[ext] = p.uuid;
  }
  for (const u of archive.unreadable) {
    warnings.push(
      `Could not read ${u}'s Info.plist on this host; xcodebuild will need its profile.`,
    );
  }
  const used = profiles.filter((p) => Object.values(mapping).includes(p.uuid));
  for (const p of used) {
    if (p.teamId !== main.teamId) {
      throw usageError(`The profiles belong to different teams (${main.teamId}, ${p.teamId}).`);
    }
  }

  // The identity: it must be in the keychain, and its certificate in the app's profile.
  let certificate = o.identity;
  let checked = false;
  if (which("security")) {
    const r = await run("security", ["find-identity", "-v", "-p", "codesigning"]);
    const all = parseIdentities(r.stdout);
    const matching = all.filter((i) => identityMatches(o.identity, i));
    if (!matching.length) {
      throw notFound(
        `No valid signing identity "${o.identity}" in your keychain.`,
        "`security find-identity -v -p codesigning` lists them; install the certificate with " +
          "its private key (Xcode → Settings → Accounts) or pass another --identity.",
      );
    }
    const allowed = matching.filter((i) => main.certificates.includes(i.sha1));
    if (!allowed.length) {
      throw usageError(
        `The profile "${main.name}" does not include the certificate of ${
          matching.map((i) => `"${i.name}"`).join(", ")
        }.`,
        "Add the certificate to the profile in the Apple Developer portal, or pass the identity the profile was made for.",
      );
    }
    if (allowed.length > 1 && new Set(allowed.map((i) => i.name)).size > 1) {
      throw usageError(
        `"${o.identity}" matches several identities: ${
          allowed.map((i) => `${i.name} (${i.sha1})`).join(", ")
        }.`,
        "Pass the full name or the SHA-1 of one of them.",
      );
    }
    const sameName = all.filter((i) => i.name === allowed[0].name).length > 1;
    certificate = sameName ? allowed[0].sha1 : allowed[0].name;
    checked = true;
  } else {
    warnings.push(
      "This host has no `security` tool (not macOS): the identity was not checked against the keychain.",
    );
  }

  const method = o.method ?? main.method;
  let output = o.output
    ? expandHome(o.output)
    : join(await workspaceOutput(o.workspace, config), "builds", `${archive.name}.ipa`);
  if (o.output?.endsWith("/") || (await Deno.stat(output).catch(() => undefined))?.isDirectory) {
    output = join(output, `${archive.name}.ipa`);
  }
  const work = join(dirname(output), `.cal-sign-${basename(output, ".ipa")}`);
  const plistPath = join(work, "ExportOptions.plist");
  const exportPath = join(work, "export");
  const plistText = exportOptions({
    method,
    teamId: main.teamId,
    certificate,
    profiles: mapping,
  });
  const installs: [string, string][] = [];
  for (const p of used) {
    for (const dir of profileDirs()) {
      const to = join(dir, `${p.uuid}.mobileprovision`);
      if (!(await Deno.stat(to).catch(() => undefined))) installs.push([p.path, to]);
    }
  }
  if (!which("xcodebuild")) {
    warnings.push("xcodebuild is not installed on this host: signing runs on macOS with Xcode.");
  }
  return {
    plan: {
      kind: "sign-plan",
      workspace: o.workspace,
      archive: archivePath,
      bundle_id: archive.bundleId,
      identity: certificate,
      identity_checked: checked,
      profiles: used.map((p) => ({
        path: p.path,
        name: p.name,
        uuid: p.uuid,
        bundle_id: p.bundleId,
      })),
      method,
      team_id: main.teamId,
      export_options: plistText,
      export_options_path: plistPath,
      command: [
        "xcodebuild",
        "-exportArchive",
        "-archivePath",
        archivePath,
        "-exportPath",
        exportPath,
        "-exportOptionsPlist",
        plistPath,
      ],
      output,
      ...(installs.length ? { install_profiles: installs.map(([, to]) => to) } : {}),
      dry_run: o.dryRun,
    },
    installs,
    warnings,
  };
}

/** Runs a plan: installs profiles, writes the plist, runs xcodebuild, moves the .ipa. */
export async function executeSigning(
  steps: SignSteps,
  onLine: (line: string) => void,
): Promise<ArtifactRecord> {
  const plan = steps.plan;
  if (!which("xcodebuild")) {
    throw toolMissing(
      "xcodebuild",
      "Signing runs on a Mac with Xcode (`xcode-select --install` is not enough; install Xcode). " +
        "`--dry-run` shows the plan on any host.",
    );
  }
  if (!plan.identity_checked) {
    throw toolMissing(
      "security",
      "Signing needs macOS's keychain (`security`) to find the identity.",
    );
  }
  for (const [from, to] of steps.installs) {
    await Deno.mkdir(dirname(to), { recursive: true });
    await Deno.copyFile(from, to);
  }
  const work = dirname(plan.export_options_path);
  const exportPath = plan.command[plan.command.indexOf("-exportPath") + 1];
  await Deno.remove(work, { recursive: true }).catch(() => {});
  await Deno.mkdir(exportPath, { recursive: true });
  try {
    await Deno.writeTextFile(plan.export_options_path, plan.export_options);
    const [cmd, ...args] = plan.command;
    const r = await run(cmd, args, { onLine });
    for (const l of r.stderr.split("\n")) if (l.trim()) onLine(l);
    if (r.code !== 0) {
      const said = (r.stderr + "\n" + r.stdout).split("\n").map((l) => l.trim())
        .filter((l) => /error/i.test(l)).pop() ?? `exit ${r.code}`;
      throw new CalError(`xcodebuild -exportArchive failed: ${said}`, {
        workspace: plan.workspace,
        hint: "Its output is above; the archive and your keychain are unchanged.",
      });
    }
    const ipas: string[] = [];
    for await (const e of Deno.readDir(exportPath)) if (e.name.endsWith(".ipa")) ipas.push(e.name);
    if (ipas.length !== 1) {
      throw new CalError(
        `xcodebuild exported ${ipas.length ? ipas.join(", ") : "no .ipa"} (expected one .ipa).`,
        { workspace: plan.workspace, hint: `See what it wrote in ${exportPath}.` },
      );
    }
    await Deno.mkdir(dirname(plan.output), { recursive: true });
    await Deno.rename(join(exportPath, ipas[0]), plan.output);
    const size = (await Deno.stat(plan.output)).size;
    return {
      kind: "artifact",
      workspace: plan.workspace,
      path: plan.output,
      category: "builds",
      bytes: size,
      source: plan.archive,
      new: true,
      type: "ipa",
    };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
