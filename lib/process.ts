/**
 * Running host programs: captured, with a timeout that kills the whole process group, and with a
 * clear error when the program is not installed.
 */

import { CalError, ExitCode } from "./errors.ts";
import type { StartResult } from "./provider.ts";

export interface RunOptions {
  /** Text fed to the child's stdin (secrets travel this way, never in argv). */
  stdin?: string;
  env?: Record<string, string>;
  cwd?: string;
  /** Kill the child's whole process group after this many milliseconds. */
  timeoutMs?: number;
  /** How to install the program, for the error when it is missing. */
  installHint?: string;
  /** Called with each line of stdout as it arrives. */
  onLine?: (line: string) => void;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** stdout or stderr was longer than MAX_CAPTURE and kept only up to it. */
  truncated?: boolean;
}

/**
 * What a failed command said, in one line: its first error-looking line (`fatal:`, `error:`,
 * `Error:`, `HTTP 4xx`…), else the last line of its stderr, else of its stdout, else its exit
 * status.
 */
export function reason(r: RunResult): string {
  if (r.timedOut) return "timed out";
  const lines = (text: string) => text.split("\n").map((l) => l.trim()).filter(Boolean);
  const err = lines(r.stderr);
  const out = lines(r.stdout);
  return [...err, ...out].find((l) => /^(fatal|error|!|X |HTTP \d)/i.test(l)) ?? err.pop() ??
    out.pop() ?? `exit status ${r.code}`;
}

export function toolMissing(cmd: string, hint?: string): CalError {
  return new CalError(`\`${cmd}\` is not installed or not on PATH.`, {
    code: "tool-missing",
    exit: ExitCode.failed,
    hint: hint ?? `Install ${cmd} and run the command again.`,
  });
}

/** Runs `cmd args...` to completion and captures its output. */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
      cwd: opts.cwd,
      // Its own process group, so a timeout can kill grandchildren holding the pipes open.
      detached: opts.timeoutMs !== undefined,
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw toolMissing(cmd, opts.installHint);
    throw e;
  }
  let timedOut = false;
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs);
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin)).catch(() => {});
    await w.close().catch(() => {});
  }
  const [out, err, status] = await Promise.all([
    readText(child.stdout, opts.onLine),
    readText(child.stderr),
    child.status,
  ]);
  if (timer !== undefined) clearTimeout(timer);
  return {
    code: status.code,
    stdout: out.text,
    stderr: err.text,
    timedOut,
    ...(out.cut || err.cut ? { truncated: true } : {}),
  };
}

/**
 * The most of a command's stdout or stderr kept (characters): a guest can answer anything, and a
 * string past ~512 MB cannot exist at all. The rest is read and dropped, so the command ends.
 */
export const MAX_CAPTURE = 64 * 1024 * 1024;
/** A line longer than this is passed to `onLine` in pieces. */
const MAX_LINE = 64 * 1024;

async function readText(
  stream: ReadableStream<Uint8Array>,
  onLine?: (line: string) => void,
): Promise<{ text: string; cut: boolean }> {
  let all = "";
  let cut = false;
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    if (all.length + chunk.length <= MAX_CAPTURE) all += chunk;
    else {
      if (!cut) all += chunk.slice(0, MAX_CAPTURE - all.length);
      cut = true;
    }
    if (onLine) {
      pending += chunk;
      const lines = pending.split(/\r?\n|\r/);
      pending = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) onLine(l);
      if (pending.length > MAX_LINE) {
        onLine(pending);
        pending = "";
      }
    }
  }
  if (onLine && pending.trim()) onLine(pending);
  return { text: all, cut };
}

/** Finds an executable on PATH (or returns the path itself when it contains a slash). */
export function which(cmd: string): string | undefined {
  const candidates = cmd.includes("/")
    ? [cmd]
    : (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) => `${d}/${cmd}`);
  for (const c of candidates) {
    try {
      const st = Deno.statSync(c);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111)) return c;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Whether a process id is alive. */
export function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a long-running command in its own session, its output appended to `logFile`, and
 * returns without waiting: the process outlives this cal invocation.
 */
export async function startDetached(
  bin: string,
  args: string[],
  logFile: string,
): Promise<StartResult> {
  const offset = await Deno.stat(logFile).then((s) => s.size).catch(() => 0);
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'log=$1; shift; exec "$@" >>"$log" 2>&1 </dev/null',
      "cal-start",
      logFile,
      bin,
      ...args,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  const exited = child.status.then(async (s) => ({
    code: s.code,
    log: await readFrom(logFile, offset),
  }));
  return { pid: child.pid, exited, logOffset: offset };
}

async function readFrom(file: string, offset: number): Promise<string> {
  try {
    const bytes = await Deno.readFile(file);
    return new TextDecoder().decode(bytes.subarray(offset));
  } catch {
    return "";
  }
}
