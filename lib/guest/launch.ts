/**
 * Launching a program in the guest with secrets in its environment. For an agent these are the
 * stand-ins of its keys (agents/credentials.ts: the real values stay with the workspace's proxy),
 * or the real keys only with `--pass-key`.
 *
 * Secret values never appear in an argument list (on either side, where `ps` would show them)
 * and never touch a disk: cal makes a FIFO in the guest, a second SSH session writes the values
 * into it from its stdin, and the launched shell reads them (with builtins only) before it
 * execs the program. Non-secret variables, the working folder and the argv are quoted by
 * shell.ts. The program's PID is kept so a timeout can stop it for real: a headless program
 * leads its own process group (perl's setpgrp, since macOS has no setsid(1)), and a timeout
 * signals that group and every descendant, so nothing the agent started outlives the run.
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

/** perl: become a process group leader, then exec the argv (PATH search, no shell; 127 if absent). */
const OWN_GROUP =
  'setpgrp(0, 0); exec { $ARGV[0] } @ARGV; print STDERR "$ARGV[0]: $!\\n"; exit 127;';

/**
 * POSIX sh run in the guest on a timeout, with the PID file's path as $1: lists the program's
 * descendants first (they may have left its group or lost their parent by the time they are
 * signalled), then sends TERM to the group, the program and those descendants, waits up to two
 * seconds, and sends KILL to whatever is left. `ps -A -o pid= -o ppid=` and awk read the same
 * on macOS and Linux.
 */
const STOP = `p=$(cat "$1" 2>/dev/null)
case "$p" in ''|*[!0-9]*) exit 0;; esac
d=$(ps -A -o pid= -o ppid= | awk -v root="$p" '
  { up[$1] = $2 }
  END { for (x in up) { y = x; n = 0
    while ((y in up) && y != root && n++ < 1000) y = up[y]
    if (y == root && x != root) print x } }')
alive() {
  kill -0 -"$p" 2>/dev/null && return 0
  for x in "$p" $d; do kill -0 "$x" 2>/dev/null && return 0; done
  return 1
}
stop() {
  kill -"$1" -"$p" 2>/dev/null
  for x in "$p" $d; do kill -"$1" "$x" 2>/dev/null; done
}
stop TERM
for i in 1 2; do alive || exit 0; sleep 1; done
stop KILL
exit 0`;

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
    // Headless: the program leads a process group of its own (same PID), so a timeout can stop
    // it with everything it started. A session leader already leads its group, so a failing
    // setpgrp is fine. Not interactive: the terminal's foreground group must stay the session's.
    ...(l.interactive ? [] : [
      `command -v perl >/dev/null 2>&1 && exec perl -e ${quote(OWN_GROUP)} -- ${quoteArgs(l.argv)}`,
    ]),
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
  let stopping: Promise<unknown> | undefined;
  const timer = l.timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    // Closing SSH does not stop a program without a terminal: signal it in the guest, with its
    // process group and descendants (an agent's tools start their own children).
    stopping = run("ssh", [
      "-F",
      guest.configFile,
      guest.alias,
      `${quoteArgs(["sh", "-c", STOP, "sh"])} ${pidFile}`,
    ]).catch(() => {}).then(async () => {
      // Something that escaped (a daemon of its own) may still hold the output open: give the
      // session a moment to end, then close it from this side.
      let grace: ReturnType<typeof setTimeout> | undefined;
      const ended = await Promise.race([
        child.status.then(() => true),
        new Promise<boolean>((r) => grace = setTimeout(() => r(false), 3000)),
      ]);
      clearTimeout(grace);
      if (!ended) {
        try {
          child.kill("SIGTERM");
        } catch { /* already done */ }
      }
    });
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
  await stopping;
  return { code: timedOut ? 124 : status.code, stdout, timedOut };
}
