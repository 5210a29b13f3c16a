/**
 * The guest's environment file, `~/.cal-env/env`: the variables and PATH additions of every
 * installed environment, as POSIX `export` lines. cal's command preamble (`guest/ssh.ts`) loads
 * it before every remote command; nothing sources the user's rc files.
 *
 * cal rewrites the whole file from the host's manifests whenever the set of installed
 * environments changes. Literal text is single-quoted by `shell.ts`; the only expansions are the
 * references the manifest schema allows (`$HOME`, variables set earlier, the final `:$PATH`),
 * written as `"${NAME}"`, so a value can never run a command or expand anything else.
 */

import { quote } from "../shell.ts";
import { effectiveInstall, type Manifest, REFERENCE } from "./manifest.ts";

export const ENV_DIR = ".cal-env";
export const ENV_FILE = `${ENV_DIR}/env`;

/** One value as shell text: quoted literals, references as `"${NAME}"`. */
export function renderValue(value: string): string {
  const parts: string[] = [];
  let last = 0;
  for (const m of value.matchAll(REFERENCE)) {
    if (m.index > last) parts.push(quote(value.slice(last, m.index)));
    parts.push(`"\${${m[1] ?? m[2]}}"`);
    last = m.index + m[0].length;
  }
  if (last < value.length) parts.push(quote(value.slice(last)));
  return parts.length ? parts.join("") : "''";
}

/** The `export` lines of one environment. */
export function renderEnvironment(m: Manifest, variant?: string): string[] {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(effectiveInstall(m, variant).env)) {
    if (key === "PATH") {
      const prefix = value.replace(/:\$\{?PATH\}?$/, "");
      lines.push(`export PATH=${renderValue(prefix)}:"\${PATH}"`);
    } else {
      lines.push(`export ${key}=${renderValue(value)}`);
    }
  }
  return lines;
}

/** The whole file for the installed environments, in dependency order. */
export function renderEnvFile(envs: { manifest: Manifest; variant?: string }[]): string {
  const out = [
    "# Written by cal from the installed environments' manifests; changes here are lost.",
    "# cal loads this before every command it runs in the guest.",
  ];
  for (const { manifest, variant } of envs) {
    const lines = renderEnvironment(manifest, variant);
    if (!lines.length) continue;
    out.push(`# ${manifest.name} ${manifest.version}${variant ? ` (${variant})` : ""}`, ...lines);
  }
  return out.join("\n") + "\n";
}
