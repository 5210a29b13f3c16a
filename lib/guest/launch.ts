/**
 * Launching a program in the guest with secrets in its environment.
 *
 * Secret values never appear in an argument list (on either side, where `ps` would show them)
 * and never touch a disk: cal makes a FIFO in the guest, a second SSH session writes the values
 * into it from its stdin, and the launched shell reads them (with builtins only) before it
 * execs the program. Non-secret variables, the working folder and the argv are quoted by
 * shell.ts. The program's PID is kept so a timeout can stop it for real.
 */

import { CalError } from "../errors.ts";
import { run } from "../process.ts";
import { isEnvName, quote, quoteArgs } from "../shell.ts";
import { type Guest, PREAMBLE } from "./ssh.ts";

export interface Launch {
  argv: string[];
  /** Working folder in the guest (absolute). */
  cwd: string;
  env?: Record<string, string>;
  secrets?: Record<string, string>;
  /** Pass the terminal through (ssh -t); otherwise capture stdout. */
  interactive: boolean;
  /** Headless only: stop the remote program after this long (exit 124). */
  timeoutMs?: number;
  /** Headless only: called with each chunk of the program's stderr. */
  onStderr?: (text: string) => void;
}

export interface LaunchResult {
  code: number;
  /** Captured stdout (headless only). */
  stdout: string;
  timedOut: boolean;
}

/** Each byte as a `\ooo` escape: a printf format with no `%` and nothing a shell expands. */
function octal(value: string): string {
  return [...new TextEncoder().encode(value)].map((b) => "\\" + b.toString(8).padStart(3, "0"))
    .join("");
}

function checkNames(vars: Record<string, string>) {
  for (const n of Object.keys(vars)) {
    if (!isEnvName(n)) throw new CalError(`"${n}" is not a valid environment variable name.`);
  }
}

export async function launch(guest: Guest, l: Launch): Promise<LaunchResult> {
  const secrets = l.secrets ?? {};
  const env = l.env ?? {};
  checkNames(secrets);
  checkNames(env);
  const id = crypto.randomUUID().replaceAll("-", "");
  const fifo = `"$HOME/.cal-run/${id}"`;
  const pidFile = `"$HOME/.cal-run/${id}.pid"`;
  const prepared = await guest.sh(`umask 077; mkdir -p "$HOME/.cal-run" && mkfifo ${fifo}`);
  if (prepared.code !== 0) {
    throw new CalError(`Could not prepare the launch in the guest: ${prepared.stderr.trim()}`);
  }

  // The writer blocks in the guest until the launched shell opens the FIFO.
  const writer = new Deno.Command("ssh", {
    args: ["-F", guest.configFile, guest.alias, `cat > ${fifo}`],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const w = writer.stdin.getWriter();
  const lines = Object.entries(secrets).map(([n, v]) => `${n} ${octal(v)}\n`).join("");
  await w.write(new TextEncoder().encode(lines));
  await w.close();

  const script = [
    `while read -r n e; do v=$(printf "\${e}x"); export "$n=\${v%x}"; done < ${fifo}`,
    `rm -f ${fifo}`,
    ...Object.entries(env).map(([n, v]) => `export ${n}=${quote(v)}`),
    `cd ${quote(l.cwd)} || exit 97`,
    `echo $$ > ${pidFile}`,
    `exec ${quoteArgs(l.argv)}`,
  ].join("\n");
  const remote = PREAMBLE + quoteArgs(["sh", "-c", script]);

  let result: LaunchResult;
  try {
    result = l.interactive
      ? { code: await guest.interactive(undefined, remote), stdout: "", timedOut: false }
      : await headless(guest, remote, pidFile, l);
  } finally {
    try {
      writer.kill("SIGTERM");
    } catch { /* already done */ }
    await writer.status;
    await guest.sh(`rm -f ${fifo} ${pidFile}`).catch(() => {});
  }
  return result;
}

async function headless(
  guest: Guest,
  remote: string,
  pidFile: string,
  l: Launch,
): Promise<LaunchResult> {
  const child = new Deno.Command("ssh", {
    args: ["-F", guest.configFile, "-T", guest.alias, remote],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = l.timeoutMs === undefined ? undefined : setTimeout(async () => {
    timedOut = true;
    // Closing SSH does not stop a program without a terminal: signal it in the guest.
    const pid = `$(cat ${pidFile} 2>/dev/null)`;
    await run("ssh", [
      "-F",
      guest.configFile,
      guest.alias,
      `p=${pid}; [ -n "$p" ] && { pkill -TERM -P "$p"; kill -TERM "$p"; sleep 2; ` +
      `pkill -KILL -P "$p"; kill -KILL "$p"; } 2>/dev/null; true`,
    ]);
  }, l.timeoutMs);
  const decoder = new TextDecoder();
  const [stdout] = await Promise.all([
    new Response(child.stdout).text(),
    (async () => {
      for await (const chunk of child.stderr) l.onStderr?.(decoder.decode(chunk, { stream: true }));
    })(),
  ]);
  const status = await child.status;
  if (timer !== undefined) clearTimeout(timer);
  return { code: timedOut ? 124 : status.code, stdout, timedOut };
}
