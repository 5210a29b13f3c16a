import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MAX_CAPTURE, reason, run } from "../lib/process.ts";

const result = (stdout: string, stderr: string, code = 1, timedOut = false) => ({
  stdout,
  stderr,
  code,
  timedOut,
});

describe("reason: what a failed command said, in one line", () => {
  it("prefers an error-looking line, wherever it is", () => {
    const r = result(
      "Enumerating objects: 3\n",
      "To http://github.localhost/o/r.git\nfatal: Authentication failed for 'x'\nhint: retry\n",
    );
    assert.equal(reason(r), "fatal: Authentication failed for 'x'");
    assert.equal(
      reason(result("Error: No available formula\n", "")),
      "Error: No available formula",
    );
  });

  it("else the last line of stderr, then of stdout, then the exit status", () => {
    assert.equal(reason(result("progress\n", "  first\n  last words  \n\n")), "last words");
    assert.equal(reason(result("one\ntwo\n", "")), "two");
    assert.equal(reason(result("", "\n", 7)), "exit status 7");
  });

  it("a command that ran out of time says so", () => {
    assert.equal(reason(result("", "partial", 124, true)), "timed out");
  });

  it("reads a real command's streams", async () => {
    const r = await run("sh", ["-c", "echo building; echo 'cp: cannot stat x' >&2; exit 3"]);
    assert.equal(r.code, 3);
    assert.equal(reason(r), "cp: cannot stat x");
  });
});

describe("run: a command's output is read within a bound", () => {
  it("keeps MAX_CAPTURE characters of an endless answer, says so, and the command still ends", async () => {
    const r = await run("sh", ["-c", `head -c ${MAX_CAPTURE + 5_000_000} /dev/zero | tr '\\0' a`]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.length, MAX_CAPTURE);
    assert.equal(r.truncated, true);
    const small = await run("sh", ["-c", "echo fine"]);
    assert.equal(small.truncated, undefined);
  });
});
