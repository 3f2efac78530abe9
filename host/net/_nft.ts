/**
 * What banger's nftables modules share: one queue for read-modify-write cycles in this
 * process (each takes rule handles from a listing and deletes them in the next
 * transaction), applying a script with `nft -f -`, and listing one table.
 *
 * Folder-private: use `host/net/nat.ts` and `host/net/guard.ts`.
 *
 * @module
 */

import { ExecError } from "../errors.ts";
import { run, runText } from "../os/exec.ts";
import { because } from "../os/libc.ts";

/** An nft command failed. */
export type NftErrorClass = new (message: string, options: { cause: unknown }) => Error;

let queue: Promise<unknown> = Promise.resolve();

/** Runs `fn` after every earlier queued nftables change of this process. */
export function serialised<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn, fn);
  queue = next.catch(() => {});
  return next;
}

/** Applies `script` as one transaction; a failure becomes `Err` saying `what`. */
export async function applyScript(script: string, what: string, Err: NftErrorClass): Promise<void> {
  try {
    await run("nft", ["-f", "-"], { stdin: script });
  } catch (err) {
    throw new Err(`${what}: ${because(err)}`, { cause: err });
  }
}

/** `nft -j list table <family> <table>`, or `undefined` when the table does not exist. */
export async function listTableJson(family: string, table: string): Promise<string | undefined> {
  try {
    return await runText("nft", ["-j", "list", "table", family, table]);
  } catch (err) {
    if (err instanceof ExecError && /No such file or directory/.test(err.failure.stderrTail)) {
      return undefined;
    }
    throw err;
  }
}
