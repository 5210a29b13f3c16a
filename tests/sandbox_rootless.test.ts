/**
 * The sandbox provider without root: cal run by an unprivileged user (nobody) isolates a
 * workspace with an unprivileged user namespace, maps the caller to the guest's admin, and
 * serves the same verbs (start, ssh, snapshot, restore, destroy), offline (`--network none`) too.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { getDenoDir, REPO } from "./helpers.ts";

async function sh(cmd: string[], env: Record<string, string> = {}) {
  const o = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: o.code, stdout: d.decode(o.stdout), stderr: d.decode(o.stderr) };
}

const canTry = Deno.build.os === "linux" && Deno.uid() === 0 &&
  (await sh(["sh", "-c", "command -v runuser"])).code === 0 &&
  (await sh([
      "runuser",
      "-u",
      "nobody",
      "--",
      "bwrap",
      "--unshare-user",
      "--ro-bind",
      "/",
      "/",
      "true",
    ])).code === 0;

describe("the sandbox provider without root", {
  skip: !canTry && "needs root (to become nobody) and unprivileged user namespaces",
}, () => {
  let root: string;
  let env: Record<string, string>;
  const cal = (...args: string[]) =>
    sh([
      "runuser",
      "-u",
      "nobody",
      "--",
      "env",
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      "deno",
      "run",
      "-A",
      "--quiet",
      join(REPO, "commands", "cal.ts"),
      ...args,
    ]);

  before(async () => {
    root = await Deno.makeTempDir({ prefix: "cal-rootless-" });
    // nobody cannot read root's Deno cache: give it a copy.
    const cache = join(root, "deno");
    await sh(["cp", "-a", await getDenoDir(), cache]);
    await Deno.mkdir(join(root, "home"));
    await sh(["chown", "-R", "nobody:nogroup", root]);
    await Deno.chmod(root, 0o755);
    env = {
      HOME: join(root, "home"),
      CAL_HOME: join(root, "home", ".cal"),
      DENO_DIR: cache,
      PATH: "/usr/bin:/bin:/usr/sbin:/sbin",
      NO_COLOR: "1",
    };
  });
  after(async () => {
    await cal("vm", "destroy", "rootless", "--yes", "--force");
    await Deno.remove(root, { recursive: true }).catch(() => {});
  });

  it("creates, starts and serves a workspace as nobody", async () => {
    const init = await cal("isolation", "init", "rootless", "--provider", "sandbox", "--json");
    assert.equal(init.code, 0, init.stderr);
    const start = await cal("isolation", "start", "rootless", "--json");
    assert.equal(start.code, 0, start.stderr);
    const inside = await cal(
      "isolation",
      "ssh",
      "rootless",
      "id -un; echo $HOME; ls /root /work 2>&1; true",
    );
    assert.equal(inside.code, 0, inside.stderr);
    assert.match(inside.stdout, /^admin\n\/Users\/admin\n/);
    assert.match(inside.stdout, /cannot access '\/root'/);
    assert.match(inside.stdout, /cannot access '\/work'/);
    const port = JSON.parse(start.stdout.trim().split("\n").pop()!);
    assert.equal(port.provider, "sandbox");
  });

  it("--network none works without root: sshd is reached inside the user's namespaces", async () => {
    // A TCP server on the host's loopback: the offline guest must not reach it.
    const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (server.addr as Deno.NetAddr).port;
    (async () => {
      for await (const c of server) c.close();
    })();
    try {
      const init = await cal("vm", "init", "offline", "--provider", "sandbox", "--network", "none");
      assert.equal(init.code, 0, init.stderr);
      const start = await cal("vm", "start", "offline");
      assert.equal(start.code, 0, start.stderr);
      const probe = `exec 3<>/dev/tcp/127.0.0.1/${port} && echo CONNECTED`;
      const r = await cal(
        "vm",
        "exec",
        "offline",
        "--",
        "bash",
        "-c",
        `id -un; ${probe} 2>&1; true`,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^admin$/m, "the command ran in the guest");
      assert.doesNotMatch(r.stdout, /CONNECTED/);
    } finally {
      server.close();
      await cal("vm", "destroy", "offline", "--yes", "--force");
    }
  });

  it("snapshots and restores without root", async () => {
    assert.equal((await cal("vm", "ssh", "rootless", "echo kept > ~/k.txt")).code, 0);
    assert.equal((await cal("snap", "create", "rootless", "--name", "s1")).code, 0);
    assert.equal((await cal("vm", "ssh", "rootless", "rm ~/k.txt")).code, 0);
    const r = await cal("snap", "restore", "rootless", "--name", "s1", "--force");
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await cal("vm", "ssh", "rootless", "cat ~/k.txt")).stdout, "kept\n");
  });
});
