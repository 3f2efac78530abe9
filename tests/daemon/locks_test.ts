import { assert, assertEquals, assertRejects } from "../fixtures/assert.ts";
import { KeyedLock, LockAbortedError, Mutex, Semaphore } from "../../daemon/locks.ts";

/** Lets queued promise callbacks run. */
const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("KeyedLock.acquire() grants waiters of one key in FIFO order", async () => {
  const lock = new KeyedLock("test");
  const order: number[] = [];
  const first = await lock.acquire("k");
  const waiters = [1, 2, 3].map((n) =>
    lock.acquire("k").then((p) => {
      order.push(n);
      p.release();
    })
  );
  await settle();
  assertEquals(order, [], "nobody gets the lock while it is held");
  first.release();
  await Promise.all(waiters);
  assertEquals(order, [1, 2, 3]);
  assertEquals(lock.activeKeys, [], "idle keys are dropped");
});

Deno.test("KeyedLock.acquire() on different keys never waits", async () => {
  const lock = new KeyedLock("test");
  using _a = await lock.acquire("a");
  let gotB = false;
  const b = lock.acquire("b").then((p) => {
    gotB = true;
    return p;
  });
  await settle();
  assert(gotB, "key b must not wait for key a");
  (await b).release();
});

Deno.test("KeyedLock.acquire() leaves the queue when its signal aborts, and the next waiter proceeds", async () => {
  const lock = new KeyedLock("test");
  const holder = await lock.acquire("k");
  const controller = new AbortController();
  const cancelled = lock.acquire("k", controller.signal);
  let thirdGot = false;
  const third = lock.acquire("k").then((p) => {
    thirdGot = true;
    return p;
  });
  controller.abort(new Error("client went away"));
  await assertRejects(() => cancelled, LockAbortedError);
  await settle();
  assert(!thirdGot, "still held by the first holder");
  holder.release();
  const p = await third;
  assert(thirdGot, "the waiter behind the cancelled one proceeds");
  p.release();
  assertEquals(lock.activeKeys, []);
});

Deno.test("KeyedLock.acquire() with an already-aborted signal rejects at once", async () => {
  const lock = new KeyedLock("test");
  await assertRejects(() => lock.acquire("k", AbortSignal.abort()), LockAbortedError);
  assertEquals(lock.activeKeys, []);
  (await lock.acquire("k")).release();
});

Deno.test("Mutex.acquire() is released by using", async () => {
  const m = new Mutex();
  {
    using _p = await m.acquire();
    assert(m.locked);
    assertEquals(m.tryAcquire(), undefined);
  }
  assert(!m.locked);
});

Deno.test("Semaphore.acquire() admits at most N holders and queues the rest FIFO", async () => {
  const sem = new Semaphore(2);
  const a = await sem.acquire();
  const b = await sem.acquire();
  assertEquals(sem.available, 0);
  const order: string[] = [];
  const c = sem.acquire().then((p) => (order.push("c"), p));
  const d = sem.acquire().then((p) => (order.push("d"), p));
  await settle();
  assertEquals(order, []);
  a.release();
  a.release(); // releasing twice must not free two slots
  await settle();
  assertEquals(order, ["c"]);
  b.release();
  (await c).release();
  (await d).release();
  assertEquals(order, ["c", "d"]);
  assertEquals(sem.available, 2);
});
