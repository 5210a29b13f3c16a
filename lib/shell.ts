/**
 * Shell quoting: the one place where arguments become shell text.
 *
 * Remote commands run through the guest's login shell (zsh on macOS), which re-parses the command
 * string; every argument is single-quoted so nothing in it is interpreted. Nothing else in cal
 * concatenates user input into shell text.
 */

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one argument for a POSIX shell (and zsh, bash). */
export function quote(arg: string): string {
  if (arg !== "" && SAFE.test(arg)) return arg;
  return "'" + arg.replaceAll("'", `'\\''`) + "'";
}

/** Quotes an argument array into one command line. */
export function quoteArgs(argv: readonly string[]): string {
  return argv.map(quote).join(" ");
}

/** A valid environment variable name (refuses anything that could smuggle shell syntax). */
export function isEnvName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
}
