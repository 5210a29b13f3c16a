/** cal's version, shown by `--version` and written into run records. */
export const VERSION = "0.1.0";
