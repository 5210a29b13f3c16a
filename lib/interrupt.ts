/**
 * Cleaning up when a command is interrupted (Ctrl-C, SIGTERM): registered steps run newest
 * first, then the process exits 130. A SIGKILL cannot be caught; what it leaves behind is marked
 * in the store (`status: creating`) and reported by `list`, `status` and `cleanup`.
 */

type Step = () => Promise<void> | void;
const steps: Step[] = [];
let installed = false;
let running = false;

async function handle() {
  if (running) return;
  running = true;
  const undone = steps.length > 0;
  for (const step of steps.reverse()) {
    try {
      await step();
    } catch { /* keep cleaning what can be cleaned */ }
  }
  const message = undone ? "Interrupted: cal undid what this command had begun." : "Interrupted.";
  try {
    let text = `error: ${message}\nRun the command again when you are ready.\n`;
    // JSON mode as Output decides it: --json, or stdout not a terminal unless --human.
    const args = Deno.args;
    if (args.includes("--json") || (!Deno.stdout.isTerminal() && !args.includes("--human"))) {
      text += JSON.stringify({ kind: "error", code: "interrupted", exit: 130, message }) + "\n";
    }
    Deno.stderr.writeSync(new TextEncoder().encode(text));
  } catch { /* stderr closed */ }
  Deno.exit(130);
}

/** Runs `step` if the process is interrupted before the returned disposer is called. */
export function onInterrupt(step: Step): () => void {
  if (!installed) {
    installed = true;
    Deno.addSignalListener("SIGINT", handle);
    Deno.addSignalListener("SIGTERM", handle);
  }
  steps.push(step);
  return () => {
    const i = steps.lastIndexOf(step);
    if (i >= 0) steps.splice(i, 1);
  };
}
