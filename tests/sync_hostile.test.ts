/**
 * sync, watch and logs against a hostile guest, on both providers: from inside the guest (over
 * SSH, as a hijacked agent would) each test plants one trick, then a host verb runs, and the host
 * is checked from outside: every victim (host files and folders outside every cal folder, with
 * known content, mode and mtime) is unchanged, nothing setuid, setgid, device, FIFO or a link
 * leading out landed under the output folder beyond what the guest itself put in its share, and
 * human output carries no raw control character (JSON carries the exact names).
 */

import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { PROVIDERS, REAL_TART, Rig, show, type TestProvider } from "./rig_env.ts";
import { type CalResult, getDenoDir, REPO } from "./helpers.ts";
import { hazards, makeVictims, rawControls, type Victim, victimState } from "./hostile/host.ts";
import { forgedTar } from "./hostile/tar.ts";

const SHARE = "/Volumes/My Shared Files/output";
const SECRET = "SYNCSECRET" + crypto.randomUUID().slice(0, 8);

const VICTIMS: Victim[] = [
  { path: "cat-builds", dir: true, trick: "builds/ links to a host folder" },
  { path: "cat-results", dir: true, trick: "test-results/ is a relative link" },
  { path: "cat-logs", dir: true, trick: "logs/ links through a link in the share" },
  { path: "recorded", trick: "a recorded destination replaced by a link" },
  { path: "log-leak", trick: "a log that links to a host file" },
  { path: "tar-link", trick: "forged tar: a link member" },
  { path: "dotdot", dir: true, trick: "forged listing: ../ paths" },
];

/** Names a build could leave (argv only, so no quoting is needed in the guest). */
const NAMES = [
  "\x1b]52;c;aGk=\x07.ipa",
  "\x1b]0;pwned\x07.ipa",
  "\x1b[2J.ipa",
  "nl\nwarning: forged line.ipa",
  "cr\rhidden.ipa",
  "-rf.ipa",
  "--help.ipa",
  "c1-\u009b31m.ipa",
];

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));

/** Fake `perl` and `tar` first on the PATH of cal's guest commands ($1 listing, $2 tar; base64). */
const FAKE_TOOLS = String.raw`set -e
H=/opt/homebrew/share/sync-hostile
mkdir -p "$H" /opt/homebrew/bin "$HOME/.local/bin"
printf %s "$1" | /usr/bin/base64 -d > "$H/listing.bin"
printf %s "$2" | /usr/bin/base64 -d > "$H/forged.tar"
cat > "$H/perl" <<'EOF'
#!/bin/sh
/usr/bin/perl "$@"; rc=$?
[ "$1" = -e ] && cat /opt/homebrew/share/sync-hostile/listing.bin
exit $rc
EOF
cat > "$H/tar" <<'EOF'
#!/bin/sh
case "$*" in *"-cf -"*) cat /opt/homebrew/share/sync-hostile/forged.tar ;; esac
exec /usr/bin/tar "$@"
EOF
for t in perl tar; do
  chmod 755 "$H/$t"; cp "$H/$t" "/opt/homebrew/bin/$t"; cp "$H/$t" "$HOME/.local/bin/$t"
done
mkdir -p "$HOME/output"; cd "$HOME/output"
printf suid > suid.ipa; chmod 4755 suid.ipa
printf sgid > sgid.ipa; chmod 2755 sgid.ipa
mkfifo fifo.ipa
`;

function suite(provider: TestProvider) {
  describe(
    `sync, watch and logs against a hostile guest (${provider})`,
    { skip: REAL_TART },
    () => {
      let rig: Rig;
      let ws: string;
      let out: string;
      let victims: string;
      let baseline: Map<string, string>;

      async function guest(script: string, ...args: string[]): Promise<CalResult> {
        const r = await rig.vm(["exec", ws, "--", "/bin/sh", "-c", script, "sh", ...args]);
        assert.equal(r.code, 0, show(r));
        return r;
      }

      /**
       * Before each trick: the share's category folders real again and no fake tools, so each test
       * stands on its own (also when an earlier one failed half-way).
       */
      async function reset(): Promise<void> {
        await guest(String.raw`cd "${SHARE}" || exit 1
rm -rf chain
for d in builds test-results logs; do
  if [ -L "$d" ] || [ ! -d "$d" ]; then rm -rf "$d"; mkdir "$d"; chmod 777 "$d"; fi
done
rm -f /opt/homebrew/bin/perl /opt/homebrew/bin/tar ~/.local/bin/perl ~/.local/bin/tar
rm -f logs/huge.log`);
        // Each test is judged by what its own verb changed.
        baseline = await victimState(victims, VICTIMS);
      }

      /** The victims as they were made. */
      async function assertVictims(): Promise<void> {
        assert.deepEqual(await victimState(victims, VICTIMS), baseline, "a host victim changed");
      }

      /** setuid/setgid files, devices, FIFOs and links leading out under the output folder. */
      const dangers = () => hazards(out, () => false);

      /** What a verb added to the dangers found before it. */
      async function added(before: Set<string>): Promise<string[]> {
        return [...await dangers()].filter((h) => !before.has(h)).sort();
      }

      function assertNoRaw(r: CalResult): void {
        assert.deepEqual(rawControls(r.stdout + r.stderr), [], "raw control characters printed");
        assert.ok(!(r.stdout + r.stderr).includes(SECRET), "a victim's content was printed");
      }

      before(async () => {
        const config = [
          "isolation:",
          "  defaults:",
          "    vm:",
          `      provider: ${provider}`,
          "      boot_timeout: 60",
          "    output:",
          "      watch_patterns:",
          '        - "*.ipa"',
          '        - "*.app"',
          '        - "*.xcresult"',
          '        - "*.log"',
          "",
        ].join("\n");
        rig = await Rig.create(config, provider);
        ws = rig.name("hostsync");
        // Outside every cal folder (HOME, CAL_HOME and the output folder are in rig.root/home).
        victims = join(rig.root, "victims");
        await Deno.mkdir(victims);
        await makeVictims(
          victims,
          VICTIMS.map((v) => ({ ...v, content: `victim:${v.path}:${SECRET}` })),
          SECRET,
        );
        baseline = await victimState(victims, VICTIMS);
        assert.equal((await rig.vm(["init", ws])).code, 0);
        const started = await rig.vm(["start", ws]);
        assert.equal(started.code, 0, show(started));
        out = join(rig.env.HOME, "cal-output", ws);
        // A Tart guest writes its share as its own (VirtioFS); the rig's bind mount keeps owners.
        for (const d of ["", "builds", "logs", "test-results"]) {
          await Deno.chmod(join(out, d), 0o777);
        }
      });
      after(async () => {
        await rig?.close();
      });
      beforeEach(async () => await reset());

      it("category folders that are links (absolute, relative, a chain) are refused", async () => {
        await guest(
          String.raw`set -e
cd "${SHARE}"
rm -rf builds test-results logs
ln -s "$1/cat-builds" builds
ln -s "$2" test-results
mkdir chain; ln -s "$1/cat-logs" chain/inner; ln -s chain/inner logs
mkdir -p "$HOME/output/T.xcresult"; printf '<plist/>' > "$HOME/output/T.xcresult/Info.plist"
printf cat > "$HOME/output/cat.ipa"; printf 'cat log\n' > "$HOME/output/cat.log"`,
          victims,
          relative(out, join(victims, "cat-results")),
        );
        const before = await dangers();
        const r = await rig.sync(["sync", ws, "--human"]);
        await assertVictims();
        assert.deepEqual(await added(before), []);
        assertNoRaw(r);
        assert.equal(r.code, 0, show(r));
        for (const cat of ["builds", "test-results", "logs"]) {
          assert.match(r.stderr, new RegExp(`${cat} is not used: it is a link`), show(r));
        }
        // Real folders again: the next sync copies into them.
        await guest(`set -e; cd "${SHARE}"; rm -rf builds test-results logs chain
mkdir builds test-results logs; chmod 777 builds test-results logs`);
        const again = await rig.sync(["sync", ws, "--json"]);
        assert.equal(again.code, 0, show(again));
        assert.equal(await Deno.readTextFile(join(out, "builds", "cat.ipa")), "cat");
        assert.ok((await Deno.lstat(join(out, "test-results", "T.xcresult"))).isDirectory);
      });

      it("a recorded destination the guest replaced by a link is not reused", async () => {
        await guest(`printf one > "$HOME/output/rec.ipa"`);
        const first = await rig.sync(["sync", ws, "--json"]);
        assert.equal(first.code, 0, show(first));
        const dest = join(out, "builds", "rec.ipa");
        assert.equal(await Deno.readTextFile(dest), "one");
        await guest(
          `set -e; cd "${SHARE}/builds"; rm rec.ipa; ln -s "$1/recorded" rec.ipa`,
          victims,
        );
        const before = await dangers();
        const r = await rig.sync(["sync", ws, "--json"]);
        assert.equal(r.code, 0, show(r));
        await assertVictims();
        const rec = r.records.find((x) => String(x.source).endsWith("/output/rec.ipa"));
        assert.ok(rec, show(r));
        const st = await Deno.lstat(String(rec.path));
        assert.ok(st.isFile && !st.isSymlink, `the record points at a link: ${rec.path}`);
        assert.equal(await Deno.readTextFile(String(rec.path)), "one");
        assert.equal(
          await Deno.readLink(dest),
          join(victims, "recorded"),
          "the guest's link stays",
        );
        assert.deepEqual(await added(before), []);
      });

      it("setuid files, a FIFO, and fake perl and tar forging ../, absolute, device and link entries", async () => {
        const rel = relative(out, victims);
        const f = (p: string) => `f\t5\t1700000000\t1\t0\t${p}\0`;
        const listing = `home\t/Users/admin\x1b]0;forged-home\x07\0root\toutput\0` +
          f(`output/../../${rel}/dotdot/planted.ipa`) + f(`${victims}/dotdot/abs.ipa`) +
          f(`../${rel}/dotdot/up.ipa`) +
          ["forged-dev.ipa", "forged-fifo.ipa", "forged-suid.ipa", "forged-link.ipa"].map((n) =>
            f(`output/${n}`)
          ).join("") + f("output/fifo.ipa") + `root\t../${rel}\0` + f(`../${rel}/x.ipa`);
        const tar = forgedTar([
          { name: "output/forged-dev.ipa", type: "chardev", mode: 0o666, major: 1, minor: 3 },
          { name: "output/forged-fifo.ipa", type: "fifo", mode: 0o666 },
          { name: "output/forged-suid.ipa", type: "file", mode: 0o4755, content: "suid" },
          { name: "output/forged-link.ipa", type: "symlink", target: `${victims}/tar-link` },
          { name: `${victims}/dotdot/tar-abs.ipa`, type: "file", content: "abs" },
        ]);
        await guest(FAKE_TOOLS, b64(new TextEncoder().encode(listing)), b64(tar));
        const before = await dangers();
        const r = await rig.sync(["sync", ws, "--human"]);
        await assertVictims();
        assert.deepEqual(await added(before), [], show(r));
        assertNoRaw(r);
        // The real setuid files are copied as plain ones.
        for (const n of ["suid.ipa", "sgid.ipa"]) {
          const st = await Deno.lstat(join(out, "builds", n)).catch(() => undefined);
          if (st) assert.equal(st.mode! & 0o7000, 0, `${n} kept mode ${st.mode!.toString(8)}`);
        }
        await guest(
          `rm -f /opt/homebrew/bin/perl /opt/homebrew/bin/tar ~/.local/bin/perl ~/.local/bin/tar`,
        );
      });

      it("names with escapes, newlines and leading dashes: escaped on the terminal, exact in JSON", async () => {
        await guest(
          `set -e; cd "$HOME/output"; for n in "$@"; do printf named > "./$n"; done`,
          ...NAMES,
        );
        const h = await rig.sync(["sync", ws, "--human"]);
        assert.equal(h.code, 0, show(h));
        assertNoRaw(h);
        const lines = (h.stdout + h.stderr).split("\n");
        assert.ok(!lines.some((l) => l.startsWith("warning: forged line")), show(h));
        const j = await rig.sync(["sync", ws, "--json"]);
        assert.equal(j.code, 0, show(j));
        for (const n of NAMES) {
          const rec = j.records.find((x) => String(x.source).endsWith(`/output/${n}`));
          assert.ok(rec, `no record for ${JSON.stringify(n)}`);
          assert.equal(await Deno.readTextFile(String(rec.path)), "named");
        }
      });

      it("logs: escapes, a link to a host file and a huge sparse log", async () => {
        await guest(
          String.raw`set -e
cd "${SHARE}/logs"
printf 'one \033]52;c;aGk=\007 two\n\033]0;pwned\007 title\n\033[2J clear\ncr\rhidden\nc1 \302\23331m\n' > "esc-$(printf '\033]0;t\007').log"
ln -s "$1/log-leak" leak.log
/usr/bin/truncate -s 2G huge.log; printf 'next to last\nlast line\n' >> huge.log`,
          victims,
        );
        const r = await rig.sync(["logs", ws, "--tail", "2", "--human"]);
        assert.equal(r.code, 0, show(r).slice(0, 4000));
        assertNoRaw(r);
        assert.match(r.stdout, /last line/);
        assert.ok(r.stdout.length < 4 << 20, `${r.stdout.length} characters printed`);
        const j = await rig.sync(["logs", ws, "--tail", "5", "--json"]);
        assert.equal(j.code, 0, show(j).slice(0, 4000));
        const lines = j.records.map((x) => String(x.line));
        assert.ok(lines.includes("one \x1b]52;c;aGk=\x07 two"), "the exact line in JSON");
        assert.ok(!lines.some((l) => l.includes(SECRET)), "the linked host file was read");
        await guest(`rm -f "${SHARE}/logs/huge.log"`);
        await assertVictims();
      });

      it("watch: hooks and names print nothing raw, and no hook runs on a link", async () => {
        const hooked = join(rig.root, "hooked.bin");
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--quiet",
            join(REPO, "commands", "cal-sync.ts"),
            "watch",
            ws,
            // The README's own example: the hook's output goes to the terminal.
            "--on-ipa",
            'echo "HOOK:{}"',
            "--on-any",
            `printf '%s\\0' {} >> ${hooked}`,
            "--debounce",
            "300",
            "--human",
          ],
          env: { ...rig.env, NO_COLOR: "1", DENO_DIR: await getDenoDir() },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let stdout = "";
        let stderr = "";
        const reading = Promise.all([
          (async () => {
            for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) stdout += c;
          })(),
          (async () => {
            for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) stderr += c;
          })(),
        ]);
        const until = async (
          what: string,
          ok: () => boolean | Promise<boolean>,
          tick?: () => Promise<void>,
        ) => {
          const end = Date.now() + 45_000;
          for (let i = 0; !(await ok()); i++) {
            if (Date.now() > end) {
              throw new Error(
                `timed out waiting for ${what}\n${stdout}\n${stderr}`,
              );
            }
            if (tick && i % 20 === 0) await tick();
            await new Promise((r) => setTimeout(r, 100));
          }
        };
        try {
          await until("the watch to start", () => stderr.includes("Watching"));
          // Past its first scan (what is there counts as seen) once a probe's hook has run.
          let n = 0;
          await until("the probe's hook", () => stdout.includes("aa-probe.ipa"), async () => {
            await Deno.writeTextFile(join(out, "aa-probe.ipa"), `probe ${n++}`);
          });
          await guest(
            String.raw`set -e; cd "${SHARE}"
V="$1"; shift
for n in "$@"; do printf w > "./w$n"; done
ln -s "$V/recorded" w-link.ipa
printf 'watch \033]0;pwned\007 line\n' >> logs/w.log
printf done > zz-sentinel.ipa`,
            victims,
            ...NAMES,
          );
          await until("the sentinel's hook", () => stdout.includes("zz-sentinel.ipa"));
        } finally {
          child.kill("SIGTERM");
          await child.status;
          await reading;
        }
        const r: CalResult = { code: 0, stdout, stderr, records: [] };
        assertNoRaw(r);
        const paths = (await Deno.readTextFile(hooked).catch(() => "")).split("\0").filter(Boolean);
        for (const p of paths) {
          assert.ok(!(await Deno.lstat(p)).isSymlink, `a hook ran on the link ${p}`);
        }
        await assertVictims();
      });
    },
  );
}

for (const p of PROVIDERS) suite(p);
