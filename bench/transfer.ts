/**
 * Files in and out of a real guest (QEMU): `vm cp` of a 200 MB file against `scp` through
 * banger's own ssh_config, in the same run, both directions. Prints MB/s and ratios; never
 * asserts.
 *
 * Run: `deno run -A bench/transfer.ts` (needs root; boots a guest).
 *
 * @module
 */

import { SmokeEnv } from "../smoke/env.ts";
import { heading, row } from "./_stats.ts";

const MB = 200;

/** Runs the benchmark and prints its figures. */
export async function main(): Promise<void> {
  const env = await SmokeEnv.create("qemu", () => {});
  try {
    const name = "bench-cp";
    const made = await env.banger(["vm", "create", "--name", name]);
    if (made.code !== 0) throw new Error(made.stderr);
    const file = `${env.home}/big`;
    await env.exec(["sh", "-c", `head -c ${MB}M /dev/urandom > "${file}"`]);
    // `banger ssh-config` prints the path of the file banger keeps (a Host block per VM).
    const config = (await env.banger(["ssh-config"])).stdout.split("\n")[0];
    const timed = async (argv: string[]) => {
      const t0 = performance.now();
      const r = argv[0] === "banger" ? await env.banger(argv.slice(1)) : await env.exec(argv);
      if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
      return performance.now() - t0;
    };
    // Warm the ssh master both tools share.
    await timed(["banger", "vm", "ssh", name, "--", "true"]);
    const cpIn = await timed(["banger", "vm", "cp", file, `${name}:/root/a`]);
    const scpIn = await timed(["scp", "-q", "-F", config, file, `${name}.vm:/root/b`]);
    const cpOut = await timed(["banger", "vm", "cp", `${name}:/root/a`, `${env.home}/a-back`]);
    const scpOut = await timed([
      "scp",
      "-q",
      "-F",
      config,
      `${name}.vm:/root/b`,
      `${env.home}/b-back`,
    ]);
    const rate = (t: number) => `${(MB / (t / 1000)).toFixed(1)} MB/s`;
    heading(`vm cp vs scp: ${MB} MB, one real guest (QEMU), same run`);
    row("into the guest: vm cp", rate(cpIn));
    row(
      "into the guest: scp",
      `${rate(scpIn)} (vm cp takes ${(cpIn / scpIn).toFixed(2)}× scp's time)`,
    );
    row("out of the guest: vm cp", rate(cpOut));
    row(
      "out of the guest: scp",
      `${rate(scpOut)} (vm cp takes ${(cpOut / scpOut).toFixed(2)}× scp's time)`,
    );
    await env.banger(["vm", "delete", "-f", name]);
  } finally {
    await env.teardown();
  }
}

if (import.meta.main) await main();
