import { assert, assertEquals, assertThrows } from "../fixtures/assert.ts";
import { inspectSchema, Store, StoreError } from "../../store/db.ts";
import { LATEST_VERSION, MIGRATIONS } from "../../store/migrations.ts";

async function tempDb(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "bg-store-" });
  return {
    path: `${dir}/banger.db`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

function columns(store: Store, table: string): string[] {
  return store.read((db) =>
    (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((r) => r.name)
  );
}

Deno.test("Store.open() migrates a fresh database to the latest version", async () => {
  await using db = await tempDb();
  using store = Store.open(db.path);
  assertEquals(store.version(), LATEST_VERSION);
  const recorded = store.read((d) =>
    d.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all()
  );
  assertEquals(recorded.map((r) => r.version), MIGRATIONS.map((m) => m.version));
  assert(columns(store, "vms").includes("workspace_json"));
  const mode = store.read((d) => d.prepare("PRAGMA journal_mode").get()) as {
    journal_mode: string;
  };
  assertEquals(mode.journal_mode, "wal");
  const fk = store.read((d) => d.prepare("PRAGMA foreign_keys").get()) as { foreign_keys: number };
  assertEquals(fk.foreign_keys, 1);
});

Deno.test("Store.open() applies only the missing migrations to a database at migration 1", async () => {
  await using db = await tempDb();
  {
    using old = Store.open(db.path, { migrations: MIGRATIONS.slice(0, 1) });
    assertEquals(old.version(), 1);
    assert(!columns(old, "vms").includes("workspace_json"));
    old.write((d) =>
      d.prepare("INSERT INTO kernels (name, spec_json, created_at) VALUES (?, ?, ?)")
        .run("k1", "{}", "2026-01-01T00:00:00Z")
    );
  }
  assertEquals(inspectSchema(db.path), { kind: "behind", version: 1, latest: LATEST_VERSION });
  using store = Store.open(db.path);
  assertEquals(store.version(), LATEST_VERSION);
  assert(columns(store, "vms").includes("workspace_json"));
  const kept = store.read((d) => d.prepare("SELECT name FROM kernels").all());
  assertEquals(kept.map((r) => r.name), ["k1"], "existing rows survive the migration");
});

Deno.test("Store.open() refuses a newer database and leaves it byte-identical", async () => {
  await using db = await tempDb();
  {
    using store = Store.open(db.path);
    store.write((d) =>
      d.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
        .run(LATEST_VERSION + 1, "from the future", "2027-01-01T00:00:00Z")
    );
    // Fold the WAL into the main file so the bytes below are the whole database.
    store.read((d) => d.exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  const before = await Deno.readFile(db.path);
  const err = assertThrows(() => Store.open(db.path), StoreError);
  assert(err.message.includes(`schema version ${LATEST_VERSION + 1} is newer`), err.message);
  assertEquals(err.code, "failed_precondition");
  assertEquals(await Deno.readFile(db.path), before);
  assertEquals(inspectSchema(db.path), {
    kind: "newer",
    version: LATEST_VERSION + 1,
    latest: LATEST_VERSION,
  });
});

Deno.test("inspectSchema() reports a missing database without creating it", async () => {
  await using db = await tempDb();
  assertEquals(inspectSchema(db.path), { kind: "missing" });
  await Deno.stat(db.path).then(
    () => assert(false, "inspectSchema created the file"),
    (e) => assert(e instanceof Deno.errors.NotFound),
  );
});

Deno.test("Store.openReadOnly() reads but refuses writes", async () => {
  await using db = await tempDb();
  Store.open(db.path).close();
  using ro = Store.openReadOnly(db.path);
  assertEquals(ro.version(), LATEST_VERSION);
  assertThrows(() => ro.write(() => {}), StoreError, "read-only");
});

Deno.test("Store.write() rolls back when the callback throws", async () => {
  await using db = await tempDb();
  using store = Store.open(db.path);
  assertThrows(() =>
    store.write((d) => {
      d.prepare("INSERT INTO kernels (name, spec_json, created_at) VALUES ('k', '{}', 'now')")
        .run();
      throw new Error("boom");
    })
  );
  const n = store.read((d) => d.prepare("SELECT COUNT(*) AS n FROM kernels").get()) as {
    n: number;
  };
  assertEquals(n.n, 0);
});
