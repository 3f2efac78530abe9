/**
 * The seam between workspaces and a guest: {@linkcode GuestShell} runs one argv with an
 * optional stdin stream. {@linkcode SshGuestShell} is the real one (ssh through the VM's
 * master connection when it is up); tests put a local directory or a blocking fake here.
 *
 * @module
 */

import type { GuestAccess, GuestRef } from "../vm/guest_access.ts";

/** Options of {@linkcode GuestShell.run}. */
export interface GuestShellRunOptions {
  /** Streamed to the command's stdin, then closed; nothing is buffered whole. */
  stdin?: ReadableStream<Uint8Array>;
  /** Stops the command when aborted. */
  signal?: AbortSignal;
  /** The most stdout held; past it the command is stopped (`too_large`). */
  maxStdout?: number;
}

/** What a guest command produced; a non-zero `code` is not an error here. */
export interface GuestShellResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

/** Runs commands in one guest. */
export interface GuestShell {
  /**
   * Runs `argv` (a program and its arguments, no shell parsing) in the guest.
   *
   * @throws {SshError} when the guest cannot be reached at all.
   */
  run(argv: readonly string[], o?: GuestShellRunOptions): Promise<GuestShellResult>;
}

/** A {@linkcode GuestShell} over SSH, reusing the VM's master connection when it is up. */
export class SshGuestShell implements GuestShell {
  constructor(readonly guest: GuestAccess, readonly vm: GuestRef) {}

  /** @throws {SshError} `unavailable` (ssh exit 255) or `failed_precondition` (host key). */
  run(argv: readonly string[], o: GuestShellRunOptions = {}): Promise<GuestShellResult> {
    return this.guest.exec(this.vm, argv, { ...o, connectTimeoutS: 5 });
  }
}
