/**
 * Ends a cal command at a given moment, as a person (Ctrl-C, `kill -9`) or a power loss would.
 *
 * The command runs in a process group of its own (`setsid`, as a shell's job does), so a
 * `group` kill takes cal and every child it started (tart, cp, ssh) with it, as `kill -9 -PGID`
 * does. The moment is a string cal prints on stderr, or a condition polled until it holds;
 * without one the command runs to its end (e.g. when CAL_TEST_KILL_AT makes cal kill itself).
 */

import { join } from "node:path";
import { type Env, getDenoDir, REPO } from "./helpers.ts";

export interface Interrupted {
  code: number;
  signal: Deno.Signal | null;
  stderr: string;
}

export interface InterruptOptions {
  /** Send the signal once stderr holds this, or once this resolves true. */
  when?: string | (() => Promise<boolean>);
  signal?: Deno.Signal;
  /** Signal the whole process group, not only cal. */
  group?: boolean;
  /** Wait this long after `when` before signalling (e.g. to land inside a slow step). */
  settleMs?: number;
}

export async function interrupt(
  env: Env,
  tool: string,
  args: string[],
  opts: InterruptOptions = {},
): Promise<Interrupted> {
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "run", "-A", "--quiet", join(REPO, "commands", `${tool}.ts`), ...args],
    env: { NO_COLOR: "1", DENO_DIR: await getDenoDir(), ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let seen = "";
  const reading = (async () => {
    for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) seen += c;
  })();
  let done = false;
  const status = child.status.finally(() => (done = true));
  if (opts.when !== undefined) {
    const when = opts.when;
    const reached = typeof when === "string" ? () => Promise.resolve(seen.includes(when)) : when;
    while (!done && !(await reached())) await new Promise((r) => setTimeout(r, 25));
    if (!done) {
      if (opts.settleMs) await new Promise((r) => setTimeout(r, opts.settleMs));
      try {
        Deno.kill(opts.group ? -child.pid : child.pid, opts.signal ?? "SIGKILL");
      } catch { /* already gone */ }
    }
  }
  const s = await status;
  await reading;
  return { code: s.code, signal: s.signal, stderr: seen };
}
