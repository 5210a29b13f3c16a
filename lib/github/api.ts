/**
 * GitHub from the host, with the host's login: where a host's web, git and API live, and the few
 * REST calls cal makes itself (who the token is, pull requests) so the guest needs no token.
 */

import { CalError, ExitCode } from "../errors.ts";
import { hostToken } from "./token.ts";

/** `github.localhost` is plain HTTP (gh's own special case); every other host is HTTPS. */
const scheme = (host: string) =>
  host.endsWith(".localhost") || host === "localhost" ? "http" : "https";

/** Where repositories live: `https://github.com/`. */
export const webBase = (host: string) => `${scheme(host)}://${host}/`;

/** The REST API: api.github.com, api.github.localhost, or a GHES host's /api/v3/. */
export function apiBase(host: string): string {
  if (host === "github.com") return "https://api.github.com/";
  if (host.endsWith(".localhost")) return `http://api.${host}/`;
  return `https://${host}/api/v3/`;
}

/** The Authorization header git and the API take for a token. */
export const basicAuth = (token: string) => "Basic " + btoa(`x-access-token:${token}`);

export function noLogin(host: string, workspace?: string, more = ""): CalError {
  return new CalError(`There is no GitHub login for ${host} on this host.`, {
    code: "auth-failed",
    exit: ExitCode.failed,
    hint:
      `Log in once on the host: \`gh auth token | cal-gh auth login --token-stdin --hostname ${host}\` ` +
      "(or any token on stdin); every workspace's broker then uses it." + more,
    ...(workspace ? { workspace } : {}),
  });
}

export interface ApiAnswer {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** One REST call with the host's token. */
export async function api(
  host: string,
  method: string,
  path: string,
  body?: unknown,
  workspace?: string,
  token?: string,
): Promise<ApiAnswer> {
  const t = token ? { token } : await hostToken(host);
  if (!t) throw noLogin(host, workspace);
  let r: Response;
  try {
    r = await fetch(apiBase(host) + path.replace(/^\//, ""), {
      method,
      headers: {
        authorization: `token ${t.token}`,
        accept: "application/vnd.github+json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new CalError(`The host cannot reach ${host}'s API (${(e as Error).message}).`, {
      code: "network",
      hint: "Check the host's network and retry; nothing was changed.",
      ...(workspace ? { workspace } : {}),
    });
  }
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: r.status, body: parsed };
}

export interface PullAnswer {
  url: string;
  number: number;
  /** It was there already (an open pull request for the same head and base). */
  existed: boolean;
}

function apiError(what: string, a: ApiAnswer, workspace: string, needed: string): CalError {
  const said = typeof a.body === "object" && a.body
    ? [a.body.message, ...(a.body.errors ?? []).map((e: { message?: string }) => e.message)]
      .filter(Boolean).join(": ")
    : String(a.body).slice(0, 200);
  if (a.status === 401) {
    return new CalError(`${what}: GitHub refused the host's login (${said}).`, {
      code: "auth-failed",
      hint: "Log in again on the host: `cal-gh auth login --token-stdin`.",
      workspace,
    });
  }
  if (a.status === 403) {
    return new CalError(`${what}: the token is missing a permission it needs (${said}).`, {
      code: "usage",
      exit: ExitCode.usage,
      hint: `Give the token ${needed} on this repository, then log in again on the host: ` +
        "`cal-gh auth login --token-stdin`. Nothing was changed on GitHub.",
      workspace,
    });
  }
  if (a.status === 404) {
    return new CalError(`${what}: the repository was not found (${said}).`, {
      code: "not-found",
      exit: ExitCode.notFound,
      hint: "Check the owner/name, and that the host's token can see it.",
      workspace,
    });
  }
  return new CalError(`${what} failed: HTTP ${a.status} ${said}`, { code: "failed", workspace });
}

/** Opens a pull request from the host (or finds the open one for the same head and base). */
export async function openPull(
  host: string,
  slug: string,
  p: { title: string; body: string; head: string; base: string; draft: boolean },
  workspace: string,
): Promise<PullAnswer> {
  const a = await api(host, "POST", `repos/${slug}/pulls`, p, workspace);
  if (a.status === 201) return { url: a.body.html_url, number: a.body.number, existed: false };
  const said = JSON.stringify(a.body ?? "");
  if (a.status === 422 && /already exists/i.test(said)) {
    const owner = slug.split("/")[0];
    const list = await api(
      host,
      "GET",
      `repos/${slug}/pulls?state=open&head=${encodeURIComponent(`${owner}:${p.head}`)}&base=${
        encodeURIComponent(p.base)
      }`,
      undefined,
      workspace,
    );
    const found = Array.isArray(list.body) ? list.body[0] : undefined;
    if (found?.html_url) return { url: found.html_url, number: found.number, existed: true };
  }
  throw apiError("Opening the pull request", a, workspace, "Pull requests: read and write");
}

/** The token's account (login and id), for a commit's noreply identity. */
export async function viewer(
  host: string,
  workspace: string,
  token?: string,
): Promise<{ login: string; id: number } | undefined> {
  const a = await api(host, "GET", "user", undefined, workspace, token).catch(() => undefined);
  return a?.status === 200 && typeof a.body?.login === "string"
    ? { login: a.body.login, id: Number(a.body.id) }
    : undefined;
}
