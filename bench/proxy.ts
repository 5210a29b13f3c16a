/**
 * The egress proxy's cost, side by side with going direct, against a local server (so only the
 * proxy is measured, not the internet): 100 small requests, a new connection per request (plain
 * HTTP, and HTTPS-style CONNECT tunnels), and one large download. The goal: throughput within
 * 1.2x of direct, added latency under 5 ms.
 *
 * curl's own timings (`%{time_total}`, `%{speed_download}`) are used, so starting curl is not
 * counted. Run alone with `deno run -A bench/proxy.ts`, or as part of `deno task bench`.
 */

import { startProxy } from "../lib/network/proxy.ts";

const SMALL = 100;
const LARGE_MB = Number(Deno.env.get("BENCH_PROXY_MB") ?? 256);
const CHUNK = new Uint8Array(1024 * 1024).fill(120);

async function curl(args: string[]): Promise<string> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "-o", "/dev/null", ...args],
    env: { NO_PROXY: "", no_proxy: "" },
  }).output();
  if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Per-request times (ms) of `SMALL` requests, each its own curl and connection. */
async function small(url: string, via: string[]): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < SMALL; i++) {
    xs.push(Number(await curl([...via, "-w", "%{time_total}", url])) * 1000);
  }
  return median(xs);
}

/** MB/s of one large download. */
async function large(url: string, via: string[]): Promise<number> {
  return Number(await curl([...via, "-w", "%{speed_download}", url])) / 1e6;
}

export async function proxyBench(report: (what: string, value: string) => void): Promise<void> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (new URL(req.url).pathname !== "/large") return new Response("ok\n");
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent++ >= LARGE_MB) c.close();
        else c.enqueue(CHUNK);
      },
    });
    return new Response(body, { headers: { "content-length": String(LARGE_MB * CHUNK.length) } });
  });
  const port = server.addr.port;
  const proxy = await startProxy({
    policy: () =>
      Promise.resolve({
        mode: "allowlist",
        allow: [{ pattern: `127.0.0.1:${port}`, source: "bench" }],
        deny: [],
      }),
    onDecision: () => {},
    tcp: { host: "127.0.0.1", port: 0 },
  });
  const via = ["-x", `http://127.0.0.1:${proxy.tcp!.port}`];
  const tunnel = [...via, "-p"];
  const base = `http://127.0.0.1:${port}`;
  try {
    await curl([...via, `${base}/`]); // warm up both paths
    await curl([`${base}/`]);
    const d = await small(`${base}/`, []);
    const p = await small(`${base}/`, via);
    const t = await small(`${base}/`, tunnel);
    const fmt = (x: number) => `${x.toFixed(2)} ms`;
    report(
      `proxy: ${SMALL} small requests, median per request (new connection each)`,
      `direct ${fmt(d)} | proxy ${fmt(p)} (+${fmt(p - d)}) | CONNECT tunnel ${fmt(t)} (+${
        fmt(t - d)
      })`,
    );
    const ld = await large(`${base}/large`, []);
    const lp = await large(`${base}/large`, via);
    const lt = await large(`${base}/large`, tunnel);
    const mb = (x: number) => `${x.toFixed(0)} MB/s`;
    report(
      `proxy: ${LARGE_MB} MB download`,
      `direct ${mb(ld)} | proxy ${mb(lp)} (${(ld / lp).toFixed(2)}x) | CONNECT tunnel ${mb(lt)} (${
        (ld / lt).toFixed(2)
      }x)`,
    );
  } finally {
    await proxy.close();
    await server.shutdown();
  }
}

if (import.meta.main) {
  await proxyBench((what, value) => console.log(`${what}: ${value}`));
}
