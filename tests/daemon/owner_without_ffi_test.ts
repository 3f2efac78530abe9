/**
 * The owner role (the `owner` task: the CLI and `banger daemon` of a system install) runs
 * without `--allow-ffi`: every `/proc`, `/sys` and `/dev` access and every signal goes
 * through `PrivilegedOps` to the root helper.
 *
 * Two proofs: a static walk of the owner role's import graph (it reaches libc only through
 * the pure name validators `privileged_ops.ts` uses; the in-process adapter is loaded
 * lazily), and the real thing: the owner daemon and CLI as uid 65534 with exactly the
 * `owner` task's flags, against a root helper with the `helper` task's, driving the fake
 * firecracker (simulated guests) through create, stop, start, a daemon restart (the VMM
 * is then adopted: watched and killed through the helper), kill and delete, plus doctor.
 */
import { storePath } from "../../host/layout.ts";
import { readProcFile } from "../../host/os/procfs.ts";
import { Store } from "../../store/db.ts";
import { assert, assertEquals, assertStringIncludes } from "../fixtures/assert.ts";
import { taskFlags, waitForPath } from "../fixtures/banger_cli.ts";
import { Netns } from "../fixtures/netns.ts";
import { gatedTest, programs, root } from "../fixtures/requires.ts";
import { seedImage, testConfig } from "../fixtures/seed_image.ts";
import { asOwner, OWNER, ownerDenoDir, systemRoot } from "../fixtures/system_root.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;

// --- the static proof ---------------------------------------------------------------

/** Modules that call into libc themselves (their value imports from it). */
const LIBC = ["host/os/_libc.ts", "host/os/libc.ts"];

/**
 * What owner-side code may import from a module that calls libc: pure functions (each is
 * documented "Pure." at its definition) and constants the `PrivilegedOps` argument
 * schemas validate with.
 */
const PURE_EXPORTS: Record<string, string[]> = {
  "host/disk/ext4.ts": ["XATTR_NAME"],
  "host/disk/loop.ts": ["parseLoopPath"],
  "host/net/tap.ts": ["isTapName"],
  "host/net/bridge.ts": ["isBridgeName", "parseInterfaceAddress"],
};

/** The value (not type-only) imports of `file`: target → imported names. */
function valueImports(file: string): Map<string, string[]> {
  // Block comments hold examples such as `import("./x.ts")`.
  const text = Deno.readTextFileSync(`${ROOT}${file}`).replace(/\/\*[\s\S]*?\*\//g, "");
  const out = new Map<string, string[]>();
  const add = (spec: string, names: string[]) => {
    if (!spec.startsWith(".") || names.length === 0) return;
    const dir = file.split("/").slice(0, -1).join("/");
    const target = new URL(spec, `file:///${dir ? `${dir}/` : ""}`).pathname.slice(1);
    out.set(target, [...(out.get(target) ?? []), ...names]);
  };
  const statement = /^\s*(import|export)\s+(type\s+)?([^;]*?)\s*from\s+"([^"]+)"/gms;
  for (const [, , typeOnly, clause, spec] of text.matchAll(statement)) {
    if (typeOnly) continue;
    const braces = /\{([^}]*)\}/.exec(clause);
    const named = (braces?.[1] ?? "").split(",").map((n) => n.trim()).filter((n) =>
      n && !n.startsWith("type ")
    ).map((n) => n.split(/\s+as\s+/)[0]);
    const whole = clause.replace(/\{[^}]*\}/, "").replace(/,/g, " ").trim();
    add(spec, [...named, ...(whole ? ["*"] : [])]);
  }
  for (const [, spec] of text.matchAll(/^\s*import\s+"([^"]+)"/gm)) add(spec, ["*"]);
  for (const [, spec] of text.matchAll(/import\(\s*"([^"]+)"\s*\)/g)) add(spec, ["*"]);
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...sourceFiles(rel));
    else if (e.name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

Deno.test("the owner role's modules reach libc only through pure validators; the in-process adapter is loaded lazily", () => {
  const callsLibc = (f: string) =>
    LIBC.includes(f) || [...valueImports(f).keys()].some((t) => LIBC.includes(t));
  const entries = ["main.ts", ...sourceFiles("commands"), ...sourceFiles("daemon")];
  const seen = new Set<string>(entries);
  const queue = [...entries];
  const violations: string[] = [];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    for (const [target, names] of valueImports(file)) {
      if (callsLibc(target)) {
        const pure = PURE_EXPORTS[target] ?? [];
        const bad = names.filter((n) => !pure.includes(n));
        if (bad.length) violations.push(`${file} → ${target} {${bad.join(", ")}}`);
      } else if (!seen.has(target)) {
        seen.add(target);
        queue.push(target);
      }
    }
  }
  assertEquals(violations, []);
  for (
    const m of [
      "daemon/services.ts",
      "daemon/doctor.ts",
      "host/privileged/select_privileged_ops.ts",
    ]
  ) {
    assert(seen.has(m), `the walk reaches ${m}`);
  }
  for (
    const m of [
      "host/privileged/in_process_ops.ts",
      "host/os/procfs.ts",
      "host/privileged/_signal.ts",
    ]
  ) {
    assert(!seen.has(m), `${m} is not in the owner role's static graph`);
  }
});

Deno.test("the owner permission set and compile task have no ffi; the helper and dev sets keep it", () => {
  const json = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const sets = json.permissions as Record<string, { ffi?: boolean }>;
  assert(!sets.owner.ffi, "owner");
  for (const name of ["banger", "helper"]) assert(sets[name].ffi === true, name);
  assertEquals(json.tasks.compile.split(" ").filter((w: string) => w.startsWith("-P")), [
    "-P=owner",
  ]);
  assert(!json.tasks.compile.includes("--allow-"), json.tasks.compile);
});

// --- the runtime proof --------------------------------------------------------------

gatedTest(
  "the owner daemon and CLI run without --allow-ffi: create, stop, start, adopt after a restart, kill, delete and doctor through the root helper (root, netns, setpriv)",
  [root(), programs("setpriv", "ip", "mkfs.ext4", "pkill")],
  async (t) => {
    await using sys = await systemRoot();
    await using ns = await Netns.create();
    await using denoDir = await ownerDenoDir();
    await Deno.writeTextFile(sys.layout.configFile, testConfig().text);
    {
      using store = Store.open(storePath(sys.layout));
      await seedImage(sys.layout, store);
    }
    const owned = ["-R", `${OWNER.uid}:${OWNER.gid}`, sys.layout.stateDir];
    await new Deno.Command("chown", { args: owned }).output();
    const env = { BANGER_ROOT: sys.root, DENO_DIR: denoDir.path, HOME: OWNER.home };
    const ownerArgv = (args: string[]) =>
      asOwner([Deno.execPath(), "run", ...taskFlags("owner"), MAIN, ...args], env);
    const spawn = (argv: string[], extraEnv: Record<string, string> = {}) =>
      new Deno.Command("ip", {
        args: ["netns", "exec", ns.name, ...argv],
        env: extraEnv,
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
    const helper = spawn([Deno.execPath(), "run", ...taskFlags("helper"), MAIN, "helper"], {
      BANGER_ROOT: sys.root,
    });
    let helperLog = "";
    const logged = helper.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (chunk) => void (helperLog += chunk) }),
    );
    const daemonPid = async () =>
      Number((await Deno.readTextFile(`${sys.layout.runtimeDir}/daemon.pid`)).trim());
    let daemon = spawn(ownerArgv(["daemon"]));
    const cli = (args: string[]) => ns.run(ownerArgv(args));
    const show = async (name: string) => {
      const r = await cli(["vm", "show", name, "--json"]);
      assertEquals(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { status: string; pid?: number; errors: string[] };
    };
    const ok = async (args: string[]) => {
      const r = await cli(args);
      assertEquals(r.code, 0, `banger ${args.join(" ")}: ${r.stderr}`);
    };
    try {
      await waitForPath(`${sys.root}/run/banger-root/helper.sock`, helper);
      await waitForPath(`${sys.layout.runtimeDir}/daemon.sock`, daemon);
      await t.step("the owner daemon runs as the owner without --allow-ffi", async () => {
        const pid = await daemonPid();
        const status = readProcFile(`/proc/${pid}/status`);
        assertEquals(/^Uid:\s+(\d+)/m.exec(status)?.[1], String(OWNER.uid));
        const argv = readProcFile(`/proc/${pid}/cmdline`).split("\0");
        assert(argv.includes("-P=owner") && argv.includes("daemon"), argv.join(" "));
        assert(!argv.some((a) => a.startsWith("--allow-ffi") || a === "-A"), argv.join(" "));
      });
      await t.step("vm create boots through the helper; the VMM runs as the owner", async () => {
        await ok(["vm", "create", "--name", "a"]);
        const vm = await show("a");
        assertEquals(vm.status, "running");
        const status = readProcFile(`/proc/${vm.pid}/status`);
        assertEquals(/^Uid:\s+(\d+)/m.exec(status)?.[1], String(OWNER.uid));
      });
      await t.step("vm stop and vm start", async () => {
        await ok(["vm", "stop", "a"]);
        assertEquals((await show("a")).status, "stopped");
        await ok(["vm", "start", "a"]);
        const vm = await show("a");
        assertEquals([vm.status, vm.errors], ["running", []]);
      });
      await t.step(
        "after a daemon restart the VMM is adopted (liveness through the helper)",
        async () => {
          const before = await show("a");
          await ok(["daemon", "stop"]);
          await daemon.status;
          daemon = spawn(ownerArgv(["daemon"]));
          await waitForPath(`${sys.layout.runtimeDir}/daemon.sock`, daemon);
          const after = await show("a");
          assertEquals([after.status, after.pid, after.errors], ["running", before.pid, []]);
        },
      );
      await t.step("vm kill of the adopted VMM goes through the helper's signalVmm", async () => {
        await ok(["vm", "kill", "a"]);
        assertEquals((await show("a")).status, "stopped");
        const lines = helperLog.trim().split("\n").map((l) => JSON.parse(l));
        assert(
          lines.some((l) => l.op === "signalVmm" && l.msg === "helper rpc completed"),
          helperLog,
        );
      });
      await t.step("vm start again and vm delete", async () => {
        await ok(["vm", "start", "a"]);
        assertEquals((await show("a")).status, "running");
        await ok(["vm", "delete", "-f", "a"]);
        assertEquals((await cli(["vm", "show", "a"])).code, 1);
      });
      await t.step("banger doctor probes the host through the helper", async () => {
        const r = await cli(["doctor", "--json"]);
        const checks = JSON.parse(r.stdout).checks as { name: string; status: string }[];
        // The fake's absolute path is not in the owner task's --allow-run (doctor runs
        // `<firecracker_bin> --version` directly): that row fails for a reason of its own.
        const failed = checks.filter((c) => c.status === "FAIL" && c.name !== "firecracker");
        assertEquals(failed, [], r.stderr);
        for (const name of ["kvm", "tun", "vhost-vsock", "root disks"]) {
          const row = checks.find((c) => c.name === name);
          assert(row && !JSON.stringify(row).includes("cannot probe"), JSON.stringify(row));
        }
        const privileges = checks.find((c) => c.name === "privileges");
        assertEquals(privileges?.status, "PASS");
        assertStringIncludes(JSON.stringify(privileges), "root helper pid");
      });
    } finally {
      await cli(["vm", "delete", "-f", "a"]).catch(() => {});
      await cli(["daemon", "stop", "--force"]).catch(() => {});
      for (const c of [daemon, helper]) {
        try {
          c.kill("SIGTERM");
        } catch {
          // already gone
        }
        await c.status;
      }
      await daemon.stdout.cancel().catch(() => {});
      await logged.catch(() => {});
      await new Deno.Command("pkill", { args: ["-9", "-f", sys.root] }).output();
    }
  },
);
