/**
 * Ctrl-C (SIGINT) and SIGTERM during a long command: the first aborts an `AbortSignal`, which the
 * work honours at its next safe point (`finetune()` after the current step, saving the run); the
 * second ends the process at once with exit code 130, once any checkpoint being written is whole.
 *
 * @module
 */

import { EXIT_CODES, writeErr } from "./_errors.ts";

/** What {@linkcode onInterrupt} calls. */
export interface InterruptHandlers {
  /** On the first signal, after the abort: say what happens now. */
  readonly first: () => void;
  /** On the second signal, before the process exits with 130: wait for what must end whole. */
  readonly second: () => Promise<void>;
}

/**
 * Listens for SIGINT and SIGTERM until disposed. Signals a platform cannot listen for (SIGTERM on
 * Windows) are skipped.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { onInterrupt } from "./_interrupt.ts";
 * using interrupt = onInterrupt({ first: () => {}, second: () => Promise.resolve() });
 * strictEqual(interrupt.signal.aborted, false); // until Ctrl-C
 * ```
 */
export function onInterrupt(handlers: InterruptHandlers): Disposable & { signal: AbortSignal } {
  const controller = new AbortController();
  const listener = () => {
    if (!controller.signal.aborted) {
      controller.abort(new DOMException("Interrupted by a signal", "AbortError"));
      handlers.first();
      return;
    }
    handlers.second().catch((e) => writeErr(`error: ${(e as Error).message}`))
      .finally(() => Deno.exit(EXIT_CODES.interrupted));
  };
  const signals: Deno.Signal[] = [];
  for (const s of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(s, listener);
      signals.push(s);
    } catch { /* not a signal of this platform */ }
  }
  return {
    signal: controller.signal,
    [Symbol.dispose]: () => signals.forEach((s) => Deno.removeSignalListener(s, listener)),
  };
}
