/**
 * {@linkcode HelperOps}: `PrivilegedOps` as calls to the root helper, one unix-socket
 * connection per call (`host/helper/protocol.ts`), forwarding the current RPC's op id
 * (`host/op_id_scope.ts`). The helper's refusals come back as
 * {@linkcode PrivilegedOpsError}s with its code, message and hint. The ext4 operations
 * run locally (unprivileged) through the `local` implementation.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import type { Ext4Check } from "../disk/ext4.ts";
import {
  HELPER_PING,
  type HelperOpName,
  type HelperPing,
  MAX_HELPER_RESPONSE_BYTES,
  parseHelperResponse,
} from "./protocol.ts";
import type { AttachedLoop } from "../disk/loop.ts";
import type { NatEntry } from "../net/nat.ts";
import { opIdScope } from "../op_id_scope.ts";
import {
  type GuestNetworkCheck,
  type HostFacts,
  type JailedLaunch,
  type OpArgs,
  type PrivilegedOps,
  PrivilegedOpsError,
} from "../privileged/privileged_ops.ts";
import type { RootDiskHandle, StrategyReport } from "../disk/rootdisk.ts";
import type { TapInfo } from "../net/tap.ts";

/** Options of {@linkcode HelperOps}. */
export interface HelperOpsOptions {
  /** The helper's socket. */
  socketPath: string;
  /** Runs the unprivileged (ext4) operations in this process. */
  local: PrivilegedOps;
  /** Gives up on one call after this long. @default {600000} */
  timeoutMs?: number;
}

/**
 * Sends privileged operations to the root helper.
 *
 * @example
 * ```ts
 * const ops = new HelperOps({ socketPath: "/run/banger-root/helper.sock", local });
 * await ops.ensureBridge({ name: "bg-br0", address: "172.16.0.1/24" });
 * ```
 */
export class HelperOps implements PrivilegedOps {
  readonly #o: HelperOpsOptions;

  constructor(options: HelperOpsOptions) {
    this.#o = options;
  }

  /** Who answers on the socket. @throws {PrivilegedOpsError} when nobody does. */
  async ping(): Promise<HelperPing> {
    return await this.call(HELPER_PING, {}) as HelperPing;
  }

  /**
   * Sends one request and returns its result.
   *
   * @throws {PrivilegedOpsError} with the helper's code/message/hint, or `unavailable`
   *   when the helper cannot be reached.
   */
  async call(op: HelperOpName | typeof HELPER_PING, args: unknown): Promise<unknown> {
    const path = this.#o.socketPath;
    const opId = opIdScope.getStore() ?? `helper-${crypto.randomUUID().slice(0, 8)}`;
    const signal = AbortSignal.timeout(this.#o.timeoutMs ?? 600_000);
    let conn: Deno.UnixConn;
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch (err) {
      const denied = err instanceof Deno.errors.PermissionDenied;
      throw new PrivilegedOpsError(
        `Cannot reach the root helper at "${path}": ${err instanceof Error ? err.message : err}`,
        {
          code: denied ? "permission_denied" : "unavailable",
          hint: denied
            ? "only the installed owner user may use the helper (banger system status)"
            : "start it: sudo systemctl start banger-helper (or: sudo banger system install)",
          cause: err,
        },
      );
    }
    let text: string;
    try {
      const line = JSON.stringify({ op, args: args ?? {}, op_id: opId }) + "\n";
      const bytes = new TextEncoder().encode(line);
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
      text = await readAll(conn, signal);
    } catch (err) {
      throw new PrivilegedOpsError(`Cannot run ${op} through the root helper: ${String(err)}`, {
        code: signal.aborted ? "timeout" : "unavailable",
        cause: err,
      });
    } finally {
      try {
        conn.close();
      } catch {
        // already closed by a failed read
      }
    }
    return unwrap(op, text);
  }

  ensureBridge(a: OpArgs<"ensureBridge">): Promise<void> {
    return this.call("ensureBridge", a) as Promise<void>;
  }
  createTap(a: OpArgs<"createTap">): Promise<void> {
    return this.call("createTap", a) as Promise<void>;
  }
  deleteTap(a: OpArgs<"deleteTap">): Promise<boolean> {
    return this.call("deleteTap", a) as Promise<boolean>;
  }
  checkGuestNetwork(a: OpArgs<"checkGuestNetwork">): Promise<GuestNetworkCheck> {
    return this.call("checkGuestNetwork", a) as Promise<GuestNetworkCheck>;
  }
  listTaps(a?: OpArgs<"listTaps">): Promise<TapInfo[]> {
    return this.call("listTaps", a) as Promise<TapInfo[]>;
  }
  addNat(a: OpArgs<"addNat">): Promise<void> {
    return this.call("addNat", a) as Promise<void>;
  }
  removeNat(a: OpArgs<"removeNat">): Promise<boolean> {
    return this.call("removeNat", a) as Promise<boolean>;
  }
  listNat(a?: OpArgs<"listNat">): Promise<NatEntry[]> {
    return this.call("listNat", a) as Promise<NatEntry[]>;
  }
  guardTap(a: OpArgs<"guardTap">): Promise<void> {
    return this.call("guardTap", a) as Promise<void>;
  }
  unguardTap(a: OpArgs<"unguardTap">): Promise<boolean> {
    return this.call("unguardTap", a) as Promise<boolean>;
  }
  listGuards(a?: OpArgs<"listGuards">): Promise<string[]> {
    return this.call("listGuards", a) as Promise<string[]>;
  }
  rootDiskStrategy(a: OpArgs<"rootDiskStrategy">): Promise<StrategyReport> {
    return this.call("rootDiskStrategy", a) as Promise<StrategyReport>;
  }
  createRootDisk(a: OpArgs<"createRootDisk">): Promise<RootDiskHandle> {
    return this.call("createRootDisk", a) as Promise<RootDiskHandle>;
  }
  releaseRootDisk(a: OpArgs<"releaseRootDisk">): Promise<void> {
    return this.call("releaseRootDisk", a) as Promise<void>;
  }
  listLoops(a?: OpArgs<"listLoops">): Promise<AttachedLoop[]> {
    return this.call("listLoops", a) as Promise<AttachedLoop[]>;
  }
  detachLoop(a: OpArgs<"detachLoop">): Promise<boolean> {
    return this.call("detachLoop", a) as Promise<boolean>;
  }
  readProcFile(a: OpArgs<"readProcFile">): Promise<string> {
    return this.call("readProcFile", a) as Promise<string>;
  }
  signalVmm(a: OpArgs<"signalVmm">): Promise<boolean> {
    return this.call("signalVmm", a) as Promise<boolean>;
  }
  probeHost(a?: OpArgs<"probeHost">): Promise<HostFacts> {
    return this.call("probeHost", a) as Promise<HostFacts>;
  }
  launchJailedFirecracker(a: OpArgs<"launchJailedFirecracker">): Promise<JailedLaunch> {
    return this.call("launchJailedFirecracker", a) as Promise<JailedLaunch>;
  }
  cleanupJailedFirecracker(a: OpArgs<"cleanupJailedFirecracker">): Promise<boolean> {
    return this.call("cleanupJailedFirecracker", a) as Promise<boolean>;
  }

  createWorkDisk(a: OpArgs<"createWorkDisk">): Promise<void> {
    return this.#o.local.createWorkDisk(a);
  }
  writeExt4(a: OpArgs<"writeExt4">): Promise<void> {
    return this.#o.local.writeExt4(a);
  }
  applyExt4Ownership(a: OpArgs<"applyExt4Ownership">): Promise<void> {
    return this.#o.local.applyExt4Ownership(a);
  }
  readExt4File(a: OpArgs<"readExt4File">): Promise<string> {
    return this.#o.local.readExt4File(a);
  }
  dumpExt4(a: OpArgs<"dumpExt4">): Promise<void> {
    return this.#o.local.dumpExt4(a);
  }
  checkExt4(a: OpArgs<"checkExt4">): Promise<Ext4Check> {
    return this.#o.local.checkExt4(a);
  }
  growExt4(a: OpArgs<"growExt4">): Promise<void> {
    return this.#o.local.growExt4(a);
  }
}

async function readAll(conn: Deno.UnixConn, signal: AbortSignal): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      total += n;
      if (total > MAX_HELPER_RESPONSE_BYTES) {
        throw new RangeError(`the answer is larger than ${MAX_HELPER_RESPONSE_BYTES} bytes`);
      }
      chunks.push(buf.slice(0, n));
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

function unwrap(op: string, text: string): unknown {
  let response;
  try {
    response = parseHelperResponse(text.trim());
  } catch (err) {
    throw new PrivilegedOpsError(
      `Cannot run ${op} through the root helper: its answer is malformed (${String(err)})`,
      { code: "internal", cause: err },
    );
  }
  if (response.ok) return response.result;
  const { code, message, hint } = response.error;
  throw new PrivilegedOpsError(message, { code, hint });
}
