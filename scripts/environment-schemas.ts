/**
 * Writes the JSON Schemas of environment manifests and VM templates, for editors (the YAML
 * language server reads the `$schema` comment at the top of each file):
 *   plugins/environments/manifest.schema.json   templates/template.schema.json
 * tests/environments.test.ts fails when they are stale; `deno run -A
 * scripts/environment-schemas.ts` brings them up to date.
 */

import { join } from "node:path";
import { manifestJsonSchema } from "../lib/environments/manifest.ts";
import { templateJsonSchema } from "../lib/environments/templates.ts";

const REPO = new URL("..", import.meta.url).pathname;

export const SCHEMAS: { file: string; schema: () => Record<string, unknown> }[] = [
  {
    file: join(REPO, "plugins", "environments", "manifest.schema.json"),
    schema: manifestJsonSchema,
  },
  { file: join(REPO, "templates", "template.schema.json"), schema: templateJsonSchema },
];

export function render(schema: Record<string, unknown>): string {
  return JSON.stringify(schema, null, 2) + "\n";
}

if (import.meta.main) {
  for (const { file, schema } of SCHEMAS) {
    await Deno.writeTextFile(file, render(schema()));
    console.log(`wrote ${file}`);
  }
}
