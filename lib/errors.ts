/**
 * Errors with documented exit codes.
 *
 * Every failure a user can cause or meet is a `CalError`: one sentence saying what failed, one
 * saying what to do next, and the exit code from the table in the README.
 */

export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  notFound: 3,
  wrongState: 4,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Stable machine-readable error codes, carried in `error` records. */
export type ErrorCode =
  | "usage"
  // The person answered no to cal's question: nothing failed and nothing was changed (exit 2).
  | "declined"
  | "invalid-config"
  | "not-found"
  | "wrong-state"
  | "vm-limit"
  | "tool-missing"
  | "provider-failed"
  | "ssh-failed"
  | "timeout"
  | "interrupted"
  | "failed"
  // The GitHub workflow's cases, so a script can tell them apart within exit 1 and 4.
  | "protected-branch"
  | "branch-exists"
  | "nothing-to-commit"
  | "push-rejected"
  | "network"
  | "auth-failed";

export class CalError extends Error {
  constructor(
    message: string,
    readonly options: {
      code?: ErrorCode;
      exit?: ExitCode;
      hint?: string;
      workspace?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "CalError";
  }
  get code(): ErrorCode {
    return this.options.code ?? "failed";
  }
  get exit(): ExitCode {
    return this.options.exit ?? ExitCode.failed;
  }
  get hint(): string | undefined {
    return this.options.hint;
  }
}

export const usageError = (message: string, hint?: string) =>
  new CalError(message, { code: "usage", exit: ExitCode.usage, hint });

export const notFound = (message: string, hint?: string, workspace?: string) =>
  new CalError(message, { code: "not-found", exit: ExitCode.notFound, hint, workspace });

export const wrongState = (
  message: string,
  hint?: string,
  workspace?: string,
  code: ErrorCode = "wrong-state",
) => new CalError(message, { code, exit: ExitCode.wrongState, hint, workspace });

/** Turns anything thrown into a CalError, keeping CalErrors as they are. */
export function asCalError(e: unknown): CalError {
  if (e instanceof CalError) return e;
  if (e instanceof Deno.errors.Interrupted) {
    return new CalError("Interrupted.", { code: "interrupted", exit: ExitCode.interrupted });
  }
  const message = e instanceof Error ? e.message : String(e);
  return new CalError(message, {
    cause: e,
    hint: "This looks like a bug in cal; please report it with the command you ran.",
  });
}
