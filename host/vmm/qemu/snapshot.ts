/**
 * Saving a running QEMU's memory and device state to a file and loading it into a fresh
 * QEMU of the same command line: QEMU 7.2 has no `file:` migration URI (8.2+), so the
 * stream goes through `exec:cat`, as `migrate` and `migrate-incoming` allow. Disks are
 * not in the file: the caller keeps them unchanged between save and restore.
 *
 * @module
 */

import { requireFreeSpace } from "../../os/free_space.ts";
import { QemuError, type QemuProcess } from "./qemu.ts";

/** How often `query-migrate` is asked while a state streams. */
const POLL_MS = 50;
/** Longest a save or a restore may take: all of guest RAM through a pipe. */
const MIGRATE_TIMEOUT_MS = 300_000;

/** What a finished save reported. */
export interface SavedState {
  /** Bytes of RAM the stream carried (QEMU's `ram.transferred`). */
  ramBytes: number;
  /** Milliseconds QEMU took. */
  totalMs: number;
}

/**
 * Pauses the guest (`stop`) and streams its state into `file`. The VM stays paused: the
 * caller quits it (suspend) or `cont`s it (fork). With `needBytes` (at most the guest's
 * RAM), free space is checked first, and a VM that does not fit keeps running.
 *
 * @throws {BangerError} `failed_precondition` when the file would not fit.
 * @throws {QemuError} `invalid_argument` for a relative path, `failed_precondition` when
 *   QEMU reports the migration failed, `timeout`.
 */
export async function saveQemuState(
  qemu: QemuProcess,
  file: string,
  options: { needBytes?: number } = {},
): Promise<SavedState> {
  const uri = migrationUri("to", file);
  if (options.needBytes !== undefined) {
    requireFreeSpace(file.slice(0, file.lastIndexOf("/")) || "/", options.needBytes, "a VM state");
  }
  await qemu.qmp("stop");
  await qemu.qmp("migrate", { uri });
  const done = await untilMigrated(qemu, `save the VM state to "${file}"`);
  const ram = (done.ram ?? {}) as { transferred?: number };
  return {
    ramBytes: typeof ram.transferred === "number" ? ram.transferred : 0,
    totalMs: typeof done["total-time"] === "number" ? done["total-time"] : 0,
  };
}

/**
 * Loads `file` into a QEMU launched with `incoming: true` from the same spec. The guest
 * is left paused; `cont` runs it.
 *
 * @throws {QemuError} as {@linkcode saveQemuState}.
 */
export async function restoreQemuState(qemu: QemuProcess, file: string): Promise<void> {
  await qemu.qmp("migrate-incoming", { uri: migrationUri("from", file) });
  await untilMigrated(qemu, `restore the VM state from "${file}"`);
}

/**
 * The `exec:` URI that streams a VM state to or from `file` (QEMU runs it with `sh -c`,
 * so the path is single-quoted). Pure.
 *
 * @throws {QemuError} `invalid_argument` for a relative path.
 */
export function migrationUri(direction: "to" | "from", file: string): string {
  if (!file.startsWith("/")) {
    throw new QemuError(`Cannot stream a VM state through "${file}": use a plain absolute path`, {
      code: "invalid_argument",
    });
  }
  const quoted = `'${file.replaceAll("'", `'\\''`)}'`;
  return direction === "to" ? `exec:cat > ${quoted}` : `exec:cat ${quoted}`;
}

/** What a `query-migrate` answer says: done, still streaming, or why it failed. Pure. */
export function migrationState(
  info: unknown,
): { state: "completed" | "active" } | { state: "failed"; why: string } {
  const i = (info ?? {}) as Record<string, unknown>;
  if (i.status === "completed") return { state: "completed" };
  if (i.status !== "failed" && i.status !== "cancelled") return { state: "active" };
  return { state: "failed", why: typeof i["error-desc"] === "string" ? i["error-desc"] : i.status };
}

async function untilMigrated(qemu: QemuProcess, what: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + MIGRATE_TIMEOUT_MS;
  for (;;) {
    const info = (await qemu.qmp("query-migrate")) as Record<string, unknown>;
    const now = migrationState(info);
    if (now.state === "completed") return info;
    if (now.state === "failed") {
      throw new QemuError(`Cannot ${what}: QEMU reports ${now.why}`, {
        code: "failed_precondition",
      });
    }
    if (Date.now() >= deadline) {
      throw new QemuError(`Cannot ${what}: not done within ${MIGRATE_TIMEOUT_MS / 1000}s`, {
        code: "timeout",
      });
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
