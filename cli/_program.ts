/**
 * The type of the `ffwd` program that subcommands register themselves on.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";

/** Options every subcommand sees (declared on the program in `main.ts`). */
export type GlobalOptions = {
  /** Print stack traces of errors. */
  debug?: true;
};

/** The root `ffwd` command. */
export type Program = Command<[], GlobalOptions>;

/** A subcommand's registration: adds the command (with its action) to the program. */
export type Register = (program: Program) => void;
