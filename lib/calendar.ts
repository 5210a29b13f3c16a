/**
 * `cal` is also macOS's calendar, `/usr/bin/cal`. Once cal is installed it comes first on PATH,
 * so calendar-style invocations (`cal 2026`, `cal 11 2026`, `cal -y`, `cal -3`) are handed on
 * to the system's calendar whenever one exists.
 */

/** Options of BSD/util-linux `cal` that cal itself never uses as a first argument. */
const CALENDAR_FLAGS = /^-[0-9yjmABdhNCeprwYS]+$/;

export function isCalendarInvocation(args: string[]): boolean {
  if (!args.length) return false;
  const first = args[0];
  if (/^\d{1,4}$/.test(first)) return true;
  // -h is cal's help; -V its version. Only bundles of calendar letters go to the calendar.
  return first !== "-h" && first !== "-V" && CALENDAR_FLAGS.test(first);
}

/** The system calendar: CAL_CALENDAR overrides (tests), else the usual places. */
export function calendarPath(): string | undefined {
  const candidates = [Deno.env.get("CAL_CALENDAR"), "/usr/bin/cal", "/bin/cal", "/usr/bin/ncal"];
  for (const c of candidates) {
    if (!c) continue;
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Runs the system calendar with the terminal passed through; returns its exit code. */
export async function runCalendar(args: string[]): Promise<number | undefined> {
  const bin = calendarPath();
  if (!bin) return undefined;
  const child = new Deno.Command(bin, {
    args,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  })
    .spawn();
  return (await child.status).code;
}
