/**
 * The environment plugin manifest (`plugins/environments/<name>/manifest.yaml`), the spec's
 * "Plugin Manifest Schema", validated on load with errors that point at file:line:column.
 *
 * Two kinds of text live in a manifest, and they are treated differently:
 * - values cal substitutes into guest commands (formula and cask names, variable names and
 *   values, option values, variant names): constrained by the patterns below and always quoted
 *   by `shell.ts` when they reach a shell;
 * - command lines the author wrote (`post_install`, `verify`, `uninstall`): trusted plugin text,
 *   like a Homebrew formula, each run by `/bin/sh -c` in the guest as one quoted argument.
 *
 * `install.env` values are literal except for references: `$HOME`, a variable set earlier in the
 * same map, and for `PATH` only, a final `:$PATH` (PATH additions are always prepended). Nothing
 * else expands (no `$(...)`, no backquotes), so a value means the same on every guest.
 */

import { z } from "zod";
import { parseYaml } from "../yaml.ts";

/** An environment's name: `android`, `python-ml`. */
export const ENV_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;
/** A Homebrew formula or cask, optionally from a tap: `openjdk@17`, `xcodesorg/made/xcodes`. */
export const FORMULA = /^[a-z0-9][a-z0-9@+._/-]*$/;
/** An environment variable cal sets. */
export const VAR_NAME = /^[A-Z_][A-Z0-9_]*$/;
const OPTION_NAME = /^[a-z][a-z0-9_]*$/;
const VARIANT_NAME = /^[a-z0-9][a-z0-9._-]*$/;
const SIZE = /^\d+(?:\.\d+)?\s*(?:B|KB|MB|GB|TB)$/;
const VERSION = /^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/;

const envName = z.string().regex(ENV_NAME, "an environment name like `android` or `python-ml`");
/** A dependency: a name, or `name?` for an optional one (the spec's `ios?`). */
const dependency = z.string().regex(
  /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*\??$/,
  "an environment name, with a trailing ? when optional (`ios?`)",
);
const formula = z.string().regex(FORMULA, "a Homebrew name (lowercase letters, digits, @+._/-)")
  .refine((s) => !s.split("/").includes(".."), "a Homebrew name, not a path");
const commandLine = z.string().min(1).refine((s) => !s.includes("\0"), "no NUL characters");
const varName = z.string().regex(VAR_NAME, "an environment variable name like `JAVA_HOME`");

/** `$NAME` and `${NAME}` references in an env value. */
export const REFERENCE = /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g;

const EnvMap = z.record(varName, z.string()).superRefine((env, ctx) => {
  const defined = new Set<string>();
  for (const [key, value] of Object.entries(env)) {
    let body = value;
    if (key === "PATH") {
      if (!/:\$\{?PATH\}?$/.test(value)) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: 'PATH must end in ":$PATH": cal only prepends to it',
        });
        continue;
      }
      body = value.replace(/:\$\{?PATH\}?$/, "");
    }
    for (const m of body.matchAll(REFERENCE)) {
      const ref = m[1] ?? m[2];
      if (ref !== "HOME" && !defined.has(ref)) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `$${ref} is not allowed here: a value may use $HOME and variables set ` +
            "earlier in this map",
        });
      }
    }
    const rest = body.replace(REFERENCE, "");
    if (/[$`]/.test(rest)) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: "only $NAME references expand in a value; $(...), ${...:-...} and backquotes " +
          "are not allowed",
      });
    }
    defined.add(key);
  }
});

export const Install = z.strictObject({
  /** Environment variables written to the guest's `~/.cal-env/env`. */
  env: EnvMap.optional(),
  /** Homebrew formulae, installed first, in order. */
  brew: z.array(formula).optional(),
  /** Homebrew casks, installed after the formulae. */
  cask: z.array(formula).optional(),
  /** Command lines run by `/bin/sh -c` in the guest after the env file is written. */
  post_install: z.array(commandLine).optional(),
  /**
   * Host environment variables handed to post_install on stdin (never argv, never a file), for
   * steps that need an account, such as `xcodes` and its Apple ID.
   */
  secrets: z.array(varName).optional(),
});
export type Install = z.infer<typeof Install>;

export const Verify = z.strictObject({
  command: commandLine,
  /** Text the command's output (stdout and stderr) must contain. */
  expect_contains: z.string().min(1).optional(),
});
export type Verify = z.infer<typeof Verify>;

const Option = z.strictObject({
  description: z.string(),
  default: z.string(),
  example: z.string().optional(),
  /** A regular expression a value must match in full. */
  pattern: z.string().refine((p) => {
    try {
      new RegExp(p);
      return true;
    } catch {
      return false;
    }
  }, "a valid regular expression").optional(),
});

const Variant = z.strictObject({
  description: z.string(),
  /** Added to the environment's own install steps. */
  install: Install.optional(),
  /** Added to the environment's own checks. */
  verify: z.array(Verify).optional(),
  /** Environments installed after this one when the variant is chosen. */
  with: z.array(envName).optional(),
  size_estimate: z.string().regex(SIZE, 'a size like "500MB" or "12GB"').optional(),
});
export type Variant = z.infer<typeof Variant>;

export const Manifest = z.strictObject({
  name: envName,
  display_name: z.string().min(1),
  version: z.string().regex(VERSION, 'a version like "1.0.0" (quoted)'),
  description: z.string().optional(),
  /** What a user should know: limits, accounts needed, what cannot work in a VM. */
  notes: z.string().optional(),
  requires: z.array(dependency).optional(),
  recommends: z.array(envName).optional(),
  provides: z.array(z.string().regex(/^[a-z0-9][a-z0-9+._-]*$/, "a lowercase tool name"))
    .optional(),
  size_estimate: z.string().regex(SIZE, 'a size like "500MB" or "12GB"').optional(),
  install: Install.optional(),
  options: z.record(z.string().regex(OPTION_NAME, "an option name like `api_level`"), Option)
    .optional(),
  variants: z.record(z.string().regex(VARIANT_NAME, "a variant name like `ml`"), Variant)
    .optional(),
  verify: z.array(Verify).optional(),
  uninstall: z.array(commandLine).optional(),
  artifacts: z.strictObject({
    patterns: z.array(z.string().min(1)),
    exclude: z.array(z.string().min(1)).optional(),
  }).optional(),
});
export type Manifest = z.infer<typeof Manifest>;

/** Parses and validates manifest text; problems name file:line:column. */
export function parseManifest(text: string, file: string): Manifest {
  return parseYaml(text, file, Manifest);
}

/** A dependency entry split into its name and whether it is optional. */
export function splitDependency(dep: string): { name: string; optional: boolean } {
  return dep.endsWith("?")
    ? { name: dep.slice(0, -1), optional: true }
    : { name: dep, optional: false };
}

/** The install steps of a manifest with a variant's additions. */
export function effectiveInstall(m: Manifest, variant?: string): Required<Install> {
  const base = m.install ?? {};
  const add = (variant ? m.variants?.[variant]?.install : undefined) ?? {};
  const uniq = (xs: string[]) => [...new Set(xs)];
  return {
    env: { ...base.env, ...add.env },
    brew: uniq([...(base.brew ?? []), ...(add.brew ?? [])]),
    cask: uniq([...(base.cask ?? []), ...(add.cask ?? [])]),
    post_install: [...(base.post_install ?? []), ...(add.post_install ?? [])],
    secrets: uniq([...(base.secrets ?? []), ...(add.secrets ?? [])]),
  };
}

/** A manifest's checks, with a variant's additions. */
export function effectiveVerify(m: Manifest, variant?: string): Verify[] {
  return [...(m.verify ?? []), ...((variant ? m.variants?.[variant]?.verify : undefined) ?? [])];
}

/** The JSON Schema of the manifest, published for editors (`plugins/environments/`). */
export function manifestJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(Manifest, { io: "input", unrepresentable: "any" }),
    title: "cal environment plugin manifest",
  };
}
