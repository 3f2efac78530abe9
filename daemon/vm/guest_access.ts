/**
 * Reaching a guest: one multiplexed SSH master per VM (so each later command costs
 * ~0.1 s instead of ~1 s), remote commands, the boot-readiness wait, and the guest agent
 * (over vsock when the VMM has it, over SSH otherwise). Host keys are pinned on first use
 * in banger's own known_hosts under the alias `<name>.vm`.
 *
 * @module
 */

import {
  collectOutput,
  OutputTooLargeError,
  type RunResult,
  type StdinSource,
} from "../../host/os/exec.ts";
import { connectVsock } from "../../host/vmm/vsock.ts";
import { vmFiles } from "../../host/layout.ts";
import { serialLogTail } from "../../host/vmm/firecracker/firecracker.ts";
import {
  forgetHostKeys,
  isHostKeyMismatch,
  pinHostKey,
  sshArgs,
  SshError,
  type SshTarget,
} from "../../host/ssh/ssh.ts";

/** The guest agent's vsock port. */
export const AGENT_PORT = 1024;
/** The guest agent program, for requests over SSH. */
export const AGENT_PATH = "/usr/local/libexec/banger-agent";

/** The identity of a guest the daemon talks to. */
export interface GuestRef {
  id: string;
  name: string;
  guestIp: string;
  vmDir: string;
}

/** Options of {@linkcode GuestAccess.exec}. */
export interface GuestExecOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Written (or streamed) to the command's stdin, then closed. */
  stdin?: StdinSource;
  /** How long ssh may take to connect when there is no master. @default {3} */
  connectTimeoutS?: number;
  /**
   * The most stdout the daemon holds for one guest command; past it the command is killed
   * and the call fails `too_large` (a guest printing gigabytes never fills the daemon's
   * memory). @default {GUEST_OUTPUT_LIMIT}
   */
  maxStdout?: number;
}

/** The most stdout one guest command may print to the daemon: 64 MiB. */
export const GUEST_OUTPUT_LIMIT = 64 << 20;

/** SSH and agent access to guests. */
export class GuestAccess {
  constructor(
    readonly keyPath: string,
    readonly knownHosts: string,
    readonly controlDir: string,
  ) {}

  /** How to reach `vm`. */
  target(vm: GuestRef): SshTarget {
    return {
      host: vm.guestIp,
      alias: `${vm.name}.vm`,
      keyPath: this.keyPath,
      knownHosts: this.knownHosts,
      controlPath: `${this.controlDir}/ssh-${vm.id}.sock`,
    };
  }

  /**
   * Runs `command` in the guest (through the master connection when there is one) and
   * returns its exit code and output; a non-zero exit is not an error.
   *
   * @throws {SshError} when ssh itself fails (exit 255): unreachable, or a changed host key.
   */
  async exec(
    vm: GuestRef,
    command: readonly string[],
    o: GuestExecOptions = {},
  ): Promise<RunResult> {
    const args = sshArgs(this.target(vm), command, {
      batch: true,
      connectTimeout: o.connectTimeoutS ?? 3,
    });
    const withMaster = args.map((a) => a === "ControlMaster=auto" ? "ControlMaster=no" : a);
    const child = new Deno.Command("ssh", {
      args: withMaster,
      stdin: o.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      signal: combine(o.signal, o.timeoutMs),
    }).spawn();
    const out = await collectOutput(child, o.stdin, {
      maxStdout: o.maxStdout ?? GUEST_OUTPUT_LIMIT,
      maxStderrTail: 64 << 10,
    }).catch((err) => {
      if (err instanceof OutputTooLargeError) {
        throw new SshError(
          `"${command.join(" ").slice(0, 80)}" in "${vm.name}" printed more than ${
            o.maxStdout ?? GUEST_OUTPUT_LIMIT
          } bytes; it was stopped`,
          { code: "too_large", cause: err },
        );
      }
      throw err;
    });
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.code === 255) {
      if (isHostKeyMismatch(stderr)) throw this.#hostKeyChanged(vm);
      throw new SshError(
        `Cannot reach "${vm.name}" over SSH: ${stderr.trim() || "ssh exited 255"}`,
        {
          code: "unavailable",
        },
      );
    }
    return { code: out.code, stdout: out.stdout, stderr };
  }

  /**
   * Opens the master connection for `vm` (pinning its host key on first use) unless one
   * is up. Its stdio is closed, so the backgrounded master never holds our pipes.
   *
   * @returns whether the guest answered.
   */
  async openMaster(vm: GuestRef, signal?: AbortSignal): Promise<boolean> {
    const t = this.target(vm);
    if (await this.#masterUp(t)) return true;
    const args = sshArgs(t, [], { batch: true, connectTimeout: 2 });
    const i = args.indexOf("ControlMaster=auto");
    args[i] = "ControlMaster=yes";
    args.splice(args.length - 1, 0, "-f", "-N");
    const out = await new Deno.Command("ssh", {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      signal: combine(signal, 15_000),
    }).output().catch(() => undefined);
    if (!out) return false;
    const stderr = new TextDecoder().decode(out.stderr);
    if (isHostKeyMismatch(stderr)) throw this.#hostKeyChanged(vm);
    return out.code === 0;
  }

  #hostKeyChanged(vm: GuestRef): SshError {
    return new SshError(
      `The host key of "${vm.name}.vm" changed since it was pinned: refusing to connect`,
      {
        code: "failed_precondition",
        hint: `if the VM was rebuilt on purpose: ssh-keygen -R ${vm.name}.vm -f ${this.knownHosts}`,
      },
    );
  }

  /** Closes the master connection, if any. */
  async closeMaster(vm: GuestRef): Promise<void> {
    const t = this.target(vm);
    if (!t.controlPath) return;
    await new Deno.Command("ssh", {
      args: ["-o", `ControlPath=${t.controlPath}`, "-O", "exit", `root@${t.host}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output().catch(() => {});
    await Deno.remove(t.controlPath).catch(() => {});
  }

  /**
   * Waits until the guest is up: its agent answers over vsock (when `vsock`) and, if the
   * agent reports an SSH listener, SSH accepts (opening the master and pinning the host
   * key); without vsock, until SSH accepts. Polls while `stillAlive`.
   *
   * @returns how readiness was seen.
   * @throws {SshError} `timeout` naming the wait, or `failed_precondition` when the VMM
   *   exited during boot.
   */
  async waitForGuest(
    vm: GuestRef,
    o: {
      timeoutMs: number;
      vsock: boolean;
      signal?: AbortSignal;
      stillAlive: () => Promise<boolean>;
    },
  ): Promise<"ssh" | "agent"> {
    const deadline = Date.now() + o.timeoutMs;
    let agentUp = false;
    while (Date.now() < deadline) {
      o.signal?.throwIfAborted();
      if (o.vsock && !agentUp) {
        const ports = await this.#agentOverVsock(vm, "ports", 1000);
        if (ports !== undefined) {
          agentUp = true;
          if (!listensOn(ports, 22)) return "agent";
        }
      }
      if (await this.openMaster(vm, o.signal)) return "ssh";
      if (!(await o.stillAlive())) {
        throw new SshError(`VM "${vm.name}" stopped while booting`, {
          code: "failed_precondition",
          hint: `banger vm logs ${vm.name}`,
        });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    // The console's last words say where a boot stalled; the VM's directory may be gone
    // by the time anyone looks (a failed create removes it).
    const tail = await serialLogTail(vm.vmDir);
    throw new SshError(
      `VM "${vm.name}" did not become ready within ${Math.round(o.timeoutMs / 1000)}s (${
        agentUp ? "its agent answered, SSH did not" : "no answer from the guest"
      })${tail ? `; its console last said: ${tail}` : ""}`,
      {
        code: "timeout",
        hint: `banger vm logs ${vm.name}`,
      },
    );
  }

  /**
   * Asks the guest agent `request` (`health` or `ports`): over vsock when `vsock` is true
   * and the guest answers there, over SSH otherwise.
   *
   * @throws {SshError} when neither transport answers.
   */
  async agent(vm: GuestRef, request: "health" | "ports", vsock: boolean): Promise<unknown> {
    if (vsock) {
      const answer = await this.#agentOverVsock(vm, request, 2000);
      if (answer !== undefined) return answer;
    }
    const res = await this.exec(vm, [AGENT_PATH, request], { timeoutMs: 10_000 });
    const text = new TextDecoder().decode(res.stdout).trim();
    try {
      return JSON.parse(text);
    } catch {
      throw new SshError(
        `The guest agent of "${vm.name}" answered "${request}" with non-JSON: ${
          text.slice(0, 200)
        }`,
      );
    }
  }

  async #agentOverVsock(
    vm: GuestRef,
    request: string,
    timeoutMs: number,
  ): Promise<unknown | undefined> {
    try {
      using conn = await connectVsock(`${vm.vmDir}/${vmFiles.vsockSocket}`, AGENT_PORT, {
        timeoutMs,
      });
      await conn.write(`${request}\n`);
      const line = await conn.readLine();
      return line ? JSON.parse(line) : undefined;
    } catch {
      // no vsock listener in this guest (yet)
      return undefined;
    }
  }

  /** Pins `publicKey` as `vm`'s host key before its first answer (no trust on first use). */
  async pin(vm: GuestRef, publicKey: string): Promise<void> {
    await pinHostKey(this.knownHosts, `${vm.name}.vm`, publicKey);
  }

  /** Forgets the pinned host keys of `vm` (on delete, so a reused name or IP is not refused). */
  async forget(vm: GuestRef): Promise<void> {
    await forgetHostKeys(this.knownHosts, [`${vm.name}.vm`, vm.guestIp]);
  }

  async #masterUp(t: SshTarget): Promise<boolean> {
    if (!t.controlPath) return false;
    const out = await new Deno.Command("ssh", {
      args: ["-o", `ControlPath=${t.controlPath}`, "-O", "check", `root@${t.host}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output().catch(() => undefined);
    return out?.code === 0;
  }
}

function combine(
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
): AbortSignal | undefined {
  const signals = [signal, timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs)]
    .filter((s): s is AbortSignal => s !== undefined);
  return signals.length ? AbortSignal.any(signals) : undefined;
}

function listensOn(answer: unknown, port: number): boolean {
  const ports = (answer as { ports?: { port?: number }[] } | null)?.ports;
  return Array.isArray(ports) && ports.some((p) => p?.port === port);
}
