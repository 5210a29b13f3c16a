/**
 * A push through cal's GitHub broker against the same push straight to the GitHub stand-in,
 * side by side (one new commit per push, a new branch each, so every push sends a pack and
 * creates a ref). The broker runs in this process on a TCP port (the guest reaches the same
 * handler through its relay); its hook and git run as in a workspace. The stand-in is reached
 * as an HTTP proxy (no port 80 needed). Run alone with `deno run -A bench/github_broker.ts`, or
 * as part of `deno task bench`.
 */

import { join } from "node:path";
import { proxyEnv, startGitHub } from "../tests/rig/github.ts";

const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function brokerBench(report: (what: string, value: string) => void): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "cal-bench-broker-" });
  const gh = await startGitHub({ root: join(root, "gh"), port: 0 });
  const token = "ghp_bench" + crypto.randomUUID().replaceAll("-", "");
  gh.state.addToken(token, { login: "octo" });
  await gh.state.createRepo("octo", "bench", { defaultBranch: "main", files: { "a.txt": "a\n" } });
  const oldEnv = Deno.env.toObject();
  // The broker (this process, its hook and their git) reaches the stand-in as a proxy.
  for (const [k, v] of Object.entries(proxyEnv(gh.port))) Deno.env.set(k, v);
  Deno.env.set("CAL_HOME", join(root, "cal"));
  const { saveHostToken } = await import("../lib/github/token.ts");
  const { brokerFiles, brokerHandler } = await import("../lib/github/broker.ts");
  const ws = "bench";
  const f = brokerFiles(ws);
  await Deno.mkdir(join(f.dir, "net"), { recursive: true });
  await saveHostToken("github.localhost", token);
  await Deno.writeTextFile(
    f.settings,
    JSON.stringify({
      host: "github.localhost",
      rules: { prefix: "agent/", own: [], protected: [] },
      repos: ["octo/bench"],
    }),
  );
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, brokerHandler(ws));
  const work = join(root, "work");
  const git = async (args: string[], env: Record<string, string> = {}) => {
    const r = await new Deno.Command("git", {
      args,
      cwd: work,
      env: { GIT_TERMINAL_PROMPT: "0", NO_PROXY: "127.0.0.1", no_proxy: "127.0.0.1", ...env },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (r.code !== 0) throw new Error(new TextDecoder().decode(r.stderr));
  };
  const auth = {
    GIT_CONFIG_COUNT: "1",
    GIT_CONFIG_KEY_0: "http.extraHeader",
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${btoa(`x-access-token:${token}`)}`,
  };
  try {
    await Deno.mkdir(work);
    await git(["clone", "-q", "http://github.localhost/octo/bench.git", "."]);
    const commit = async (n: string) => {
      await Deno.writeTextFile(join(work, `${n}.txt`), crypto.randomUUID().repeat(100));
      await git(["add", "."]);
      await git(["-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", n]);
    };
    const time = async (url: string, kind: string, env: Record<string, string>) => {
      const xs: number[] = [];
      for (let i = 0; i < RUNS + 1; i++) {
        await commit(`${kind}-${i}`);
        const t0 = performance.now();
        await git(["push", "-q", url, `HEAD:refs/heads/agent/${kind}-${i}`], env);
        if (i > 0) xs.push(performance.now() - t0); // the first warms up
      }
      return median(xs);
    };
    const direct = await time("http://github.localhost/octo/bench.git", "direct", auth);
    const broker = await time(
      `http://127.0.0.1:${server.addr.port}/octo/bench.git`,
      "broker",
      {},
    );
    const landed = await gh.state.refs("octo", "bench");
    if (!JSON.stringify(landed).includes(`agent/broker-${RUNS}`)) {
      throw new Error("the broker's pushes did not reach the stand-in");
    }
    report(
      `GitHub push of one new commit, median of ${RUNS}`,
      `direct ${direct.toFixed(0)} ms | through cal's broker ${broker.toFixed(0)} ms (+${
        (broker - direct).toFixed(0)
      } ms: mirror sync, receive-pack, the rules hook, the push upstream)`,
    );
  } finally {
    await server.shutdown();
    await gh.close();
    for (const k of Object.keys(Deno.env.toObject())) if (!(k in oldEnv)) Deno.env.delete(k);
    for (const [k, v] of Object.entries(oldEnv)) Deno.env.set(k, v);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await brokerBench((w, v) => console.log(`${w}: ${v}`));
