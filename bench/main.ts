/**
 * `deno task bench [name…]`: runs every benchmark (or the named ones) in sequence.
 *
 * @module
 */

const BENCHES: Record<string, () => Promise<{ main(): Promise<void> }>> = {
  cli_roundtrip: () => import("./cli_roundtrip.ts"),
  host: () => import("./host.ts"),
  create: () => import("./create.ts"),
  pull: () => import("./pull.ts"),
  publish: () => import("./publish.ts"),
  snapshot: () => import("./snapshot.ts"),
  transfer: () => import("./transfer.ts"),
};

const wanted = Deno.args.length ? Deno.args : Object.keys(BENCHES);
for (const name of wanted) {
  const load = BENCHES[name];
  if (!load) {
    // deno-lint-ignore no-console
    console.error(`error: Unknown benchmark "${name}" (have: ${Object.keys(BENCHES).join(", ")})`);
    Deno.exit(2);
  }
  await (await load()).main();
}
