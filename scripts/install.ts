/**
 * `deno task install`: installs every cal command with `deno install -g`, from this checkout.
 * Extra arguments are passed to `deno install` (e.g. `--root DIR`).
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NOUNS } from "../commands/cal.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const tools = ["cal", ...Object.keys(NOUNS).map((n) => `cal-${n}`)];
const extra = Deno.args;
for (const tool of tools) {
  const args = [
    "install",
    "-g",
    "-f",
    "-c",
    join(repo, "deno.json"),
    "-n",
    tool,
    // cal runs ssh, tart and bwrap, reads /proc and connects to its guests: all of it.
    "--allow-all",
    ...extra,
    join(repo, "commands", `${tool}.ts`),
  ];
  const r = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "inherit" })
    .output();
  if (r.code !== 0) {
    console.error(`Installing ${tool} failed.`);
    Deno.exit(r.code);
  }
}
console.log(`Installed: ${tools.join(", ")}. Make sure deno's bin folder is on your PATH.`);
