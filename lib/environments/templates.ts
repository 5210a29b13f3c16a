/**
 * VM templates: named starting points (`cal-vm init NAME --template mobile`) giving a base image,
 * the environments to install on first start, resources, and commands to run once after.
 *
 * Built-in templates live in `templates/<name>.yaml`; your own in
 * `~/.cal/isolation/templates/<name>.yaml`, validated the same way. Your own cannot replace a
 * built-in one (an error naming the file); copy it under a new name instead.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { CalError, ExitCode, usageError } from "../errors.ts";
import { paths } from "../paths.ts";
import { InvalidFile, parseYaml } from "../yaml.ts";
import type { VmSettings } from "../config.ts";
import { resolve } from "./graph.ts";
import { ENV_NAME } from "./manifest.ts";
import { loadRegistry } from "./registry.ts";

const positiveInt = z.number().int().positive();

export const Template = z.strictObject({
  name: z.string().regex(ENV_NAME, "a template name like `mobile-full`"),
  description: z.string(),
  base_image: z.string().min(1).optional(),
  /** Installed on first start, in this order (dependencies are added where missing). */
  environments: z.array(z.string().regex(ENV_NAME, "an environment name like `android`"))
    .optional(),
  resources: z.strictObject({
    cpu: positiveInt.optional(),
    /** MB */
    memory: positiveInt.optional(),
    /** GB */
    disk_size: positiveInt.optional(),
  }).optional(),
  /** Command lines run once by `/bin/sh -c` in the guest after the environments are installed. */
  post_init: z.array(z.string().min(1).refine((s) => !s.includes("\0"), "no NUL characters"))
    .optional(),
});
export type Template = z.infer<typeof Template>;

export type TemplateSource = "core" | "user";

export interface LoadedTemplate {
  template: Template;
  source: TemplateSource;
  file: string;
}

export const CORE_TEMPLATES = fileURLToPath(new URL("../../templates/", import.meta.url));

export function parseTemplate(text: string, file: string): Template {
  return parseYaml(text, file, Template);
}

async function loadDir(dir: string, source: TemplateSource): Promise<LoadedTemplate[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".yaml") && !e.name.startsWith(".")) files.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: LoadedTemplate[] = [];
  for (const f of files.sort()) {
    const file = join(dir, f);
    const text = await Deno.readTextFile(file);
    const template = parseTemplate(text, file);
    const stem = f.slice(0, -".yaml".length);
    if (template.name !== stem) {
      const i = text.split("\n").findIndex((l) => l.startsWith("name:"));
      throw new InvalidFile(
        file,
        i < 0 ? 1 : i + 1,
        1,
        `name: "${template.name}" does not match the file name "${f}"`,
      );
    }
    out.push({ template, source, file });
  }
  return out;
}

/** Built-in templates, then the user's own. */
export async function loadTemplates(
  dirs: { core?: string; user?: string } = {},
): Promise<Map<string, LoadedTemplate>> {
  const all = new Map<string, LoadedTemplate>();
  for (const t of await loadDir(dirs.core ?? CORE_TEMPLATES, "core")) all.set(t.template.name, t);
  for (const t of await loadDir(dirs.user ?? paths.templatesDir(), "user")) {
    if (all.has(t.template.name)) {
      throw new CalError(
        `${t.file}: a template of yours cannot replace the built-in template "${t.template.name}".`,
        {
          code: "invalid-config",
          exit: ExitCode.usage,
          hint: "Rename it (the file and its `name:`), and pass that name to --template.",
        },
      );
    }
    all.set(t.template.name, t);
  }
  return all;
}

/** The template named `name`; unknown → exit 2 listing the known ones. */
export async function getTemplate(name: string): Promise<LoadedTemplate> {
  const all = await loadTemplates();
  const t = all.get(name);
  if (!t) {
    throw usageError(
      `Unknown template "${name}".`,
      `Known templates: ${[...all.keys()].join(", ")}.`,
    );
  }
  return t;
}

/** The JSON Schema of a template file, published for editors (`templates/`). */
export function templateJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(Template, { io: "input", unrepresentable: "any" }),
    title: "cal VM template",
  };
}

// ---------------------------------------------------------------------------------------------
// What init with a template asks for

export interface InitPlan {
  template?: { name: string; resources?: Partial<VmSettings> };
  /** Every environment to install on first start, dependencies first. */
  environments: string[];
}

/**
 * What `init --template T --env E...` asks for: the template's settings, and its environments
 * with the flags' added, checked and ordered (unknown names, missing plugins and cycles fail
 * here, before any VM is made).
 */
export async function planInit(template: string | undefined, envs: string[]): Promise<InitPlan> {
  const t = template ? (await getTemplate(template)).template : undefined;
  const wanted = [...new Set([...(t?.environments ?? []), ...envs])];
  if (!wanted.length) return { ...(t ? { template: templateSettings(t) } : {}), environments: [] };
  const registry = await loadRegistry();
  const plan = resolve(wanted, (n) => registry.manifest(n), {
    selected: wanted,
    origin: t ? `template "${t.name}"` : undefined,
  });
  return {
    ...(t ? { template: templateSettings(t) } : {}),
    environments: plan.map((p) => p.name),
  };
}

function templateSettings(
  t: { name: string; base_image?: string; resources?: Partial<VmSettings> },
): { name: string; resources?: Partial<VmSettings> } {
  const resources: Partial<VmSettings> = {
    ...(t.resources ?? {}),
    ...(t.base_image ? { base_image: t.base_image } : {}),
  };
  return { name: t.name, ...(Object.keys(resources).length ? { resources } : {}) };
}
