/**
 * Post-build hooks: a user's command template, run once per finished artifact.
 *
 * A hook runs as `sh -c SCRIPT cal-hook PATH`. SCRIPT is the template with every `{}` replaced by
 * a reference to the first positional parameter: `"$1"` outside quotes and inside `$(...)`,
 * `$1` inside double quotes, `'"$1"'` inside single quotes. The path itself therefore never
 * becomes shell text: names with spaces, quotes, `$(...)`, backticks or newlines arrive as one
 * argument, unchanged. Everything else in the template is ordinary shell (`~`, `$HOME`, pipes,
 * `&&`). The hook also gets `CAL_ARTIFACT` (the path), `CAL_ARTIFACT_TYPE` and `CAL_WORKSPACE`.
 */

type Context = "top" | "dq" | "sq" | "cmd" | "bt";

/** The template as the script `sh -c` runs (see above). */
export function hookScript(template: string): string {
  const stack: Context[] = ["top"];
  let out = "";
  for (let i = 0; i < template.length; i++) {
    const ctx = stack[stack.length - 1];
    const c = template[i];
    if (template.startsWith("{}", i)) {
      out += ctx === "dq" ? "$1" : ctx === "sq" ? `'"$1"'` : '"$1"';
      i++;
      continue;
    }
    if (ctx === "sq") {
      if (c === "'") stack.pop();
      out += c;
      continue;
    }
    if (c === "\\") {
      out += c + (template[i + 1] ?? "");
      i++;
      continue;
    }
    if (template.startsWith("$(", i) && !template.startsWith("$((", i)) {
      stack.push("cmd");
      out += "$(";
      i++;
      continue;
    }
    if (ctx === "dq") {
      if (c === '"') stack.pop();
      else if (c === "`") stack.push("bt");
      out += c;
      continue;
    }
    if (c === "'") stack.push("sq");
    else if (c === '"') stack.push("dq");
    else if (c === "`") {
      if (ctx === "bt") stack.pop();
      else stack.push("bt");
    } else if (c === ")" && ctx === "cmd") stack.pop();
    out += c;
  }
  return out;
}

export interface HookRun {
  exit: number;
  seconds: number;
}

type Sink = "inherit" | ((chunk: Uint8Array) => void);

/**
 * Runs one hook for one artifact and waits for it. Its stdout goes to `stdout` ("inherit", or a
 * writer: stderr when stdout carries records, a filter when the hook may print guest-chosen
 * names to a terminal), its stderr to `stderr`.
 */
export async function runHook(
  template: string,
  path: string,
  env: Record<string, string>,
  stdout: Sink,
  stderr: Sink = "inherit",
): Promise<HookRun> {
  const t0 = performance.now();
  const child = new Deno.Command("sh", {
    args: ["-c", hookScript(template), "cal-hook", path],
    env: { ...env, CAL_ARTIFACT: path },
    stdin: "null",
    stdout: stdout === "inherit" ? "inherit" : "piped",
    stderr: stderr === "inherit" ? "inherit" : "piped",
  }).spawn();
  const pump = async (s: ReadableStream<Uint8Array>, to: Sink) => {
    if (to !== "inherit") { for await (const chunk of s) to(chunk); }
  };
  await Promise.all([pump(child.stdout, stdout), pump(child.stderr, stderr)]);
  const status = await child.status;
  return {
    exit: status.signal ? 128 + signalNumber(status.signal) : status.code,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

function signalNumber(s: Deno.Signal): number {
  const n: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGTERM: 15,
    SIGPIPE: 13,
  };
  return n[s] ?? 1;
}
