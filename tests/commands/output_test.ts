/**
 * Terminal output habits: a stage without byte totals ticks its elapsed time, redrawn
 * lines are cut to the terminal's width, colour only when asked for, plain lines off a
 * TTY.
 */
import { assertEquals } from "../fixtures/assert.ts";
import { fitWidth, problem, ProgressPrinter } from "../../commands/output.ts";
import type { ProgressEvent } from "../../daemon/api/protocol.ts";
import { gatedTest, programs } from "../fixtures/requires.ts";
import { runBanger, taskFlags } from "../fixtures/banger_cli.ts";

function event(stage: string, message: string, extra: Partial<ProgressEvent> = {}): ProgressEvent {
  return { event: "progress", stage, message, elapsed_ms: 0, ...extra };
}

Deno.test("ProgressPrinter ticks the elapsed time of a stage without byte totals", () => {
  const written: string[] = [];
  let clock = 10_000;
  const p = new ProgressPrinter((t) => written.push(t), true, {}, () => clock);
  p.update(event("debootstrap", "Running debootstrap"));
  clock += 65_000;
  p.tick();
  clock += 1_000;
  p.tick();
  p.update(event("pieces", "Adding guest pieces", { elapsed_ms: 66_000 }));
  p.done(67_000);
  assertEquals(written, [
    "\r\x1b[2K  … Running debootstrap",
    "\r\x1b[2K  … Running debootstrap (1m05s)",
    "\r\x1b[2K  … Running debootstrap (1m06s)",
    "\r\x1b[2K  ✓ Running debootstrap 1m06s\n",
    "\r\x1b[2K  … Adding guest pieces",
    "\r\x1b[2K  ✓ Adding guest pieces 1.0s\n",
  ]);
});

Deno.test("ProgressPrinter does not tick a byte bar, nor anything off a TTY", () => {
  const written: string[] = [];
  let clock = 0;
  const bar = new ProgressPrinter((t) => written.push(t), true, {}, () => clock);
  bar.update(event("pull", "Pulling", { done: 1, total: 2 }));
  clock += 5_000;
  bar.tick();
  assertEquals(written.length, 1, "a bar is redrawn by its events only");
  const plain: string[] = [];
  const off = new ProgressPrinter((t) => plain.push(t), false, {}, () => clock);
  off.update(event("build", "Building the kernel"));
  clock += 5_000;
  off.tick();
  off.done(5_000);
  assertEquals(plain, ["Building the kernel\n"]);
});

Deno.test("redrawn lines are cut to the terminal width; colour only when the style asks", () => {
  assertEquals(fitWidth("short", 80), "short");
  assertEquals(fitWidth("x".repeat(30), 20), `${"x".repeat(18)}…`);
  assertEquals([...fitWidth("é".repeat(30), 20)].length, 19, "cut by characters, not bytes");
  const written: string[] = [];
  const p = new ProgressPrinter((t) => written.push(t), true, { columns: 20, color: true });
  p.update(event("a", "A rather long stage message"));
  p.done(1500);
  assertEquals(written, [
    "\r\x1b[2K  … A rather long …",
    "\r\x1b[2K  \x1b[32m✓\x1b[0m A rather long …\n",
  ]);
  const err: string[] = [];
  problem({ err: (t) => err.push(t), style: { color: true } }, "error", "boom");
  problem({ err: (t) => err.push(t), style: {} }, "hint", "try this");
  assertEquals(err, ["\x1b[31merror:\x1b[0m boom\n", "hint: try this\n"]);
});

gatedTest(
  "the CLI colours its error label on a terminal, and not with NO_COLOR or off a terminal (script)",
  [programs("script")],
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "bg-color-" });
    try {
      await Deno.writeTextFile(`${dir}/bad.toml`, "tap_pool_size = 999\n");
      const main = new URL("../../main.ts", import.meta.url).pathname;
      const cli = [Deno.execPath(), "run", ...taskFlags(), main, "config", "check", "--config"];
      const command = [...cli, `${dir}/bad.toml`].map((w) => `'${w}'`).join(" ");
      // `script` gives the CLI a pseudo-terminal for stdin, stdout and stderr.
      const onTty = async (extra: Record<string, string>) => {
        const out = await new Deno.Command("script", {
          args: ["-qec", command, "/dev/null"],
          env: { BANGER_HOME: dir, TERM: "xterm", ...extra },
          stdin: "null",
          stdout: "piped",
        }).output();
        return new TextDecoder().decode(out.stdout);
      };
      assertEquals((await onTty({})).startsWith("\x1b[31merror:\x1b[0m Invalid config file"), true);
      assertEquals((await onTty({ NO_COLOR: "1" })).startsWith("error: Invalid config file"), true);
      const piped = await runBanger(["config", "check", "--config", `${dir}/bad.toml`], {
        env: { BANGER_HOME: dir },
      });
      assertEquals(piped.stderr.startsWith("error: Invalid config file"), true, piped.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
