/**
 * Pins the dependency rules of DESIGN.md, STYLE.md and ARCHITECTURE.md: `commands → (rpc)
 * → daemon → {host, store, catalog}`, the CLI sees only the wire API (`daemon/api/`) and its
 * transport, no module imports itself through a cycle, `_private.ts` files are imported
 * only from their own folder, no folder grows back into a hall, and every program a role
 * spawns is on its permission set in deno.json.
 */
import { assertEquals } from "./fixtures/assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const FOLDERS = ["commands", "daemon", "host", "store", "catalog"];

/** Files the CLI may import from daemon/: the wire API and what it needs. */
const WIRE = /^daemon\/api\/[a-z_]+\.ts$/;

/**
 * The host files the CLI may import: the HTTP client the wire API travels on, and the one
 * version order (the CLI compares its version with the daemon's).
 */
const SHARED_WITH_CLI = ["host/net/http_unix.ts", "host/version.ts"];

/** Most source files one folder may hold before it needs rooms of its own. */
const MAX_FILES_PER_FOLDER = 16;

const ALLOWED: Record<string, (target: string, from: string) => boolean> = {
  host: (t) => t.startsWith("host/"),
  store: (t) => t.startsWith("host/") || t.startsWith("store/"),
  catalog: (t) => t.startsWith("host/") || t.startsWith("catalog/"),
  daemon: (t, from) =>
    WIRE.test(from)
      ? WIRE.test(t) || t === "host/schema.ts" || t === "host/errors.ts"
      : !t.startsWith("commands/"),
  commands: (t) => t.startsWith("commands/") || WIRE.test(t) || SHARED_WITH_CLI.includes(t),
};

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory) walk(rel);
      else if (e.name.endsWith(".ts")) out.push(rel);
    }
  };
  // A missing folder throws: a renamed one must fail these tests, never pass on no files.
  for (const f of FOLDERS) walk(f);
  return out;
}

/** Every folder under the product folders, e.g. `host/vmm/firecracker`. */
function sourceDirs(): string[] {
  return [...new Set(sourceFiles().map((f) => f.split("/").slice(0, -1).join("/")))].sort();
}

/** Source text without comments: an example in a doc comment is not code. */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

function importsOf(file: string): string[] {
  const text = withoutComments(Deno.readTextFileSync(`${ROOT}${file}`));
  const specs = [...text.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+"([^"]+)"/gms)].map((m) =>
    m[1]
  );
  specs.push(...[...text.matchAll(/^\s*import\s+"([^"]+)"/gm)].map((m) => m[1]));
  specs.push(...[...text.matchAll(/import\(\s*"([^"]+)"\s*\)/g)].map((m) => m[1]));
  const dir = file.split("/").slice(0, -1).join("/");
  return specs.filter((s) => s.startsWith(".")).map((s) =>
    new URL(s, `file:///${dir}/`).pathname.slice(1)
  );
}

Deno.test("imports follow the layer rules: commands → daemon wire API; daemon → host, store, catalog", () => {
  const violations: string[] = [];
  for (const file of sourceFiles()) {
    const folder = file.split("/")[0];
    for (const target of importsOf(file)) {
      if (!ALLOWED[folder](target, file)) violations.push(`${file} → ${target}`);
    }
  }
  assertEquals(violations, []);
});

Deno.test("a folder's _private.ts files are imported only from inside that folder", () => {
  const files = sourceFiles();
  const violations: string[] = [];
  const dirOf = (f: string) => f.split("/").slice(0, -1).join("/");
  for (const file of files) {
    for (const target of importsOf(file)) {
      const name = target.split("/").at(-1) ?? "";
      if (name.startsWith("_") && dirOf(target) !== dirOf(file)) {
        violations.push(`${file} → ${target}`);
      }
    }
  }
  assertEquals(files.filter((f) => f.split("/").at(-1)?.startsWith("_")).length > 10, true);
  assertEquals(violations, []);
});

Deno.test(`no source folder holds more than ${MAX_FILES_PER_FOLDER} files`, () => {
  const counts = new Map<string, number>();
  for (const file of sourceFiles()) {
    const dir = file.split("/").slice(0, -1).join("/");
    counts.set(dir, (counts.get(dir) ?? 0) + 1);
  }
  assertEquals(counts.size > 20, true);
  const crowded = [...counts].filter(([, n]) => n > MAX_FILES_PER_FOLDER);
  assertEquals(crowded, []);
});

Deno.test("no import cycles between source files", () => {
  const graph = new Map(sourceFiles().map((f) => [f, importsOf(f)]));
  const cycles: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (f: string) => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "visiting") {
      cycles.push([...stack.slice(stack.indexOf(f)), f].join(" → "));
      return;
    }
    state.set(f, "visiting");
    stack.push(f);
    for (const t of graph.get(f) ?? []) visit(t);
    stack.pop();
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f);
  assertEquals(cycles, []);
});

Deno.test("every lazily imported module is listed in the compile tasks' --include", () => {
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks as Record<
    string,
    string
  >;
  const lazy = new Set<string>();
  for (const file of ["main.ts", "commands/cli.ts"]) {
    const text = Deno.readTextFileSync(`${ROOT}${file}`);
    const dir = file.split("/").slice(0, -1).join("/");
    const specs = [
      ...[...text.matchAll(/new URL\("(\.[^"]+\.ts)", import\.meta\.url\)/g)].map((m) => m[1]),
      ...[...text.matchAll(/group\("(\.[^"]+\.ts)"/g)].map((m) => m[1]),
    ];
    for (const s of specs) {
      lazy.add(new URL(s, `file:///${dir ? dir + "/" : ""}`).pathname.slice(1));
    }
    lazy.delete("main.ts"); // the entry point itself
  }
  assertEquals(lazy.size > 5, true);
  for (const task of ["compile", "compile:helper"]) {
    const included = [...tasks[task].matchAll(/--include (\S+)/g)].map((m) => m[1]);
    const missing = [...lazy].filter((m) => !included.includes(m));
    assertEquals(missing, [], `deno task ${task} misses lazily loaded modules`);
  }
});

Deno.test("the scan covers every product folder, and ARCHITECTURE.md names exactly the folders that exist", () => {
  const files = sourceFiles();
  for (const folder of FOLDERS) {
    const n = files.filter((f) => f.startsWith(`${folder}/`)).length;
    assertEquals(n > 0, true, `${folder}/ has no source files: the rules would check nothing`);
  }
  assertEquals(files.length > 150, true, `only ${files.length} files scanned`);
  const map = Deno.readTextFileSync(`${ROOT}ARCHITECTURE.md`);
  const rooms = [...map.matchAll(/^((?:commands|daemon|host|store|catalog)(?:\/[a-z_]+)*)\/ /gm)]
    .map((m) => m[1]).sort();
  assertEquals(rooms, sourceDirs(), "the Rooms block of ARCHITECTURE.md lists every folder");
});

Deno.test("every relative import names a file that exists", () => {
  const missing: string[] = [];
  for (const file of sourceFiles()) {
    for (const target of importsOf(file)) {
      try {
        Deno.statSync(`${ROOT}${target}`);
      } catch {
        missing.push(`${file} → ${target}`);
      }
    }
  }
  assertEquals(missing, []);
});

/** A spawn of a program named by a literal: `run("ip", …)`, `new Deno.Command("sh", …)`. */
const SPAWN =
  /(?:(?<![\w.])(?:run|runText|collectOutput)|\baccess\.run|spawnAsOwner|new Deno\.Command)\(\s*"([^"]+)"/g;

/** The helper's ops (`HELPER_OPS`) live here; every other spawn is the owner daemon's or the CLI's. */
const HELPER_FILES = /^host\/net\/|^host\/vmm\/firecracker\/jailer\.ts$/;

/** Spawns whose program is named at run time, by role. */
const NAMED_AT_RUN_TIME: Record<"owner" | "helper", string[]> = {
  // main.ts starts the daemon as `deno run …` from source, or as the compiled `banger`;
  // commands/guest/session.ts runs the `ssh` argv the daemon hands it.
  owner: ["deno", "banger", "ssh"],
  helper: [],
};

Deno.test("every program a role spawns is on its permission set, and each set lists nothing else", () => {
  const json = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const sets = json.permissions as Record<string, { run: string[] }>;
  const spawned = { owner: new Set(NAMED_AT_RUN_TIME.owner), helper: new Set<string>() };
  let sites = 0;
  for (const file of [...sourceFiles(), "main.ts"]) {
    const text = withoutComments(Deno.readTextFileSync(`${ROOT}${file}`));
    for (const m of text.matchAll(SPAWN)) {
      spawned[HELPER_FILES.test(file) ? "helper" : "owner"].add(m[1]);
      sites++;
    }
  }
  assertEquals(sites > 20, true, `the scan found only ${sites} spawn sites`);
  for (const role of ["owner", "helper"] as const) {
    const listed = new Set(sets[role].run);
    assertEquals([...spawned[role]].filter((p) => !listed.has(p)), [], `missing from ${role}`);
    assertEquals([...listed].filter((p) => !spawned[role].has(p)), [], `unused in ${role}`);
  }
  // `deno task banger` runs both roles in one process (root, in-process helper).
  const union = new Set([...sets.owner.run, ...sets.helper.run]);
  assertEquals(new Set(sets.banger.run), union);
  for (const task of ["banger", "owner", "helper"]) {
    assertEquals(json.tasks[task].includes(`-P=${task} `), true, task);
    assertEquals(json.tasks[task].includes("--allow-"), false, task);
  }
});
