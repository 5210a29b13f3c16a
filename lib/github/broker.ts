/**
 * cal's GitHub broker for one workspace: a smart-HTTP git endpoint on a unix socket in the
 * workspace's `net/` folder (a sandbox guest reaches it at 127.0.0.1:3129 through a relay; its
 * git config sends the GitHub host's URLs there). The guest never holds the token.
 *
 * Only the repositories cal cloned for the workspace are served. Each has a bare mirror on the host (`<vmDir>/github/mirrors/OWNER/REPO.git`),
 * brought up to date from GitHub (with the host's token) whenever a client asks for its refs.
 * Fetches are served from it; pushes go into it through real `git receive-pack`
 * (`git http-backend`), whose pre-receive hook (broker_hook.ts) checks every ref update against
 * the push rules and forwards the accepted ones to GitHub before the mirror takes them.
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { paths } from "../paths.ts";
import { basicAuth, webBase } from "./api.ts";
import type { PushRules } from "./push_rules.ts";
import { rewriteReport } from "./report_status.ts";
import { hostToken } from "./token.ts";

/** What cal tells the broker (written by broker_daemon.ts, read on every request). */
export interface BrokerSettings {
  host: string;
  rules: PushRules;
  /** OWNER/REPO cal cloned (or is cloning) for the workspace: the only ones it reaches. */
  repos: string[];
}

export const brokerFiles = (name: string) => {
  const dir = paths.vmDir(name);
  return {
    dir,
    socket: join(dir, "net", "github.sock"),
    settings: join(dir, "github-broker.json"),
    state: join(dir, "github-broker.state.json"),
    secret: join(dir, "github-broker.secret"),
    pid: join(dir, "github-broker.pid"),
    log: join(dir, "github-broker.log"),
    decisions: join(dir, "github-broker.ndjson"),
    mirrors: join(dir, "github", "mirrors"),
  };
};

const HOOK = fileURLToPath(new URL("./broker_hook.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

const OWNER = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;
const NAME = /^(?!-)(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$/;
const ROUTE = /^\/([^/]+)\/([^/]+?)(?:\.git)?\/(info\/refs|git-upload-pack|git-receive-pack)$/;

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

function text(status: number, body: string): Response {
  return new Response(body + "\n", { status, headers: { "content-type": "text/plain" } });
}

async function gitRun(args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command("git", {
    args,
    env: { GIT_TERMINAL_PROMPT: "0", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** The mirror, made on first use: no non-fast-forward, no deletion, the broker's hook. */
async function ensureMirror(dir: string): Promise<void> {
  try {
    await Deno.lstat(join(dir, "HEAD"));
    return;
  } catch { /* make it */ }
  await Deno.mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  const tmp = `${dir}.${crypto.randomUUID()}.tmp`;
  if ((await gitRun(["init", "-q", "--bare", tmp])).code !== 0) throw new Error("git init failed");
  for (
    const [k, v] of [
      ["receive.denyNonFastForwards", "true"],
      ["receive.denyDeletes", "true"],
      ["http.receivepack", "true"],
      ["http.uploadpack", "true"],
    ]
  ) await gitRun(["--git-dir", tmp, "config", k, v]);
  // Its own hooks only, whatever the user's global config says.
  await gitRun(["--git-dir", tmp, "config", "core.hooksPath", join(dir, "hooks")]);
  await Deno.writeTextFile(
    join(tmp, "hooks", "pre-receive"),
    `#!/bin/sh\nexec ${q(Deno.execPath())} run -A --no-prompt --quiet --config ${q(CONFIG)} ${
      q(HOOK)
    }\n`,
    { mode: 0o700 },
  );
  await Deno.rename(tmp, dir).catch(async (e) => {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    try {
      await Deno.lstat(join(dir, "HEAD")); // another request made it first
    } catch {
      throw e;
    }
  });
}

function log(file: string, entry: Record<string, unknown>) {
  try {
    Deno.writeTextFileSync(
      file,
      JSON.stringify({ time: new Date().toISOString(), ...entry }) + "\n",
      { append: true, mode: 0o600 },
    );
  } catch { /* best effort */ }
}

/** Per repository: one sync at a time. */
const syncing = new Map<string, Promise<unknown>>();

/**
 * Brings the mirror's branches and HEAD up to date with GitHub. Returns the default branch, or
 * an error Response (the repository is missing, the login is refused, GitHub is unreachable).
 */
async function sync(
  mirror: string,
  upstream: string,
  host: string,
): Promise<{ defaultBranch?: string } | Response> {
  const t = await hostToken(host);
  if (!t) {
    return text(
      503,
      `cal's GitHub broker has no login for ${host}: run \`cal-gh auth login --token-stdin\` on the host.`,
    );
  }
  const auth = {
    GIT_CONFIG_COUNT: "1",
    GIT_CONFIG_KEY_0: "http.extraHeader",
    GIT_CONFIG_VALUE_0: `Authorization: ${basicAuth(t.token)}`,
  };
  const head = await gitRun(["ls-remote", "--symref", upstream, "HEAD"], auth);
  if (head.code !== 0) {
    if (/not found|404/i.test(head.stderr)) return text(404, "Repository not found.");
    if (/401|403|Authentication failed/i.test(head.stderr)) {
      return text(403, `GitHub refused the host's login for ${host} (log in again on the host).`);
    }
    return text(502, `cal's GitHub broker cannot reach ${host}.`);
  }
  const defaultBranch = /^ref: refs\/heads\/(\S+)\tHEAD$/m.exec(head.stdout)?.[1];
  const f = await gitRun([
    "--git-dir",
    mirror,
    "fetch",
    "-q",
    "--prune",
    "--no-tags",
    upstream,
    "+refs/heads/*:refs/heads/*",
  ], auth);
  if (f.code !== 0) return text(502, `cal's GitHub broker could not fetch from ${host}.`);
  if (defaultBranch) {
    await gitRun(["--git-dir", mirror, "symbolic-ref", "HEAD", `refs/heads/${defaultBranch}`]);
  }
  return { defaultBranch };
}

/** git http-backend (CGI) on the mirrors, streamed; the hook's settings in its environment. */
async function backend(
  req: Request,
  url: URL,
  root: string,
  pathInfo: string,
  hookEnv: Record<string, string>,
): Promise<Response> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: "1",
    GATEWAY_INTERFACE: "CGI/1.1",
    SERVER_PROTOCOL: "HTTP/1.1",
    REQUEST_METHOD: req.method,
    PATH_INFO: pathInfo,
    QUERY_STRING: url.search.replace(/^\?/, ""),
    REMOTE_ADDR: "127.0.0.1",
    // receive-pack serves only an authenticated user; the guest is this workspace.
    REMOTE_USER: "cal-workspace",
    ...hookEnv,
  };
  // The hook's deno and cal's home; the host's own proxy settings for its push upstream.
  for (
    const k of [
      "DENO_DIR",
      "CAL_HOME",
      "XDG_CACHE_HOME",
      ...["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"].flatMap((v) => [v, v.toLowerCase()]),
    ]
  ) {
    const v = Deno.env.get(k);
    if (v) env[k] = v;
  }
  for (
    const [h, k] of [
      ["content-type", "CONTENT_TYPE"],
      ["content-length", "CONTENT_LENGTH"],
      ["content-encoding", "HTTP_CONTENT_ENCODING"],
      ["git-protocol", "HTTP_GIT_PROTOCOL"],
    ]
  ) {
    const v = req.headers.get(h);
    if (v) env[k] = v;
  }
  const child = new Deno.Command("git", {
    args: ["http-backend"],
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  if (req.body) req.body.pipeTo(child.stdin).catch(() => {});
  else child.stdin.close().catch(() => {});
  const reader = child.stdout.getReader();
  let buf = new Uint8Array(0);
  let end = -1;
  let sep = 0;
  while (end < 0) {
    const { value, done } = await reader.read();
    if (done) break;
    const next = new Uint8Array(buf.length + value.length);
    next.set(buf);
    next.set(value, buf.length);
    buf = next;
    const s = new TextDecoder("latin1").decode(buf);
    const crlf = s.indexOf("\r\n\r\n");
    const lf = s.indexOf("\n\n");
    if (crlf >= 0 && (lf < 0 || crlf < lf)) [end, sep] = [crlf, 4];
    else if (lf >= 0) [end, sep] = [lf, 2];
  }
  if (end < 0) {
    child.status.catch(() => {});
    return text(500, "git http-backend failed");
  }
  const headers = new Headers();
  let status = 200;
  for (const line of new TextDecoder().decode(buf.slice(0, end)).split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    if (k.toLowerCase() === "status") status = parseInt(v, 10) || 200;
    else headers.append(k, v);
  }
  const first = buf.slice(end + sep);
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      if (first.length) c.enqueue(first);
    },
    async pull(c) {
      const { value, done } = await reader.read();
      if (done) {
        await child.status;
        c.close();
      } else c.enqueue(value);
    },
    cancel() {
      reader.cancel().catch(() => {});
    },
  });
  return new Response(body, { status, headers });
}

/** The request handler of `name`'s broker. */
/** Whether two strings are equal, in a time that does not depend on where they differ. */
function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

/**
 * The request handler of `name`'s broker. With `secret` (its TCP listener, which neighbours on
 * the same network could reach), every path starts with `/<secret>/`.
 */
export function brokerHandler(
  name: string,
  secret?: string,
): (req: Request) => Promise<Response> {
  const f = brokerFiles(name);
  return async (req) => {
    const url = new URL(req.url);
    if (secret !== undefined) {
      const first = url.pathname.split("/")[1] ?? "";
      if (!sameSecret(first, secret)) return text(404, "Repository not found.");
      url.pathname = url.pathname.slice(first.length + 1);
    }
    const m = ROUTE.exec(url.pathname);
    if (!m || !OWNER.test(m[1]) || !NAME.test(m[2])) return text(404, "Repository not found.");
    const [, owner, repo, what] = m;
    const service = what === "info/refs" ? url.searchParams.get("service") : what;
    if (service !== "git-upload-pack" && service !== "git-receive-pack") {
      return text(403, "cal's GitHub broker speaks git's smart HTTP only.");
    }
    if ((what === "info/refs") !== (req.method === "GET")) return text(405, "Method not allowed.");
    let settings: BrokerSettings;
    try {
      settings = JSON.parse(await Deno.readTextFile(f.settings));
    } catch {
      return text(503, "cal's GitHub broker has no settings for this workspace.");
    }
    // Only the workspace's repositories, both ways: what the token could read elsewhere (a
    // private repository) must not end up in a branch the agent may push.
    if (!(settings.repos ?? []).some((r) => r.toLowerCase() === `${owner}/${repo}`.toLowerCase())) {
      log(f.decisions, { repo: `${owner}/${repo}`, service, allowed: false, rule: "not-own-repo" });
      return text(
        403,
        `cal: refused (rule: not-own-repo): ${owner}/${repo} is not a repository cal cloned for ` +
          `this workspace; clone it first (cal-gh clone WS --repo ${owner}/${repo}).`,
      );
    }
    const mirror = join(f.mirrors, owner, `${repo}.git`);
    const upstream = `${webBase(settings.host)}${owner}/${repo}.git`;
    await ensureMirror(mirror);
    let defaultBranch = settings.rules.defaultBranch;
    if (what === "info/refs") {
      // One sync at a time per repository; a client's refs are GitHub's as of now.
      const before = syncing.get(mirror) ?? Promise.resolve();
      const run = before.then(() => sync(mirror, upstream, settings.host));
      syncing.set(mirror, run.catch(() => {}));
      const s = await run;
      if (s instanceof Response) return s;
      defaultBranch = s.defaultBranch ?? defaultBranch;
    } else {
      const head = await gitRun(["--git-dir", mirror, "symbolic-ref", "--short", "HEAD"]);
      if (head.code === 0) defaultBranch = head.stdout.trim() || defaultBranch;
    }
    const pushing = what === "git-receive-pack";
    const verdicts = join(f.mirrors, `.verdicts-${crypto.randomUUID()}.json`);
    const res = await backend(req, url, f.mirrors, `/${owner}/${repo}.git/${what}`, {
      CAL_BROKER_RULES: JSON.stringify({ ...settings.rules, defaultBranch }),
      CAL_BROKER_REPO: `${owner}/${repo}`,
      CAL_BROKER_UPSTREAM: upstream,
      CAL_BROKER_HOST: settings.host,
      CAL_BROKER_LOG: f.decisions,
      ...(pushing ? { CAL_BROKER_VERDICTS: verdicts } : {}),
    });
    if (!pushing || res.status !== 200) return res;
    // A push's answer is small: read it whole and put the hook's reasons on its ng lines.
    const body = new Uint8Array(await res.arrayBuffer());
    let reasons = new Map<string, string>();
    try {
      const list = JSON.parse(await Deno.readTextFile(verdicts)) as {
        ref: string;
        reason: string;
      }[];
      reasons = new Map(list.map((x) => [x.ref, x.reason]));
      await Deno.remove(verdicts);
    } catch { /* no refusal */ }
    return new Response(rewriteReport(body, reasons) as Uint8Array<ArrayBuffer>, {
      status: 200,
      headers: res.headers,
    });
  };
}
