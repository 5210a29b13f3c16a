import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { isEnvName, quote, quoteArgs } from "../lib/shell.ts";

/** What a real shell makes of a quoted command line: its argv, one per NUL-separated field. */
async function argvThroughShell(shell: string, line: string): Promise<string[]> {
  const out = await new Deno.Command(shell, {
    args: ["-c", `printf '%s\\0' ${line}`],
    stdout: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  return text.split("\0").slice(0, -1);
}

const HOSTILE = [
  "plain",
  "",
  "it's",
  "a b",
  "$(touch /tmp/pwned)",
  "`id`",
  '"dq"',
  "back\\slash",
  "new\nline",
  "semi;colon && echo no",
  "* glob ?",
  "ünïcødé ✓",
  "$HOME",
  "!history",
  "~",
  "-rf",
];

describe("shell quoting", () => {
  for (const shell of ["sh", "bash", "zsh"]) {
    it(`survives ${shell} byte for byte`, async (t) => {
      try {
        await new Deno.Command(shell, { args: ["-c", "true"] }).output();
      } catch {
        t.skip(`${shell} is not installed`);
        return;
      }
      assert.deepEqual(await argvThroughShell(shell, quoteArgs(HOSTILE)), HOSTILE);
    });
  }

  it("leaves safe words readable", () => {
    assert.equal(quote("sw_vers"), "sw_vers");
    assert.equal(quote("a b"), "'a b'");
    assert.equal(quote("it's"), `'it'\\''s'`);
    assert.equal(quote(""), "''");
  });

  it("accepts only real environment variable names", () => {
    assert.ok(isEnvName("ANTHROPIC_API_KEY"));
    assert.ok(!isEnvName("A=B"));
    assert.ok(!isEnvName("$(x)"));
    assert.ok(!isEnvName("1A"));
  });
});
