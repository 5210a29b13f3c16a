/**
 * The whole command tree as plain data, for generating shell completions (scripts/completions.ts).
 *
 * Built from the dispatcher's tables only: every noun in NOUNS contributes its commander program,
 * and `cal isolation <verb>` (alias `iso`) gets, for each ISOLATION entry, the options, arguments
 * and subcommands of the command it maps to. Adding a noun or a verb there is all it takes.
 */

import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { newContext } from "../lib/cli.ts";
import type { Context } from "../lib/cli.ts";
import { ISOLATION, NOUNS } from "./cal.ts";

export interface OptionSpec {
  /** Every spelling, short first: ["-y", "--yes"]. */
  flags: string[];
  description: string;
  /** Whether the option takes a value (the next word). */
  value: boolean;
  /** The values it accepts, when commander knows them (`.choices()`). */
  choices?: string[];
}

export interface ArgSpec {
  name: string;
  required: boolean;
  variadic: boolean;
  choices?: string[];
}

export interface CommandSpec {
  name: string;
  aliases: string[];
  description: string;
  options: OptionSpec[];
  args: ArgSpec[];
  commands: CommandSpec[];
}

/** Arguments with these names are workspace names, completed from `$CAL_HOME/isolation/vms/`. */
export const WORKSPACE_ARGS = ["name", "workspace"];

const HELP: OptionSpec = { flags: ["-h", "--help"], description: "display help", value: false };
const VERSION: OptionSpec = {
  flags: ["-V", "--version"],
  description: "output the version number",
  value: false,
};

const firstLine = (s: string) => s.split("\n")[0].trim();

/** A commander command (and its subcommands) as data; commander's implicit help is added. */
export function specOf(cmd: CommandUnknownOpts, name = cmd.name()): CommandSpec {
  const options: OptionSpec[] = cmd.options.filter((o) => !o.hidden).map((o) => ({
    flags: [o.short, o.long].filter((f): f is string => !!f),
    description: firstLine(o.description),
    value: o.required || o.optional,
    ...(o.argChoices ? { choices: [...o.argChoices] } : {}),
  }));
  if (!options.some((o) => o.flags.includes("--help"))) options.push(HELP);
  return {
    name,
    aliases: cmd.aliases(),
    description: firstLine(cmd.summary() || cmd.description()),
    options,
    args: cmd.registeredArguments.map((a) => ({
      name: a.name(),
      required: a.required,
      variadic: a.variadic,
      ...(a.argChoices ? { choices: [...a.argChoices] } : {}),
    })),
    commands: cmd.commands
      .filter((c) => !(c as unknown as { _hidden?: boolean })._hidden)
      .map((c) => specOf(c)),
  };
}

type NounModule = { program?: (ctx: Context) => unknown };

/** Each noun's program (`cal-<noun>`), as data, in NOUNS order. */
export async function nounSpecs(): Promise<Record<string, CommandSpec>> {
  const specs: Record<string, CommandSpec> = {};
  for (const [noun, entry] of Object.entries(NOUNS)) {
    const mod = (await entry.load()) as unknown as NounModule;
    if (typeof mod.program !== "function") {
      throw new Error(`commands/cal-${noun}.ts must export program(ctx) for completions.`);
    }
    specs[noun] = specOf(mod.program(newContext([])) as CommandUnknownOpts);
  }
  return specs;
}

/** The `cal` tree: its nouns, then `isolation` (alias `iso`) with ISOLATION's verbs. */
export async function calTree(): Promise<CommandSpec> {
  const nouns = await nounSpecs();
  const verbs: CommandSpec[] = [];
  for (const [verb, { noun, verb: sub }] of Object.entries(ISOLATION)) {
    const target = nouns[noun];
    // A verb whose noun is not in NOUNS yet does not run either; it appears once the noun does.
    if (!target) continue;
    const mapped = sub ? target.commands.find((c) => c.name === sub) : target;
    if (!mapped) {
      throw new Error(`ISOLATION.${verb} maps to "cal-${noun} ${sub}", which is missing.`);
    }
    const description = sub ? mapped.description : `${NOUNS[noun].describe}`;
    verbs.push({ ...mapped, name: verb, aliases: [], description });
  }
  return {
    name: "cal",
    aliases: [],
    description: "Coding Agent Loader",
    options: [HELP, VERSION],
    args: [],
    commands: [
      ...Object.entries(nouns).map(([noun, spec]) => ({
        ...spec,
        name: noun,
        aliases: [],
        description: NOUNS[noun].describe,
      })),
      {
        name: "isolation",
        aliases: ["iso"],
        description: "the spec's surface: cal isolation <verb>",
        options: [HELP],
        args: [],
        commands: verbs,
      },
    ],
  };
}
