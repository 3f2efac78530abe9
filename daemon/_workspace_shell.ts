/**
 * The seam between workspaces and a guest: {@linkcode GuestShell} runs one argv with an
 * optional stdin stream. {@linkcode SshGuestShell} is the real one (ssh through the VM's
 * master connection when it is up); tests put a local directory or a blocking fake here.
 *
 * @module
 */

import { isHostKeyMismatch, sshArgs, SshError } from "../host/ssh.ts";
import type { GuestAccess, GuestRef } from "./guest_access.ts";

/** Options of {@linkcode GuestShell.run}. */
export interface GuestShellRunOptions {
  /** Streamed to the command's stdin, then closed; nothing is buffered whole. */
  stdin?: ReadableStream<Uint8Array>;
  /** Stops the command when aborted. */
  signal?: AbortSignal;
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
  async run(argv: readonly string[], o: GuestShellRunOptions = {}): Promise<GuestShellResult> {
    const args = sshArgs(this.guest.target(this.vm), argv, { batch: true, connectTimeout: 5 })
      .map((a) => a === "ControlMaster=auto" ? "ControlMaster=no" : a);
    const child = new Deno.Command("ssh", {
      args,
      stdin: o.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      signal: o.signal,
    }).spawn();
    // ssh may exit before reading everything (a failed guest command): its status is
    // the error worth reporting, so a broken pipe here is not.
    const feeding = o.stdin ? o.stdin.pipeTo(child.stdin).catch(() => {}) : Promise.resolve();
    const out = await child.output();
    await feeding;
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.code === 255) {
      if (isHostKeyMismatch(stderr)) {
        throw new SshError(
          `The host key of "${this.vm.name}.vm" changed since it was pinned: refusing to connect`,
          { code: "failed_precondition" },
        );
      }
      throw new SshError(
        `Cannot reach "${this.vm.name}" over SSH: ${stderr.trim() || "ssh exited 255"}`,
        { code: "unavailable" },
      );
    }
    return { code: out.code, stdout: out.stdout, stderr };
  }
}
