/**
 * The daemon's locks: a keyed lock (one FIFO queue per key), a mutex and a semaphore.
 * Every acquire takes an `AbortSignal`; a waiter whose signal aborts leaves the queue at
 * once and the next waiter proceeds. Permits are `Disposable`, so callers write
 * `using _ = await lock.acquire(key, signal)`.
 *
 * Global lock order (DESIGN.md; never acquire against it):
 *
 *   pull[image:name] / pull[kernel:name]   taken first, never while holding any other
 *   vm[id]                                 per-VM lifecycle lock
 *     → create | publish                   short reservation / publication windows
 *       → leaves                           tap pool, handle cache, DNS table
 *   workspace[id]                          taken WITHOUT vm[id] held (invariant 5)
 *
 * @module
 */

import { BangerError } from "../host/errors.ts";

/** A released-on-dispose hold of a lock or permit. */
export interface Permit extends Disposable {
  /** Releases the permit; calling it twice is harmless. */
  release(): void;
}

interface Waiter {
  grant(): void;
  reject(reason: unknown): void;
}

/** Raised when a wait is abandoned because the caller's signal aborted. */
export class LockAbortedError extends BangerError {
  constructor(what: string, cause: unknown) {
    super(`Stopped waiting for ${what}: the request was cancelled`, {
      code: "cancelled",
      cause,
    });
  }
}

/**
 * A counting semaphore with a FIFO queue of waiters.
 *
 * @example
 * ```ts
 * const warmers = new Semaphore(4);
 * using _ = await warmers.acquire(signal);
 * ```
 */
export class Semaphore {
  #available: number;
  readonly #queue: Waiter[] = [];
  readonly #what: string;

  constructor(permits: number, what = "a free slot") {
    if (!Number.isInteger(permits) || permits < 1) {
      throw new RangeError(`Cannot create a semaphore with ${permits} permits`);
    }
    this.#available = permits;
    this.#what = what;
  }

  /** Permits not currently held. */
  get available(): number {
    return this.#available;
  }

  /** Callers waiting for a permit. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Waits for a permit, in arrival order.
   *
   * @throws {LockAbortedError} when `signal` aborts first; the waiter leaves the queue.
   */
  acquire(signal?: AbortSignal): Promise<Permit> {
    if (signal?.aborted) return Promise.reject(new LockAbortedError(this.#what, signal.reason));
    if (this.#available > 0 && this.#queue.length === 0) {
      this.#available--;
      return Promise.resolve(this.#permit());
    }
    return new Promise<Permit>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.#permit());
        },
        reject,
      };
      const onAbort = () => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(new LockAbortedError(this.#what, signal?.reason));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** Takes a permit only if one is free right now. */
  tryAcquire(): Permit | undefined {
    if (this.#available > 0 && this.#queue.length === 0) {
      this.#available--;
      return this.#permit();
    }
    return undefined;
  }

  #permit(): Permit {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const next = this.#queue.shift();
      if (next) next.grant();
      else this.#available++;
    };
    return { release, [Symbol.dispose]: release };
  }
}

/** A lock held by at most one caller at a time. */
export class Mutex {
  readonly #sem: Semaphore;

  constructor(what = "a lock") {
    this.#sem = new Semaphore(1, what);
  }

  /** Whether someone holds it. */
  get locked(): boolean {
    return this.#sem.available === 0;
  }

  /** @throws {LockAbortedError} when `signal` aborts while waiting. */
  acquire(signal?: AbortSignal): Promise<Permit> {
    return this.#sem.acquire(signal);
  }

  /** Takes the lock only if it is free right now. */
  tryAcquire(): Permit | undefined {
    return this.#sem.tryAcquire();
  }
}

/**
 * One mutex per key, created on demand and dropped when nobody holds or waits for it.
 * Different keys never wait on each other.
 *
 * @example
 * ```ts
 * const vmLocks = new KeyedLock("VM");
 * using _ = await vmLocks.acquire(vm.id, signal);
 * ```
 */
export class KeyedLock {
  readonly #entries = new Map<string, { mutex: Mutex; users: number }>();
  readonly #what: string;

  constructor(what = "lock") {
    this.#what = what;
  }

  /** Keys currently held or waited for. */
  get activeKeys(): string[] {
    return [...this.#entries.keys()];
  }

  /** Whether `key` is held right now. */
  isLocked(key: string): boolean {
    return this.#entries.get(key)?.mutex.locked ?? false;
  }

  /**
   * Waits for the lock on `key`, FIFO among waiters for the same key.
   *
   * @throws {LockAbortedError} when `signal` aborts first; the waiter leaves the queue.
   */
  async acquire(key: string, signal?: AbortSignal): Promise<Permit> {
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { mutex: new Mutex(`the ${this.#what} lock on "${key}"`), users: 0 };
      this.#entries.set(key, entry);
    }
    entry.users++;
    const held = entry;
    const leave = () => {
      held.users--;
      if (held.users === 0) this.#entries.delete(key);
    };
    let inner: Permit;
    try {
      inner = await held.mutex.acquire(signal);
    } catch (err) {
      leave();
      throw err;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      inner.release();
      leave();
    };
    return { release, [Symbol.dispose]: release };
  }
}
