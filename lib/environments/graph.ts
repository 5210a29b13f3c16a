/**
 * Environment dependencies as a graph: what to install, in which order.
 *
 * - `requires: [java]` is installed before the environment that needs it.
 * - `requires: [ios?]` is optional: included when the workspace asked for it (its template, its
 *   `--env` flags, the command line) or already has it. When none of an environment's optional
 *   dependencies was asked for, all of them are included, as the spec's
 *   `env install my-workspace flutter  # auto-installs ios, android` does, unless the caller
 *   turns that off (`--no-optional`).
 * - `recommends` is shown, never installed.
 * - A variant's `with` environments come after the environment itself.
 *
 * A cycle or a missing plugin is an error naming the whole chain (`flutter → android → java`).
 */

import { CalError, ExitCode, usageError } from "../errors.ts";
import { type Manifest, splitDependency } from "./manifest.ts";

export interface PlanItem {
  name: string;
  manifest: Manifest;
  /** Named by the caller (as opposed to pulled in as a dependency). */
  requested: boolean;
  /** The environment that pulled this one in, when it is a dependency. */
  requiredBy?: string;
  variant?: string;
}

export interface ResolveOptions {
  /** Environments asked for or present: they switch on optional dependencies. */
  selected?: Iterable<string>;
  /** Skip optional dependencies nobody asked for (instead of including them all). */
  noOptional?: boolean;
  /** Variant per requested environment. */
  variants?: Record<string, string | undefined>;
  /** Where the request came from, for messages ("template mobile"). */
  origin?: string;
}

/** The dependencies an environment needs in this request, in its manifest's order. */
export function dependenciesOf(
  m: Manifest,
  selected: ReadonlySet<string>,
  noOptional = false,
): string[] {
  const deps = (m.requires ?? []).map(splitDependency);
  const optional = deps.filter((d) => d.optional).map((d) => d.name);
  const chosen = optional.filter((o) => selected.has(o));
  const useAll = chosen.length === 0 && !noOptional;
  return deps
    .filter((d) => !d.optional || useAll || selected.has(d.name))
    .map((d) => d.name);
}

/**
 * Orders `targets` and everything they need so that every environment comes after its
 * dependencies; each appears once. Throws on a cycle or a missing plugin.
 */
export function resolve(
  targets: string[],
  lookup: (name: string) => Manifest | undefined,
  opts: ResolveOptions = {},
): PlanItem[] {
  const selected = new Set([...(opts.selected ?? []), ...targets]);
  const order: PlanItem[] = [];
  const done = new Set<string>();
  const requested = new Set(targets);

  const visit = (name: string, chain: string[], requiredBy?: string) => {
    if (done.has(name)) return;
    const at = chain.indexOf(name);
    if (at >= 0) {
      throw new CalError(
        `Environment dependency cycle: ${[...chain.slice(at), name].join(" → ")}.`,
        {
          code: "invalid-config",
          exit: ExitCode.usage,
          hint: "Remove one of these `requires` entries so the chain ends.",
        },
      );
    }
    const manifest = lookup(name);
    if (!manifest) throw missing(name, chain, opts.origin);
    const variant = requested.has(name) ? opts.variants?.[name] : undefined;
    if (variant && !manifest.variants?.[variant]) {
      const known = Object.keys(manifest.variants ?? {});
      throw usageError(
        `Environment "${name}" has no variant "${variant}".`,
        known.length ? `Its variants: ${known.join(", ")}.` : `It has no variants.`,
      );
    }
    for (const dep of dependenciesOf(manifest, selected, opts.noOptional)) {
      visit(dep, [...chain, name], name);
    }
    done.add(name);
    order.push({
      name,
      manifest,
      requested: requested.has(name),
      ...(requiredBy && !requested.has(name) ? { requiredBy } : {}),
      ...(variant ? { variant } : {}),
    });
    for (const extra of (variant ? manifest.variants?.[variant]?.with : undefined) ?? []) {
      selected.add(extra);
      visit(extra, [...chain, name], name);
    }
  };

  for (const t of targets) visit(t, []);
  return order;
}

function missing(name: string, chain: string[], origin?: string): CalError {
  if (!chain.length) {
    return usageError(
      `Unknown environment "${name}"${origin ? ` (in ${origin})` : ""}.`,
      "Run `cal-env list` to see the environments there are.",
    );
  }
  return new CalError(
    `${[...chain, name].join(" → ")}: no environment plugin named "${name}"` +
      `${origin ? ` (in ${origin})` : ""}.`,
    {
      code: "invalid-config",
      exit: ExitCode.usage,
      hint: `Add a plugin for "${name}" under ~/.cal/environments/plugins/community/${name}/, ` +
        `or fix the \`requires\` of "${chain[chain.length - 1]}".`,
    },
  );
}
