/**
 * Provisioning profiles: the plist inside a .mobileprovision's CMS envelope (name, UUID, team,
 * app id, devices, certificates, expiry), the export method it implies, and where Xcode looks
 * for installed ones.
 */

import { join } from "node:path";
import { notFound, usageError } from "../errors.ts";
import { homeDir } from "../paths.ts";
import { run, which } from "../process.ts";
import { embeddedPlist, isDict, parsePlist, type PlistValue } from "./plist.ts";

export const METHODS = [
  "development",
  "ad-hoc",
  "app-store",
  "enterprise",
  // Xcode 15.3+ names for the first three.
  "debugging",
  "release-testing",
  "app-store-connect",
] as const;
export type Method = (typeof METHODS)[number];

export interface Profile {
  path: string;
  name: string;
  uuid: string;
  teamId: string;
  /** The app id without its team prefix: `com.example.app`, `com.example.*` or `*`. */
  bundleId: string;
  method: Method;
  expires?: Date;
  devices: number;
  /** SHA-1 (upper-case hex) of each certificate the profile allows. */
  certificates: string[];
}

async function sha1(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-1", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
}

/** The signing method a profile implies (see the module's docs). */
export function methodOf(p: Record<string, PlistValue>): Method {
  if (p.ProvisionsAllDevices === true) return "enterprise";
  if (Array.isArray(p.ProvisionedDevices)) {
    const ent = isDict(p.Entitlements) ? p.Entitlements : {};
    return ent["get-task-allow"] === true ? "development" : "ad-hoc";
  }
  return "app-store";
}

/** Parses a provisioning profile's bytes (CMS envelope or bare plist). */
export async function parseProfile(bytes: Uint8Array, path: string): Promise<Profile> {
  let xml = embeddedPlist(bytes);
  if (!xml && Deno.build.os === "darwin" && which("security")) {
    const r = await run("security", ["cms", "-D", "-i", path]);
    if (r.code === 0) xml = r.stdout;
  }
  if (!xml) {
    throw usageError(
      `${path} is not a provisioning profile (no property list inside).`,
      "Download the profile again from the Apple Developer portal (a .mobileprovision file).",
    );
  }
  let v: PlistValue;
  try {
    v = parsePlist(xml);
  } catch (e) {
    throw usageError(`${path}: its property list cannot be read (${(e as Error).message}).`);
  }
  if (!isDict(v)) throw usageError(`${path}: its property list is not a dictionary.`);
  const ent = isDict(v.Entitlements) ? v.Entitlements : {};
  const appId = typeof ent["application-identifier"] === "string"
    ? ent["application-identifier"]
    : "";
  const team = Array.isArray(v.TeamIdentifier) && typeof v.TeamIdentifier[0] === "string"
    ? v.TeamIdentifier[0]
    : "";
  const prefix = Array.isArray(v.ApplicationIdentifierPrefix) &&
      typeof v.ApplicationIdentifierPrefix[0] === "string"
    ? v.ApplicationIdentifierPrefix[0]
    : team;
  if (typeof v.UUID !== "string" || !team || !appId) {
    throw usageError(`${path}: the profile has no UUID, team or application identifier.`);
  }
  const bundleId = appId.startsWith(prefix + ".") ? appId.slice(prefix.length + 1) : appId;
  const certificates: string[] = [];
  if (Array.isArray(v.DeveloperCertificates)) {
    for (const c of v.DeveloperCertificates) {
      if (c instanceof Uint8Array) certificates.push(await sha1(c));
    }
  }
  return {
    path,
    name: typeof v.Name === "string" ? v.Name : v.UUID,
    uuid: v.UUID,
    teamId: team,
    bundleId,
    method: methodOf(v),
    ...(v.ExpirationDate instanceof Date ? { expires: v.ExpirationDate } : {}),
    devices: Array.isArray(v.ProvisionedDevices) ? v.ProvisionedDevices.length : 0,
    certificates,
  };
}

/** Whether a profile's app id (`com.example.app`, `com.example.*`, `*`) covers a bundle id. */
export function coversBundle(pattern: string, bundleId: string): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith(".*")) return bundleId.startsWith(pattern.slice(0, -1));
  return pattern === bundleId;
}

/** Where Xcode looks for installed profiles. */
export function profileDirs(): string[] {
  return [
    join(homeDir(), "Library", "Developer", "Xcode", "UserData", "Provisioning Profiles"),
    join(homeDir(), "Library", "MobileDevice", "Provisioning Profiles"),
  ];
}

/** A profile is a few KB: anything past this is not one (and is not read into memory). */
const MAX_PROFILE_BYTES = 1024 * 1024;

/** Reads a .mobileprovision file, refusing what cannot be one (a folder, a device, a huge file). */
export async function readProfileFile(path: string): Promise<Uint8Array> {
  const st = await Deno.stat(path).catch((e) => {
    if (e instanceof Deno.errors.NotFound) {
      throw notFound(
        `No provisioning profile at ${path}.`,
        "Download it from the Apple Developer portal (Profiles), or pass the right path.",
      );
    }
    throw e;
  });
  if (!st.isFile || st.size > MAX_PROFILE_BYTES) {
    throw usageError(
      `${path} is not a provisioning profile (${st.isFile ? "too large" : "not a file"}).`,
      "Pass the .mobileprovision file itself, e.g. ~/Downloads/MyApp_AdHoc.mobileprovision.",
    );
  }
  return await Deno.readFile(path);
}
