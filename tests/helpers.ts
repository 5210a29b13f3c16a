/**
 * Test helpers: run cal's commands as a user would (a subprocess with its own CAL_HOME and
 * HOME), and read what they print.
 */

import { join } from "node:path";

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

let denoDir: string | undefined;
/** The Deno cache in use, so subprocesses with another HOME don't download everything again. */
export async function getDenoDir(): Promise<string> {
  if (denoDir) return denoDir;
  denoDir = Deno.env.get("DENO_DIR");
  if (!denoDir) {
    const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
    denoDir = JSON.parse(new TextDecoder().decode(out.stdout)).denoDir as string;
  }
  return denoDir;
}

export interface CalResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as NDJSON. */
  records: Record<string, unknown>[];
}

export interface Env {
  [k: string]: string;
}

/** Runs `commands/<tool>.ts args...` and captures everything. */
export async function runTool(
  tool: string,
  args: string[],
  env: Env,
  opts: { stdin?: string; timeoutMs?: number } = {},
): Promise<CalResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", join(REPO, "commands", `${tool}.ts`), ...args],
    env: { NO_COLOR: "1", DENO_DIR: await getDenoDir(), ...env },
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, opts.timeoutMs ?? 120_000);
  const out = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  return { code: out.code, stdout, stderr, records: parseNdjson(stdout) };
}

/** The NDJSON records in a command's stdout (other lines, e.g. a guest's output, are skipped). */
export function parseNdjson(text: string): Record<string, unknown>[] {
  const records: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      records.push(JSON.parse(line));
    } catch { /* not a record */ }
  }
  return records;
}

/** A fresh temporary folder, removed by the returned function. */
export async function tempDir(prefix = "cal-test-"): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

/**
 * Counts how often `secret` appears in any process's argument list (host and guests share
 * /proc) while `running` is pending: what `ps` would have shown anyone on the machine.
 */
export async function argvSightings(
  secret: string,
  running: Promise<unknown>,
): Promise<{ seen: number; scans: number }> {
  let finished = false;
  running.then(() => (finished = true), () => (finished = true));
  let seen = 0;
  let scans = 0;
  while (!finished) {
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`).includes(secret)) seen++;
      } catch { /* gone */ }
    }
    scans++;
    await new Promise((r) => setTimeout(r, 10));
  }
  return { seen, scans };
}

/** Appends each NDJSON line of a live stream (a running command's stdout) to `into` as it arrives. */
export async function streamRecords<T>(
  stream: ReadableStream<Uint8Array>,
  into: T[],
): Promise<void> {
  let pending = "";
  for await (const c of stream.pipeThrough(new TextDecoderStream())) {
    pending += c;
    const parts = pending.split("\n");
    pending = parts.pop() ?? "";
    for (const p of parts) if (p) into.push(JSON.parse(p));
  }
}

/** The npm registry this machine uses (`npm config get registry`), the one outside host tests reach. */
export async function npmRegistry(): Promise<URL> {
  const o = await new Deno.Command("npm", { args: ["config", "get", "registry"], stdout: "piped" })
    .output().catch(() => undefined);
  const text = o ? new TextDecoder().decode(o.stdout).trim() : "";
  try {
    return new URL(text || "https://registry.npmjs.org/");
  } catch {
    return new URL("https://registry.npmjs.org/");
  }
}
