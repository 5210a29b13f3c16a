/**
 * Guest text on the host's terminal: every control character shown as its escape, cal's own
 * colours kept, JSON exact. Unit tests of lib/terminal.ts, plus Output in a child process
 * (its writes go to the real stdout/stderr).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { forTerminal, safeLines, safeText } from "../lib/terminal.ts";
import { REPO } from "./helpers.ts";

const OSC52 = "\x1b]52;c;aGk=\x07";
const TITLE = "\x1b]0;pwned\x07";
const CLEAR = "\x1b[2J\x1b[H";
// deno-lint-ignore no-control-regex
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
// deno-lint-ignore no-control-regex
const SGR = /\x1b\[[0-9;]*m/g;

describe("text for a terminal", () => {
  it("safeText escapes every control character, newlines and carriage returns included", () => {
    assert.equal(safeText(`a${OSC52}b`), "a\\x1b]52;c;aGk=\\x07b");
    assert.equal(safeText("one\ntwo\rthree\tfour"), "one\\ntwo\\rthree\\tfour");
    assert.equal(safeText("\x9b31m C1 \x7f"), "\\x9b31m C1 \\x7f");
    // Bidirectional overrides reorder what is shown (a name can pretend to end in .app).
    assert.equal(safeText("evil\u202egpj.app"), "evil\\u202egpj.app");
    assert.equal(safeText("plain ünïcode – ok"), "plain ünïcode – ok");
    assert.ok(!RAW.test(safeText(OSC52 + TITLE + CLEAR + "\x00\x1b")));
  });

  it("safeLines keeps lines and tabs, nothing else", () => {
    assert.equal(safeLines(`line 1\n\tline 2${CLEAR}\r`), "line 1\n\tline 2\\x1b[2J\\x1b[H\\r");
  });

  it("forTerminal keeps cal's colours and escapes every other sequence", () => {
    assert.equal(forTerminal("\x1b[31merror:\x1b[39m x\n"), "\x1b[31merror:\x1b[39m x\n");
    assert.equal(forTerminal(`${TITLE}${CLEAR}`), "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[H");
    // A colour sequence cannot be stretched into something else.
    assert.equal(forTerminal("\x1b[1;2;3"), "\\x1b[1;2;3");
    assert.ok(!RAW.test(forTerminal(OSC52).replaceAll("\n", "")));
  });
});

describe("Output never lets guest text act on the terminal", () => {
  const script = `
    import { Output } from "${REPO}/lib/output.ts";
    import { CalError } from "${REPO}/lib/errors.ts";
    const bad = ${JSON.stringify(`build${OSC52}${TITLE}${CLEAR}.ipa`)};
    const mode = Deno.args[0];
    const out = new Output(mode === "json" ? { json: true } : { human: true });
    out.text("artifact " + bad);
    out.event("sync-copy", "copying " + bad, { path: bad });
    out.warn("skipped " + bad, "ws");
    out.record({ kind: "artifact", workspace: "ws", path: bad });
    out.error(new CalError("failed on " + bad, { hint: "see " + bad }));
  `;
  const run = async (mode: string) => {
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", script, mode],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const d = new TextDecoder();
    return { stdout: d.decode(o.stdout), stderr: d.decode(o.stderr) };
  };

  it("human mode: no raw control character on stdout or stderr", async () => {
    const r = await run("human");
    assert.match(r.stdout, /artifact build\\x1b\]52;c;aGk=\\x07/);
    for (const [name, text] of Object.entries(r)) {
      // cal's own colours are the one escape kept (picocolors colours under CI=true too).
      const bare = text.replaceAll(SGR, "").replaceAll("\n", "");
      assert.ok(!RAW.test(bare), `raw control bytes on ${name}: ${JSON.stringify(text)}`);
    }
  });

  it("JSON mode: records carry the exact name", async () => {
    const r = await run("json");
    const rec = JSON.parse(r.stdout.trim());
    assert.equal(rec.path, `build${OSC52}${TITLE}${CLEAR}.ipa`);
    const ev = r.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    assert.ok(ev.some((e) => e.path === `build${OSC52}${TITLE}${CLEAR}.ipa`));
    assert.ok(ev.some((e) => e.kind === "error" && e.message.includes(OSC52)));
  });
});
