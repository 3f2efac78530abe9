/**
 * The question a destructive command asks before it acts, as Docker and gh ask it: on
 * stderr, answered on a terminal only. With no terminal to ask on, the command refuses
 * unless `-f` was given, so a script never destroys by accident, nor hangs on a prompt.
 *
 * @module
 */

import { type CliEnv, CliError, ExitCode } from "./env.ts";

/**
 * Returns when the user agreed to `question` (or `force` is set); otherwise ends the
 * command with exit code 1.
 *
 * @example
 * ```ts
 * await confirm(env, "This deletes dev and web.", f.bool("force"));
 * ```
 * @throws {CliError} when stdin is not a terminal and `force` is not set.
 * @throws {ExitCode} 1 when the user did not answer yes.
 */
export async function confirm(env: CliEnv, question: string, force: boolean): Promise<void> {
  if (force) return;
  if (!env.stdinIsTty) {
    throw new CliError(`${question} Refusing without a terminal to confirm on`, {
      hint: "pass -f to go ahead without asking",
    });
  }
  if (await ask(env, question)) return;
  env.err("aborted: nothing was changed\n");
  throw new ExitCode(1);
}

/** Asks `question` on stderr and reads the answer; only `y`/`yes` is yes. Needs a TTY. */
export async function ask(env: CliEnv, question: string): Promise<boolean> {
  env.err(`${question} Continue? [y/N] `);
  return /^\s*y(es)?\s*$/i.test((await env.readLine()) ?? "");
}
