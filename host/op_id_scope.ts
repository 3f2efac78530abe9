/**
 * The operation id of the RPC being served, carried implicitly through async calls so a
 * `PrivilegedOps` transport can forward it to the root helper without every method
 * taking a context: the RPC server runs each handler inside `opIdScope.run(opId, …)` and
 * `HelperOps` reads `opIdScope.getStore()`.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Holds the current op id.
 *
 * @example
 * ```ts
 * await opIdScope.run("op-1a2b3c4d", () => handler(request, ctx));
 * opIdScope.getStore(); // "op-1a2b3c4d" inside, undefined outside
 * ```
 */
export const opIdScope: AsyncLocalStorage<string> = new AsyncLocalStorage<string>();
