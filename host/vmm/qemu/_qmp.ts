/**
 * QMP (the QEMU Machine Protocol) exchange and a wait for `host/vmm/qemu/qemu.ts` (folder-private): JSON lines
 * on the monitor socket, events skipped. Failures are `BangerError`s with code
 * `unavailable` (the connection closed) or `failed_precondition` (QEMU refused), which
 * `QemuProcess.qmp` turns into `QemuError`s. Kept here: npm's QMP clients are old
 * CommonJS wrappers over the same few lines of JSON framing.
 *
 * @module
 */

import { BangerError } from "../../errors.ts";

/** Resolves after `ms`, or earlier when `early` settles or `signal` aborts. */
export function pause(ms: number, early?: Promise<unknown>, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    early?.then(done, done);
  });
}

/**
 * Greets, negotiates capabilities and runs one command; returns its `return` value.
 *
 * @throws {BangerError} `unavailable` when the connection closes before an answer,
 *   `failed_precondition` when QEMU answers with an error.
 */
export async function qmpExchange(
  conn: Deno.UnixConn,
  execute: string,
  args?: Record<string, unknown>,
): Promise<unknown> {
  const lines = qmpLines(conn);
  await expectQmp(lines, undefined, "greeting"); // {"QMP": {...}}
  await sendQmp(conn, { execute: "qmp_capabilities" });
  await expectQmp(lines, "return", "qmp_capabilities");
  await sendQmp(conn, args ? { execute, arguments: args } : { execute });
  return await expectQmp(lines, "return", execute);
}

/** Splits a QMP connection into JSON lines. */
async function* qmpLines(conn: Deno.UnixConn): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(65536);
  let pending = "";
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return;
    pending += decoder.decode(buf.subarray(0, n), { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) !== -1) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line) yield line;
    }
  }
}

async function sendQmp(conn: Deno.UnixConn, message: Record<string, unknown>): Promise<void> {
  await conn.write(new TextEncoder().encode(JSON.stringify(message) + "\n"));
}

/**
 * Reads past events to the next reply. With `key` undefined, takes the greeting.
 * Returns the reply's `return` value.
 */
async function expectQmp(
  lines: AsyncGenerator<string>,
  key: "return" | undefined,
  what: string,
): Promise<unknown> {
  // next(), not for-await: leaving a for-await loop would close the generator.
  for (let r = await lines.next(); !r.done; r = await lines.next()) {
    const line = r.value;
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      throw new BangerError(`Cannot read the QEMU monitor's answer to "${what}": not JSON`);
    }
    if ("event" in message) continue;
    if (key === undefined) return message;
    if ("error" in message) {
      const error = message.error as { desc?: string } | undefined;
      throw new BangerError(`QEMU refused "${what}": ${error?.desc ?? "unknown error"}`, {
        code: "failed_precondition",
      });
    }
    if (key in message) return message[key];
  }
  throw new BangerError(`Cannot read the QEMU monitor's answer to "${what}": it closed`, {
    code: "unavailable",
  });
}
