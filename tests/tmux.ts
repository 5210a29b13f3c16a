/** Driving cal in a real terminal: tmux sessions, keys, and waiting for the screen. */

export async function tmux(...args: string[]): Promise<string> {
  const r = await new Deno.Command("tmux", { args, stdout: "piped", stderr: "piped" }).output();
  return new TextDecoder().decode(r.stdout);
}

/** Waits until the pane shows `want` (a string or a pattern); returns the screen. */
export async function waitFor(
  session: string,
  want: string | RegExp,
  ms = 30_000,
): Promise<string> {
  const deadline = Date.now() + ms;
  const found = (s: string) => (typeof want === "string" ? s.includes(want) : want.test(s));
  let screen = "";
  while (Date.now() < deadline) {
    screen = await tmux("capture-pane", "-p", "-t", session);
    if (found(screen)) return screen;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${want} never appeared; the screen:\n${screen}`);
}

export const hasTmux = await new Deno.Command("sh", { args: ["-c", "command -v tmux"] }).output()
  .then((o) => o.code === 0);
