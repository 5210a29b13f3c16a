import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { nameProblem, validateName } from "../lib/names.ts";
import { CalError } from "../lib/errors.ts";

describe("workspace and snapshot names", () => {
  it("accepts the spec's names", () => {
    for (const n of ["my-workspace", "mobile-app", "session-2026-01-17-1430", "a", "v1.2_x"]) {
      assert.equal(nameProblem(n), undefined, n);
    }
  });

  it("refuses hostile names with exit 2", () => {
    const hostile = [
      "../x",
      "a b",
      "$(touch pwned)",
      "-rf",
      "",
      "x".repeat(300),
      "A",
      "a--b",
      "a-",
      ".a",
      "a/b",
      "a\nb",
      "é",
      "a..b",
      "`id`",
    ];
    for (const n of hostile) {
      assert.throws(() => validateName(n), (e) => e instanceof CalError && e.exit === 2, n);
    }
  });

  it("keeps workspace--snapshot machine names collision-free", () => {
    // `--` never occurs inside a name, so `cal-<ws>--<snap>` splits one way only.
    const join = (ws: string, snap: string) => `cal-${ws}--${snap}`;
    assert.notEqual(join("a-b", "c"), join("a", "b-c"));
    assert.ok(nameProblem("b--c"));
  });

  it("names the problem and the next step", () => {
    try {
      validateName("x".repeat(300));
      assert.fail("accepted");
    } catch (e) {
      assert.ok(e instanceof CalError);
      assert.match(e.message, /300 characters long \(at most 40\)/);
      assert.match(e.hint ?? "", /Choose a name like/);
      assert.ok(e.message.length < 200, "the long name is shortened in the message");
    }
  });
});
