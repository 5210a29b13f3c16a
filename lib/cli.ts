/**
 * What every cal command shares: the commander setup (usage errors exit 2), the output mode
 * flags, lazily loaded configuration, names from arguments or stdin records, and the mapping of
 * errors to exit codes.
 */

import {
  Command,
  CommanderError,
  InvalidArgumentError,
  type OptionValues,
} from "@commander-js/extra-typings";
import { type Config, loadConfig } from "./config.ts";
import { asCalError, CalError, ExitCode, usageError } from "./errors.ts";
import { ClosedPipe, namesFromStdin, Output } from "./output.ts";
import { VERSION } from "./version.ts";

export interface Context {
  out: Output;
  config(): Promise<Config>;
  /** The exit code the command wants (e.g. a remote command's), when it did not fail. */
  exitCode: number;
}

/** Whether `--json`/`--human` appear among the options (before any `--`). */
function outputFlags(args: string[]): { json: boolean; human: boolean } {
  const end = args.indexOf("--");
  const opts = end < 0 ? args : args.slice(0, end);
  return { json: opts.includes("--json"), human: opts.includes("--human") };
}

export function newContext(args: string[]): Context {
  let config: Promise<Config> | undefined;
  return {
    out: new Output(outputFlags(args)),
    config: () => (config ??= loadConfig()),
    exitCode: 0,
  };
}

/** A root program whose parse errors become usage errors instead of exiting the process. */
export function rootProgram(name: string, description: string): Command {
  const p = new Command(name)
    .description(description)
    .version(VERSION, "-V, --version")
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeErr: (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
      writeOut: (s) => Deno.stdout.writeSync(new TextEncoder().encode(s)),
      // Parse errors are reported once, by runProgram, like every other error.
      outputError: () => {},
    })
    // `--agent ''` is a mistake, not "no agent": an option given a value needs a real one.
    .hook("preAction", (_root, action) => {
      for (const option of action.options) {
        if (action.getOptionValue(option.attributeName()) === "") {
          throw usageError(
            `${option.long ?? option.short} was given an empty value.`,
            `Give it a value, or leave it out: \`${commandPath(action)} --help\`.`,
          );
        }
      }
    });
  return p as unknown as Command;
}

/** `cal-vm init`: the program and verb names of a command. */
function commandPath(c: { name(): string; parent: { name(): string } | null }): string {
  const names = [c.name()];
  for (let at = c.parent; at; at = (at as typeof c).parent) names.unshift(at.name());
  return names.join(" ");
}

/** Adds the output-mode flags every verb takes. */
// deno-lint-ignore no-explicit-any
export function outputOptions<A extends any[], O extends OptionValues, G extends OptionValues>(
  c: Command<A, O, G>,
) {
  return c.option("--json", "print NDJSON records (the default when stdout is not a terminal)")
    .option("--human", "print tables and text even when stdout is not a terminal");
}

/**
 * A commander value parser for positive whole numbers up to `max` (bad values are usage errors,
 * exit 2). The default bound keeps a value a safe integer; timers want a smaller one.
 */
export function positiveInt(what: string, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n <= 0) {
      throw new InvalidArgumentError(`${what} must be a positive whole number.`);
    }
    if (n > max) throw new InvalidArgumentError(`${what} can be at most ${max}.`);
    return n;
  };
}

/** `--network MODE`: allowlist, open or none (`host` is open's name from before egress policies). */
export function networkMode(v: string): "allowlist" | "open" | "none" {
  if (v === "host") return "open";
  if (v !== "allowlist" && v !== "open" && v !== "none") {
    throw new InvalidArgumentError("--network is allowlist, open or none.");
  }
  return v;
}

/** `--allow PATTERN`, repeatable. */
export const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The longest a timeout in seconds can be: what a timer holds (2^31 - 1 ms, about 24 days). */
export const MAX_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

/** Expands `-` into the names carried by records on stdin. */
export async function namesOrStdin(name: string, field = "workspace"): Promise<string[]> {
  if (name !== "-") return [name];
  if (Deno.stdin.isTerminal()) {
    throw usageError(
      "`-` reads records from stdin, but stdin is a terminal.",
      "Pipe records in, e.g. `cal-vm list --json | jq -c 'select(.state==\"stopped\")' | cal-vm destroy - --yes`.",
    );
  }
  return await namesFromStdin(field);
}

/**
 * Parses and runs a program, returning the process exit code: 0, the documented codes for
 * CalErrors, 2 for usage errors, 0 for a closed stdout pipe.
 */
export async function runProgram(program: Command, args: string[], ctx: Context): Promise<number> {
  try {
    await program.parseAsync(args, { from: "user" });
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof ClosedPipe) return 0;
    if (e instanceof CommanderError) {
      if (["commander.helpDisplayed", "commander.version", "commander.help"].includes(e.code)) {
        return 0;
      }
      ctx.out.error(
        new CalError(e.message.replace(/^error: /, ""), {
          code: "usage",
          exit: ExitCode.usage,
          hint: `Run \`${program.name()} --help\` for usage.`,
        }),
      );
      return ExitCode.usage;
    }
    const err = asCalError(e);
    try {
      ctx.out.error(err);
    } catch { /* nowhere left to report */ }
    return err.exit;
  }
}

/** Runs a command module's `main` as a process and exits with its code. */
export async function runAsProcess(main: (args: string[]) => Promise<number>): Promise<never> {
  const code = await main(Deno.args);
  Deno.exit(code);
}
