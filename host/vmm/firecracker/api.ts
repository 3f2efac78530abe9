/**
 * A typed client for Firecracker's HTTP API on its unix socket, mirroring
 * `src/firecracker/swagger/firecracker.yaml`: one method per resource, typed request
 * bodies, and a 400's `fault_message` kept on {@linkcode FirecrackerError}.
 *
 * Bodies are sent whole with `Content-Length` through `host/net/http_unix.ts`, never
 * chunked: Firecracker's micro_http reads a body by its length only. The body types are in
 * `types.ts`.
 *
 * @module
 */

import { BangerError, type BangerErrorOptions } from "../../errors.ts";
import type {
  ActionType,
  BootSource,
  Drive,
  FullVmConfiguration,
  InstanceInfo,
  Logger,
  MachineConfiguration,
  Metrics,
  NetworkInterface,
  PartialDrive,
  PartialNetworkInterface,
  SnapshotCreateParams,
  SnapshotLoadParams,
  VmState,
  Vsock,
} from "./types.ts";
import { compareVersions } from "../../version.ts";
import {
  encodeHttpRequest,
  readAllText,
  requestUnix,
  SocketUnavailableError,
  type UnixRequest,
} from "../../net/http_unix.ts";

/** Options of a {@linkcode FirecrackerError}. */
export interface FirecrackerErrorOptions extends BangerErrorOptions {
  /** Firecracker's own explanation, from a 4xx body `{"fault_message": …}`. */
  faultMessage?: string;
  /** The HTTP status Firecracker answered with. */
  status?: number;
}

/** Firecracker refused a request, could not be reached, or its process misbehaved. */
export class FirecrackerError extends BangerError {
  /** Firecracker's own explanation of a rejected request, verbatim. */
  readonly faultMessage?: string;
  /** The HTTP status of a rejected request. */
  readonly status?: number;

  constructor(message: string, options: FirecrackerErrorOptions = {}) {
    super(message, options);
    this.faultMessage = options.faultMessage;
    this.status = options.status;
  }
}

/** Options for {@linkcode FirecrackerClient}. */
export interface FirecrackerClientOptions {
  /** Longest wait for one request, connection included. @default {5000} */
  timeoutMs?: number;
}

/** A raw response: status and body text. */
export interface FirecrackerResponse {
  status: number;
  body: string;
}

const DEFAULT_TIMEOUT_MS = 5000;
/** A Full snapshot writes (or maps) all guest memory: minutes for a large VM on slow disk. */
export const SNAPSHOT_TIMEOUT_MS = 300_000;
const RESOURCE_ID = /^[A-Za-z0-9_]+$/;
const enc = new TextEncoder();

/**
 * Talks to one Firecracker process over its API socket, one connection per request.
 *
 * @example
 * ```ts
 * const fc = new FirecrackerClient("/run/banger/vms/x/fc.sock");
 * await fc.putMachineConfig({ vcpu_count: 2, mem_size_mib: 1024 });
 * await fc.putAction("InstanceStart");
 * (await fc.getInstanceInfo()).state; // "Running"
 * ```
 */
export class FirecrackerClient {
  /** The API socket this client talks to. */
  readonly socketPath: string;
  readonly #timeoutMs: number;

  constructor(socketPath: string, options: FirecrackerClientOptions = {}) {
    this.socketPath = socketPath;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** `PUT /logger`. @throws {FirecrackerError} */
  putLogger(body: Logger, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", "/logger", body, signal);
  }

  /** `PUT /metrics`. @throws {FirecrackerError} */
  putMetrics(body: Metrics, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", "/metrics", body, signal);
  }

  /** `PUT /boot-source`. @throws {FirecrackerError} */
  putBootSource(body: BootSource, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", "/boot-source", body, signal);
  }

  /** `PUT /drives/{drive_id}`. @throws {FirecrackerError} also for an id outside `[A-Za-z0-9_]` */
  putDrive(body: Drive, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", `/drives/${resourceId(body.drive_id)}`, body, signal);
  }

  /** `PATCH /drives/{drive_id}`. @throws {FirecrackerError} */
  patchDrive(body: PartialDrive, signal?: AbortSignal): Promise<void> {
    return this.#send("PATCH", `/drives/${resourceId(body.drive_id)}`, body, signal);
  }

  /** `PUT /network-interfaces/{iface_id}`. @throws {FirecrackerError} */
  putNetworkInterface(body: NetworkInterface, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", `/network-interfaces/${resourceId(body.iface_id)}`, body, signal);
  }

  /** `PATCH /network-interfaces/{iface_id}`. @throws {FirecrackerError} */
  patchNetworkInterface(body: PartialNetworkInterface, signal?: AbortSignal): Promise<void> {
    return this.#send("PATCH", `/network-interfaces/${resourceId(body.iface_id)}`, body, signal);
  }

  /** `PUT /machine-config`. @throws {FirecrackerError} */
  putMachineConfig(body: MachineConfiguration, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", "/machine-config", body, signal);
  }

  /** `PATCH /machine-config` (pre-boot). @throws {FirecrackerError} */
  patchMachineConfig(body: Partial<MachineConfiguration>, signal?: AbortSignal): Promise<void> {
    return this.#send("PATCH", "/machine-config", body, signal);
  }

  /** `PUT /vsock`. @throws {FirecrackerError} */
  putVsock(body: Vsock, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", "/vsock", body, signal);
  }

  /** `PUT /actions`. @throws {FirecrackerError} */
  putAction(actionType: ActionType, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", "/actions", { action_type: actionType }, signal);
  }

  /** `GET /`. @throws {FirecrackerError} */
  async getInstanceInfo(signal?: AbortSignal): Promise<InstanceInfo> {
    const v = await this.#get("/", signal);
    const state = v.state;
    if (
      typeof v.id !== "string" || typeof v.vmm_version !== "string" ||
      (state !== "Not started" && state !== "Running" && state !== "Paused")
    ) {
      throw this.#malformed("/", v);
    }
    return {
      app_name: typeof v.app_name === "string" ? v.app_name : "Firecracker",
      id: v.id,
      state,
      vmm_version: v.vmm_version,
    };
  }

  /** `PATCH /vm`: pause or resume the running microVM. @throws {FirecrackerError} */
  patchVm(body: VmState, signal?: AbortSignal): Promise<void> {
    return this.#send("PATCH", "/vm", body, signal);
  }

  /**
   * `PUT /snapshot/create` of a Paused microVM. Writing all guest memory takes far longer
   * than a configuration call, so this waits up to {@linkcode SNAPSHOT_TIMEOUT_MS}.
   *
   * @throws {FirecrackerError} with Firecracker's reason (e.g. the VM is not Paused).
   */
  createSnapshot(body: SnapshotCreateParams, signal?: AbortSignal): Promise<void> {
    return this.#send("PUT", "/snapshot/create", body, signal, SNAPSHOT_TIMEOUT_MS);
  }

  /**
   * `PUT /snapshot/load` on a fresh process. Fields newer than `firecrackerVersion` are
   * refused here with the release that added them: Firecracker itself would answer only
   * "unknown field". A failed load ends the Firecracker process.
   *
   * @throws {FirecrackerError} `failed_precondition` for a field this release lacks, or
   *   Firecracker's reason.
   */
  loadSnapshot(
    body: SnapshotLoadParams,
    firecrackerVersion: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const needs: [keyof SnapshotLoadParams, string][] = [
      ["network_overrides", "1.12.0"],
      ["vsock_override", "1.16.0"],
      ["clock_realtime", "1.16.0"],
    ];
    for (const [field, since] of needs) {
      if (body[field] !== undefined && compareVersions(firecrackerVersion, since) < 0) {
        return Promise.reject(
          new FirecrackerError(
            `Cannot load a snapshot with "${field}" on Firecracker ${firecrackerVersion}: it needs ${since} or newer`,
            { code: "failed_precondition", hint: `install Firecracker v${since} or newer` },
          ),
        );
      }
    }
    return this.#send("PUT", "/snapshot/load", body, signal, SNAPSHOT_TIMEOUT_MS);
  }

  /** `GET /version`: the version string, e.g. `"1.16.1"`. @throws {FirecrackerError} */
  async getVersion(signal?: AbortSignal): Promise<string> {
    const v = await this.#get("/version", signal);
    if (typeof v.firecracker_version !== "string") throw this.#malformed("/version", v);
    return v.firecracker_version;
  }

  /** `GET /machine-config`. @throws {FirecrackerError} */
  async getMachineConfig(signal?: AbortSignal): Promise<MachineConfiguration> {
    const v = await this.#get("/machine-config", signal);
    if (typeof v.vcpu_count !== "number" || typeof v.mem_size_mib !== "number") {
      throw this.#malformed("/machine-config", v);
    }
    return v as unknown as MachineConfiguration;
  }

  /** `GET /vm/config`. @throws {FirecrackerError} */
  getVmConfig(signal?: AbortSignal): Promise<FullVmConfiguration> {
    return this.#get("/vm/config", signal);
  }

  /**
   * Sends one request and returns the raw answer, whatever its status.
   *
   * @throws {FirecrackerError} when the socket cannot be reached or does not answer in time.
   */
  async request(
    method: "GET" | "PUT" | "PATCH",
    path: string,
    body?: unknown,
    signal?: AbortSignal,
    timeoutMs: number = this.#timeoutMs,
  ): Promise<FirecrackerResponse> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const what = `${method} ${path}`;
    try {
      return await exchange(this.socketPath, firecrackerRequest(method, path, body), combined);
    } catch (err) {
      if (err instanceof FirecrackerError) throw err;
      if (err instanceof BangerError && err.code === "invalid_argument") {
        throw new FirecrackerError(err.message, { code: "invalid_argument", cause: err });
      }
      if (signal?.aborted) {
        throw new FirecrackerError(`Cannot ${what} on Firecracker: the request was cancelled`, {
          code: "cancelled",
          cause: err,
        });
      }
      if (timeout.aborted) {
        throw new FirecrackerError(
          `Cannot ${what} on Firecracker "${this.socketPath}": no answer within ${timeoutMs} ms`,
          { code: "timeout", cause: err },
        );
      }
      const unreachable = err instanceof SocketUnavailableError;
      throw new FirecrackerError(
        `Cannot ${what} on Firecracker "${this.socketPath}": ${
          unreachable ? "nothing is listening on the API socket" : errMessage(err)
        }`,
        { code: "unavailable", cause: err },
      );
    }
  }

  async #send(
    method: "PUT" | "PATCH",
    path: string,
    body: unknown,
    signal?: AbortSignal,
    timeoutMs?: number,
  ) {
    const res = await this.request(method, path, body, signal, timeoutMs);
    if (res.status === 204 || res.status === 200) return;
    throw this.#rejected(`${method} ${path}`, res);
  }

  async #get(path: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const res = await this.request("GET", path, undefined, signal);
    if (res.status !== 200) throw this.#rejected(`GET ${path}`, res);
    let value: unknown;
    try {
      value = JSON.parse(res.body);
    } catch {
      value = undefined;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw this.#malformed(path, res.body);
    }
    return value as Record<string, unknown>;
  }

  #rejected(what: string, res: FirecrackerResponse): FirecrackerError {
    const fault = faultMessage(res.body);
    return new FirecrackerError(
      `Cannot ${what} on Firecracker: ${fault ?? `it answered ${res.status}`}`,
      {
        code: res.status === 413 ? "too_large" : "failed_precondition",
        faultMessage: fault,
        status: res.status,
      },
    );
  }

  #malformed(path: string, value: unknown): FirecrackerError {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    return new FirecrackerError(
      `Cannot read GET ${path} from Firecracker: unexpected answer ${shown.slice(0, 200)}`,
      { code: "internal" },
    );
  }
}

function resourceId(id: string): string {
  if (!RESOURCE_ID.test(id)) {
    throw new FirecrackerError(
      `Cannot use Firecracker resource id "${id}": only letters, digits and "_" are allowed`,
      { code: "invalid_argument" },
    );
  }
  return id;
}

function faultMessage(body: string): string | undefined {
  try {
    const v: unknown = JSON.parse(body);
    if (typeof v === "object" && v !== null && "fault_message" in v) {
      const m = (v as { fault_message: unknown }).fault_message;
      if (typeof m === "string") return m;
    }
  } catch {
    // not JSON: the caller reports the status instead
  }
  return undefined;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Encodes one Firecracker request: a whole JSON body with `Content-Length`, never chunked
 * (pure).
 *
 * @example
 * ```ts
 * encodeRequest("PUT", "/actions", { action_type: "InstanceStart" });
 * ```
 */
export function encodeRequest(method: string, path: string, body?: unknown): Uint8Array {
  return encodeHttpRequest(firecrackerRequest(method, path, body));
}

function firecrackerRequest(method: string, path: string, body?: unknown): UnixRequest {
  const headers: Record<string, string> = { "Accept": "application/json" };
  if (body === undefined) return { method, path, headers };
  headers["Content-Type"] = "application/json";
  return { method, path, headers, body: enc.encode(JSON.stringify(body)) };
}

async function exchange(
  socketPath: string,
  request: UnixRequest,
  signal: AbortSignal,
): Promise<FirecrackerResponse> {
  const res = await requestUnix(socketPath, request, signal);
  try {
    return { status: res.status, body: await readAllText(res.body) };
  } finally {
    res.close();
  }
}
