import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ago, table } from "../lib/output.ts";
import { isCalendarInvocation } from "../lib/calendar.ts";

describe("human output", () => {
  it("aligns table columns and upper-cases the header", () => {
    assert.equal(
      table(["name", "state"], [["a", "running"], ["longer-name", "stopped"]]),
      "NAME         STATE\na            running\nlonger-name  stopped",
    );
  });

  it("says how long ago", () => {
    const now = Date.parse("2026-01-17T14:30:00Z");
    assert.equal(ago("2026-01-17T14:20:00Z", now), "10 minutes ago");
    assert.equal(ago("2026-01-17T09:30:00Z", now), "5 hours ago");
    assert.equal(ago("2026-01-15T14:30:00Z", now), "2 days ago");
    assert.equal(ago("2026-01-17T14:29:59Z", now), "1 second ago");
  });
});

describe("calendar invocations", () => {
  it("recognises the calendar's own forms", () => {
    for (const a of [["2026"], ["11", "2026"], ["-y"], ["-3"], ["-j"], ["-y", "2026"]]) {
      assert.ok(isCalendarInvocation(a), a.join(" "));
    }
  });
  it("leaves cal's own commands alone", () => {
    for (const a of [["vm", "list"], ["isolation", "init", "x"], ["-h"], ["-V"], ["--help"], []]) {
      assert.ok(!isCalendarInvocation(a), a.join(" "));
    }
  });
});

describe("the dispatcher's tables", () => {
  it("every cal isolation verb maps onto a noun that exists", async () => {
    const { ISOLATION, NOUNS } = await import("../commands/cal.ts");
    for (const [verb, target] of Object.entries(ISOLATION)) {
      assert.ok(NOUNS[target.noun], `cal isolation ${verb} → missing noun "${target.noun}"`);
    }
  });
});
