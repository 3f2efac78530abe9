/**
 * A warm pool of taps on banger's bridge, so a VM start takes a ready tap instead of
 * creating one. Idle taps are kept up to `tap_pool_size`; refills run in parallel; a tap
 * released by a stopped VM goes back to the pool (or is deleted when the pool is full).
 *
 * @module
 */

import { BangerError, errorMessage } from "../../host/errors.ts";
import type { PrivilegedOps } from "../../host/privileged/privileged_ops.ts";
import type { Logger } from "../logger.ts";
import { Semaphore } from "../locks.ts";
import { type Instance, MAX_TAP_INDEX, tapIndex } from "../../host/instance.ts";
const WARM_CONCURRENCY = 4;

/**
 * Owns this instance's taps (`<tapPrefix><index>`): which are idle, which are in use. Taps
 * of other instances are never adopted, reused or deleted.
 */
export class TapPool {
  // #idle, #inUse and #next are plain fields mutated synchronously; the async create and
  // delete calls happen outside those mutations, so no lock is needed (single thread).
  readonly #idle: string[] = [];
  readonly #inUse = new Set<string>();
  #next = 0;
  #warming?: Promise<void>;
  readonly #warmers = new Semaphore(WARM_CONCURRENCY, "a tap warm-up slot");
  readonly #ops: PrivilegedOps;
  readonly #instance: Instance;
  readonly #bridge: string;
  readonly #size: number;
  readonly #log: Logger;

  constructor(
    ops: PrivilegedOps,
    instance: Instance,
    bridge: string,
    size: number,
    log: Logger,
  ) {
    this.#ops = ops;
    this.#instance = instance;
    this.#bridge = bridge;
    this.#size = size;
    this.#log = log;
  }

  /** Idle taps ready to hand out. */
  get idle(): readonly string[] {
    return this.#idle;
  }

  /**
   * Rebuilds the pool from the host: taps named in `inUse` stay reserved for their VMs;
   * other banger taps become idle (extras beyond the pool size are deleted).
   */
  async adopt(inUse: Iterable<string>): Promise<void> {
    const used = new Set(inUse);
    for (const name of used) this.#inUse.add(name);
    const existing = await this.#ops.listTaps();
    for (const t of existing) {
      const n = tapIndex(this.#instance, t.name);
      if (n === undefined) continue; // another instance's
      this.#next = Math.max(this.#next, n + 1);
      if (used.has(t.name) || this.#idle.includes(t.name)) continue;
      if (this.#idle.length < this.#size) this.#idle.push(t.name);
      else await this.#delete(t.name);
    }
  }

  /** Takes an idle tap, creating one when the pool is empty, and refills in the background. */
  async acquire(): Promise<string> {
    const name = this.#idle.shift() ?? await this.#create();
    this.#inUse.add(name);
    void this.warm();
    return name;
  }

  /** Records a tap as in use by a VM (reconcile of a live VM). */
  claim(name: string): void {
    const i = this.#idle.indexOf(name);
    if (i >= 0) this.#idle.splice(i, 1);
    this.#inUse.add(name);
  }

  /** Gives a tap back: kept idle while the pool has room, deleted otherwise. */
  async release(name: string): Promise<void> {
    this.#inUse.delete(name);
    if (this.#idle.includes(name)) return;
    if (this.#idle.length < this.#size) this.#idle.push(name);
    else await this.#delete(name);
  }

  /** Fills the pool up to its size, several taps at once. Concurrent calls share one run. */
  warm(): Promise<void> {
    this.#warming ??= this.#fill().finally(() => this.#warming = undefined);
    return this.#warming;
  }

  /** Deletes every idle tap (daemon shutdown keeps in-use taps for running VMs). */
  async drain(): Promise<void> {
    await this.#warming;
    const idle = this.#idle.splice(0);
    await Promise.all(idle.map((n) => this.#delete(n)));
  }

  async #fill(): Promise<void> {
    const missing = this.#size - this.#idle.length;
    if (missing <= 0) return;
    const results = await Promise.allSettled(
      Array.from({ length: missing }, async () => {
        using _slot = await this.#warmers.acquire();
        const name = await this.#create();
        // A release or an adopt may have filled the pool meanwhile: never grow past it.
        if (this.#idle.length < this.#size) this.#idle.push(name);
        else await this.#delete(name);
      }),
    );
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length) {
      this.#log.warn("tap pool warm-up failed", {
        failed: failed.length,
        error: errorMessage((failed[0] as PromiseRejectedResult).reason),
      });
    }
  }

  async #create(): Promise<string> {
    const name = this.#nextFreeName();
    await this.#ops.createTap({ name, bridge: this.#bridge });
    return name;
  }

  /** The next index not held by an idle or in-use tap, wrapping at the name's limit. */
  #nextFreeName(): string {
    for (let tries = 0; tries <= MAX_TAP_INDEX; tries++) {
      if (this.#next > MAX_TAP_INDEX) this.#next = 0;
      const name = `${this.#instance.tapPrefix}${this.#next++}`;
      if (!this.#inUse.has(name) && !this.#idle.includes(name)) return name;
    }
    throw new BangerError(`Cannot name a new tap: all ${MAX_TAP_INDEX + 1} names are in use`, {
      code: "unavailable",
    });
  }

  async #delete(name: string): Promise<void> {
    try {
      await this.#ops.deleteTap({ name });
    } catch (err) {
      this.#log.warn("tap delete failed", { tap: name, error: errorMessage(err) });
    }
  }
}
