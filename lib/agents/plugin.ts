/**
 * The agent plugin contract. One module per agent (plugins/agents/<name>.ts, or a community
 * plugin in ~/.cal/agents/<name>.ts) default-exports an `AgentPlugin`: how to install, detect
 * and update the agent, which credentials it needs, which config and permission files to write
 * (as read-modify-write edits), and the exact command lines for interactive and headless runs.
 *
 * Plugins only describe; cal does the work (SSH, quoting, secrets), so a plugin never builds
 * shell text from values and never sees a credential's value.
 */

/** One way to install (or update) an agent, as a POSIX sh script run in the guest. */
export interface InstallMethod {
  /** `native`, `brew`, `npm`, ... (what `--method` selects). */
  name: string;
  describe: string;
  /** A fixed script (no substituted values); runs with cal's PATH preamble. */
  script: string;
}

/**
 * An edit of one config file in the guest: cal reads it, applies the edit, writes it back. The
 * edit also gets the list entries cal wrote last time (`ownedBefore`), so rules removed from the
 * config are removed from the file while entries the user or the agent added stay.
 */
export type ConfigEdit = JsonEdit | TextEdit;

export interface JsonEdit {
  /** Path in the guest, relative to the home folder. */
  path: string;
  format: "json";
  /** File mode; 0o600 for files that may hold tokens. */
  mode?: number;
  edit(
    current: Record<string, unknown>,
    ownedBefore: Owned,
  ): { next: Record<string, unknown>; owned: Owned };
}

/**
 * For formats cal edits line by line (TOML), keeping every line it does not own, and for files
 * cal owns whole (`text`: a policy or rules file of cal's own, next to the user's).
 */
export interface TextEdit {
  path: string;
  format: "toml" | "text";
  mode?: number;
  edit(current: string, ownedBefore: Owned): { next: string; owned: Owned };
}

/** List entries cal put into a file, by dotted path: `{"permissions.allow": ["Bash(git:*)"]}`. */
export type Owned = Record<string, string[]>;

export interface AgentContext {
  /** The guest's home folder. */
  home: string;
  /** Where the agent works (the repository folder in the guest). */
  workdir: string;
  /** This workspace's `agent_config[<agent>]` merged over the global `agents.<agent>` block. */
  settings: Record<string, unknown>;
  /** The agent's version as detected, when known. */
  version?: string;
  /** Names of the credential variables the run will have (never their values). */
  credentials: string[];
  /**
   * The stand-ins this run's agent gets for its keys, by name, when cal's proxy keeps the real
   * ones on the host (never a real key): what the agent records of its key may be pre-seeded.
   */
  standIns?: Record<string, string>;
}

export interface RunRequest {
  /** A headless prompt; undefined for an interactive session. */
  prompt?: string;
  /** The agent's own full-permission mode (the VM is the boundary). */
  autonomous: boolean;
}

/** What a headless run reports, parsed from the agent's JSON output. */
export interface HeadlessReport {
  session_id?: string;
  cost_usd?: number;
  permission_denials?: unknown[];
  result?: string;
  is_error?: boolean;
}

export interface AgentPlugin {
  name: string;
  displayName: string;
  /** Executable names to look for, preferred first. */
  binaries: string[];
  /** Install methods, recommended first; the rest are fallbacks. */
  install: InstallMethod[];
  /** Update methods by install method name (default: run the install method again). */
  update?: Record<string, string>;
  /** Arguments that print the version. */
  versionArgs: string[];
  /** Extracts the version from that output. */
  parseVersion(output: string): string | undefined;
  /** Credential alternatives: each is a list of variables that together suffice. */
  credentials: string[][];
  /** Hosts it needs (API, login, installer), for the egress policy's `@agent` preset. */
  hosts?: string[];
  /**
   * How each credential reaches its API, by variable name, so the key can stay on the host:
   * the agent gets a stand-in and cal's proxy puts the real value in `header` toward `hosts`
   * only (the value as the agent sends it: `x-api-key: <key>`, `authorization: Bearer <key>`).
   * A credential not listed cannot be kept on the host; its real value goes into the guest only
   * with `--pass-key`.
   */
  keyRoutes?: Record<string, { hosts: string[]; header: string }>;
  /**
   * Why this agent's keys cannot stay on the host, when it has no `keyRoutes` (shown when a run
   * needs `--pass-key`).
   */
  keyRoutesMissing?: string;
  /**
   * Variables that make the agent trust a CA bundle file, set to the proxy's trust bundle in the
   * guest when its keys are swapped (default: NODE_EXTRA_CA_CERTS and SSL_CERT_FILE).
   */
  trustEnv?: string[];
  /** Non-secret environment for every run (self-updates off, telemetry off, ...). */
  env: Record<string, string>;
  /**
   * Non-secret environment for one kind of run, over `env` (e.g. a permission mode the agent
   * takes only from its environment). Optional.
   */
  runEnv?(ctx: AgentContext, run: RunRequest): Record<string, string>;
  /** Config and permission files, and first-run gates to pre-seed. */
  configure(ctx: AgentContext): ConfigEdit[];
  /** The argument vector after the binary, for an interactive or headless run. */
  args(ctx: AgentContext, run: RunRequest): string[];
  /** Reads a headless run's stdout. */
  parseHeadless(stdout: string): HeadlessReport;
}

/** The non-secret environment of a launch: the plugin's `env`, then its `runEnv` for this run. */
export function launchEnv(
  plugin: AgentPlugin,
  ctx: AgentContext,
  run: RunRequest,
): Record<string, string> {
  return { ...plugin.env, ...plugin.runEnv?.(ctx, run) };
}

/** The last line of an agent's output that parses as a JSON object (its result), if any. */
// deno-lint-ignore no-explicit-any
export function lastJsonObject(stdout: string): Record<string, any> | undefined {
  const line = stdout.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  if (!line) return undefined;
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/** Helpers for plugins: strings from settings, with defaults. */
export function stringList(v: unknown, fallback: string[] = []): string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string") ? v as string[] : fallback;
}

export function str(v: unknown, fallback?: string): string | undefined {
  return typeof v === "string" ? v : fallback;
}

/** Reads `obj.a.b` for the dotted path `a.b`. */
export function getPath(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj;
  for (const k of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

/** Sets `obj.a.b`, creating objects on the way (replacing non-objects). */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (typeof next !== "object" || next === null || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]] = value;
}

/**
 * Puts `wanted` into the list at `path`: entries cal wrote before but no longer wants are
 * removed, entries anyone else wrote are kept, order is preserved.
 */
export function mergeOwnedList(
  obj: Record<string, unknown>,
  path: string,
  wanted: string[],
  ownedBefore: Owned,
  ownedAfter: Owned,
): void {
  const before = new Set(ownedBefore[path] ?? []);
  const current = getPath(obj, path);
  const list = Array.isArray(current)
    ? current.filter((x) => !before.has(x) || wanted.includes(x))
    : [];
  for (const w of wanted) if (!list.includes(w)) list.push(w);
  setPath(obj, path, list);
  ownedAfter[path] = [...wanted];
}

/** Like mergeOwnedList, for a map of keys to values (`{"git *": "allow"}`). */
export function mergeOwnedMap(
  obj: Record<string, unknown>,
  path: string,
  wanted: Record<string, string>,
  ownedBefore: Owned,
  ownedAfter: Owned,
): void {
  const before = new Set(ownedBefore[path] ?? []);
  const current = getPath(obj, path);
  const map: Record<string, unknown> = typeof current === "object" && current !== null &&
      !Array.isArray(current)
    ? { ...current as Record<string, unknown> }
    : {};
  for (const k of Object.keys(map)) if (before.has(k) && !(k in wanted)) delete map[k];
  Object.assign(map, wanted);
  setPath(obj, path, map);
  ownedAfter[path] = Object.keys(wanted);
}
