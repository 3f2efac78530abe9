import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../fixtures/assert.ts";
import { type CommandDef, parseArgv, renderHelp, UsageError } from "../../commands/command_line.ts";
import { runCli } from "../../commands/cli.ts";
import { type CliEnv, CliError, ExitCode } from "../../commands/env.ts";
import { confirm } from "../../commands/output.ts";
import { withGuestEnv } from "../../commands/guest/session.ts";
import { gatedTest, programs } from "../fixtures/requires.ts";
import { taskFlags } from "../fixtures/banger_cli.ts";
import { RpcClient } from "../../commands/client/rpc_client.ts";
import { complete } from "../../commands/completion_cmd.ts";

const tree: CommandDef = {
  name: "banger",
  summary: "root",
  subcommands: [{
    name: "vm",
    summary: "VMs",
    subcommands: [{
      name: "run",
      summary: "run one",
      args: [{ name: "path", optional: true, complete: "dir" }],
      rest: "cmd",
      flags: [
        { name: "name", kind: "string", help: "VM name" },
        { name: "vcpu", kind: "number", help: "vCPUs" },
        { name: "rm", kind: "bool", help: "remove after" },
        { name: "detach", short: "d", kind: "bool", help: "detach" },
      ],
      run: () => Promise.resolve(0),
    }, {
      name: "stop",
      summary: "stop",
      args: [{ name: "vm", variadic: true, complete: "vm" }],
      run: () => Promise.resolve(0),
    }],
  }],
};

Deno.test("parseArgv() reads subcommands, flags, positionals and the command after --", () => {
  const { invocation } = parseArgv(tree, [
    "vm",
    "run",
    "./repo",
    "--name=dev",
    "--vcpu",
    "2",
    "-d",
    "--",
    "sh",
    "-c",
    "exit 42",
  ]);
  assertEquals(invocation.path, ["vm", "run"]);
  assertEquals(invocation.args, ["./repo"]);
  assertEquals(invocation.flags.get("name"), "dev");
  assertEquals(invocation.flags.get("vcpu"), "2");
  assertEquals(invocation.flags.get("detach"), true);
  assertEquals(invocation.rest, ["sh", "-c", "exit 42"]);
});

Deno.test("parseArgv() throws UsageError for each wrong command line", async (t) => {
  const cases: [string[], string][] = [
    [["vm", "rnu"], `Unknown command "rnu" for "banger vm" (did you mean "run"?)`],
    [
      ["vm", "run", "--nmae", "x"],
      `Unknown flag "--nmae" for "banger vm run" (did you mean "--name"?)`,
    ],
    [["vm", "run", "--vcpu", "two"], `Flag "--vcpu" must be a whole number, got "two"`],
    [["vm", "run", "--name"], `Flag "--name" needs a value`],
    [["vm", "run", "a", "b"], `got an unexpected argument "b"`],
    [["vm", "stop"], `needs at least one VM`],
    [["vm", "stop", "x", "--", "y"], `does not take a command after "--"`],
    [["vm"], `needs a subcommand: run, stop`],
  ];
  for (const [argv, expected] of cases) {
    await t.step(argv.join(" "), () => {
      const err = assertThrows(() => parseArgv(tree, argv), UsageError);
      assertStringIncludes(err.message, expected);
      assertEquals(err.exitCode, 2);
    });
  }
});

Deno.test("renderHelp() shows usage, flags and the command after --", () => {
  const run = tree.subcommands?.[0].subcommands?.[0];
  assert(run);
  const help = renderHelp(run, ["vm", "run"]);
  assertStringIncludes(help, "Usage: banger vm run [PATH] [flags] [-- cmd]");
  assertStringIncludes(help, "-d, --detach");
  assertStringIncludes(help, "--name STRING");
  assertStringIncludes(help, "--help");
});

Deno.test("complete() offers subcommands, flags and completer values", async () => {
  const names = (kind: string) => Promise.resolve(kind === "vm" ? ["dev", "devbox", "ci"] : []);
  assertEquals(await complete(tree as CommandDef<CliEnv>, ["vm", "s"], names), ["stop"]);
  assertEquals(await complete(tree as CommandDef<CliEnv>, ["vm", "run", "--de"], names), [
    "--detach",
    "--debug",
  ]);
  assertEquals(await complete(tree as CommandDef<CliEnv>, ["vm", "stop", "de"], names), [
    "dev",
    "devbox",
  ]);
});

function fakeEnv(): CliEnv & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const never = () => Promise.reject(new Error("not used"));
  return {
    stdout,
    stderr,
    out: (t) => void stdout.push(t),
    err: (t) => void stderr.push(t),
    stdoutIsTty: false,
    stderrIsTty: false,
    stdinIsTty: false,
    style: {},
    readLine: () => Promise.resolve(null),
    client: new RpcClient("/nonexistent/banger.sock"),
    paths: {
      socket: "/nonexistent/banger.sock",
      startLock: "",
      startupLog: "",
      runtimeDir: "",
      pidLock: "",
    },
    daemonCommand: () => ({ program: "false", args: [] }),
    ensureRuntimeDir: never,
    local: { runDaemon: never, doctor: never, readConfig: never },
  };
}

Deno.test("runCli() exits 2 with one error line and a --help pointer for usage errors", async () => {
  const env = fakeEnv();
  assertEquals(await runCli(["daemon", "sttus"], env), 2);
  assertEquals(
    env.stderr.join(""),
    `error: Unknown command "sttus" for "banger daemon" (did you mean "status"?)\nRun "banger daemon --help" for usage.\n`,
  );
});

Deno.test("runCli() prints help and the version", async () => {
  const env = fakeEnv();
  assertEquals(await runCli(["--help"], env), 0);
  assertStringIncludes(env.stdout.join(""), "Usage: banger <command>");
  const v = fakeEnv();
  assertEquals(await runCli(["--version"], v), 0);
  assert(v.stdout.join("").startsWith("banger 0.1.0"));
});

Deno.test("runCli() prints operation errors on one line without a stack unless --debug", async () => {
  const env = fakeEnv();
  env.local.doctor = () => Promise.reject(new Error("disk on fire"));
  assertEquals(await runCli(["doctor"], env), 1);
  assertEquals(env.stderr.join(""), "error: disk on fire\n");
  const dbg = fakeEnv();
  dbg.local.doctor = () => Promise.reject(new Error("disk on fire"));
  assertEquals(await runCli(["doctor", "--debug"], dbg), 1);
  assertStringIncludes(dbg.stderr.join(""), "at ");
});

Deno.test("confirm() goes ahead with -f, refuses with no terminal, and asks on stderr on one", async () => {
  await confirm(fakeEnv(), "This deletes dev.", true);
  const piped = fakeEnv();
  piped.readLine = () => Promise.resolve("y"); // `echo y | banger …` is not an answer
  const refused = await assertRejects(() => confirm(piped, "This deletes dev.", false), CliError);
  assertEquals(refused.message, "This deletes dev. Refusing without a terminal to confirm on");
  assertEquals(refused.hint, "pass -f to go ahead without asking");
  for (
    const [answer, agreed] of [["y", true], ["YES ", true], ["n", false], ["", false]] as const
  ) {
    const tty = { ...fakeEnv(), stdinIsTty: true, readLine: () => Promise.resolve(answer) };
    const stderr: string[] = [];
    tty.err = (t) => void stderr.push(t);
    const outcome = await confirm(tty, "This deletes dev.", false).then(() => 0, (e) => e);
    assertEquals(outcome instanceof ExitCode ? outcome.code : outcome, agreed ? 0 : 1, answer);
    assertEquals(stderr[0], "This deletes dev. Continue? [y/N] ");
    assertEquals(tty.stdout, [], "the question never goes to stdout");
  }
});

Deno.test("withGuestEnv() sets -e variables through the guest's env, one argv word each", () => {
  assertEquals(withGuestEnv(["make", "-j2"], [], ["vm", "exec"]), ["make", "-j2"]);
  assertEquals(withGuestEnv(["make"], ["CI=1", "MSG=a b;c"], ["vm", "exec"]), [
    "env",
    "--",
    "CI=1",
    "MSG=a b;c",
    "make",
  ]);
  assertEquals(withGuestEnv(undefined, ["A="], ["vm", "run"]), [
    "env",
    "--",
    "A=",
    "sh",
    "-c",
    'exec "${SHELL:-/bin/sh}" -l',
  ]);
  for (const bad of ["CI", "1A=x", "A-B=x", "=x"]) {
    assertThrows(() => withGuestEnv(["true"], [bad], ["vm", "run"]), UsageError, "KEY=VALUE");
  }
});

gatedTest(
  "fish completion completes commands, `banger help` words, and paths where banger offers none (fish)",
  [programs("fish")],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bg-fish-" });
    try {
      await Deno.mkdir(`${dir}/bin`);
      await Deno.mkdir(`${dir}/repo/src`, { recursive: true });
      await Deno.writeTextFile(`${dir}/repo/a.txt`, "");
      const main = new URL("../../main.ts", import.meta.url).pathname;
      await Deno.writeTextFile(
        `${dir}/bin/banger`,
        `#!/bin/sh\nexec ${Deno.execPath()} run ${taskFlags().join(" ")} ${main} "$@"\n`,
      );
      await Deno.chmod(`${dir}/bin/banger`, 0o755);
      const script = [
        "banger completion fish | source",
        `complete -C "banger vm run ${dir}/repo/"`,
        "echo ---",
        'complete -C "banger vm r"',
        "echo ---",
        'complete -C "banger help im"',
      ].join("; ");
      const out = await new Deno.Command("fish", {
        args: ["--no-config", "-c", script],
        env: { PATH: `${dir}/bin:${Deno.env.get("PATH")}`, BANGER_HOME: `${dir}/home` },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      const [paths, vm, help] = text.split("---\n").map((part) => part.trim().split("\n"));
      assertEquals(paths, [`${dir}/repo/a.txt`, `${dir}/repo/src/`], text);
      assertEquals(vm.map((l) => l.split("\t")[0]), ["restart", "run"]);
      assertEquals(help.map((l) => l.split("\t")[0]), ["image"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("an alias runs its command under the canonical path, and help names it", () => {
  const aliased: CommandDef = {
    name: "banger",
    summary: "root",
    subcommands: [{
      name: "vm",
      summary: "VMs",
      subcommands: [{
        name: "delete",
        aliases: ["rm"],
        summary: "delete",
        args: [{ name: "vm" }],
        run: () => Promise.resolve(0),
      }],
    }],
  };
  const { invocation, command } = parseArgv(aliased, ["vm", "rm", "dev"]);
  assertEquals([invocation.path, invocation.args, command.name], [
    ["vm", "delete"],
    ["dev"],
    "delete",
  ]);
  assertStringIncludes(renderHelp(command, invocation.path), "Aliases: banger vm rm\n");
  const group = aliased.subcommands?.[0];
  assert(group);
  assertStringIncludes(renderHelp(group, ["vm"]), "delete  delete (also: rm)");
});

Deno.test("runCli() reads `banger help CMD` as `banger CMD --help`", async () => {
  const env = fakeEnv();
  assertEquals(await runCli(["help", "version"], env), 0);
  assertStringIncludes(env.stdout.join(""), "Usage: banger version [flags]");
});
