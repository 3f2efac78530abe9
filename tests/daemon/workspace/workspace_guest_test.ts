/**
 * Workspaces on a real Debian guest under QEMU, through the real CLI and daemon: one
 * boot, then prepare → exec (exit code) → edit in the guest → export → `git apply` on
 * the host, and `vm ports` finding servers started in the guest.
 */
import { git } from "../../fixtures/git.ts";
import { assert, assertEquals, assertStringIncludes } from "../../fixtures/assert.ts";
import { taskFlags } from "../../fixtures/banger_cli.ts";
import { guestArtifacts, guestArtifactsRequirements } from "../../fixtures/guest_artifacts.ts";
import { Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";

const MAIN = new URL("../../../main.ts", import.meta.url).pathname;

/** A host repo whose `check.sh` fails (exit 3) until a file `ok` exists. */
async function hostRepo(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/src`, { recursive: true });
  await git(dir, "init", "-q", "-b", "main");
  await Deno.writeTextFile(`${dir}/check.sh`, "#!/bin/sh\necho checking\ntest -f ok || exit 3\n");
  await Deno.writeTextFile(`${dir}/src/app.txt`, "version 1\n");
  await Deno.writeTextFile(`${dir}/obsolete.txt`, "old\n");
  await Deno.writeTextFile(`${dir}/.gitignore`, "*.secret\n");
  await git(dir, "add", ".");
  await git(dir, "commit", "-q", "-m", "initial");
  await Deno.writeTextFile(`${dir}/token.secret`, "never sent\n");
}

gatedTest(
  "workspace on a real guest: prepare, exec exit code, guest edits exported and applied, vm ports (root, QEMU)",
  [
    ...guestArtifactsRequirements(),
    programs("qemu-system-x86_64", "ip", "nft", "git", "tar", "ssh"),
  ],
  async (t) => {
    const art = await guestArtifacts();
    await using ns = await Netns.create();
    const top = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgq-" });
    const home = `${top}/h`;
    const repo = `${top}/repo`;
    const tag = crypto.randomUUID().slice(0, 5);
    const cli = (...args: string[]) =>
      ns.run(["deno", "run", ...taskFlags(), MAIN, ...args], { env: { BANGER_HOME: home } });
    const ok = async (...args: string[]) => {
      const r = await cli(...args);
      assertEquals(r.code, 0, `banger ${args.join(" ")}: ${r.stderr}`);
      return r;
    };
    /** `banger vm exec wsg -- <argv>`, whatever its exit code. */
    const inGuest = (...argv: string[]) => cli("vm", "exec", "wsg", "--", ...argv);
    try {
      await Deno.mkdir(`${home}/config`, { recursive: true, mode: 0o700 });
      await Deno.chmod(home, 0o700);
      await Deno.writeTextFile(
        `${home}/config/config.toml`,
        `vmm = "qemu"\nbridge_name = "bg-q${tag}"\ndns_listen = "127.0.0.1:${
          20000 + Math.floor(Math.random() * 20000)
        }"\ntap_pool_size = 1\n[vm_defaults]\nvcpu = 2\nmemory_mib = 1024\ndisk_size = "1G"\nsystem_overlay_size = "1G"\n`,
      );
      await hostRepo(repo);
      await ok("kernel", "import", "debian-6.1-cloud", "--from", art.kernelDir);
      await ok(
        "image",
        "register",
        "--name",
        "debian-bookworm",
        "--rootfs",
        art.rootfs,
        "--kernel-ref",
        "debian-6.1-cloud",
      );
      await ok("image", "promote", "debian-bookworm");
      await ok("vm", "create", "--name", "wsg");

      await t.step("prepare sends tracked files with history", async () => {
        await ok("vm", "workspace", "prepare", "wsg", repo);
        const vm = JSON.parse((await ok("vm", "show", "wsg", "--json")).stdout);
        assertEquals(vm.workspace.guest_path, "/root/repo");
        assertEquals(vm.workspace.base_commit, await git(repo, "rev-parse", "HEAD"));
        const ls = await ok("vm", "exec", "wsg", "--", "sh", "-c", "ls -A; git log --format=%s");
        assertEquals(ls.stdout, ".git\n.gitignore\ncheck.sh\nobsolete.txt\nsrc\ninitial\n");
      });

      await t.step("exec propagates the exit code and runs in the workspace", async () => {
        const failing = await inGuest("sh", "./check.sh");
        assertEquals([failing.code, failing.stdout], [3, "checking\n"]);
        const passing = await inGuest("sh", "-c", "touch ok && sh ./check.sh");
        assertEquals(passing.code, 0, passing.stderr);
      });

      await t.step(
        "guest edits, a guest commit, a binary file and a deletion apply on the host",
        async () => {
          await ok(
            "vm",
            "exec",
            "wsg",
            "--",
            "sh",
            "-c",
            [
              "rm ok",
              "echo 'version 2' > src/app.txt",
              "git -c user.name=g -c user.email=g@guest commit -qam 'bump in guest'",
              "printf 'line\\n' >> check.sh",
              "printf '\\000\\001\\377binary' > src/blob.bin",
              "git rm -q obsolete.txt",
              "md5sum .git/index > /tmp/index.before",
            ].join(" && "),
          );
          const patch = `${top}/guest.patch`;
          await ok("vm", "workspace", "export", "wsg", "--output", patch);
          const same = await inGuest("md5sum", "-c", "--quiet", "/tmp/index.before");
          assertEquals(same.code, 0, `the guest index changed: ${same.stdout}${same.stderr}`);
          const text = await Deno.readTextFile(patch);
          assertStringIncludes(text, "GIT binary patch");
          assert(
            !text.includes("token.secret") && !text.includes("b/ok"),
            "only workspace changes",
          );
          await git(repo, "apply", patch);
          assertEquals(await Deno.readTextFile(`${repo}/src/app.txt`), "version 2\n");
          assertEquals(
            await Deno.readFile(`${repo}/src/blob.bin`),
            new Uint8Array([0, 1, 255, ...new TextEncoder().encode("binary")]),
          );
          assert((await Deno.readTextFile(`${repo}/check.sh`)).endsWith("line\n"));
          await Deno.stat(`${repo}/obsolete.txt`).then(
            () => assert(false, "not deleted"),
            () => {},
          );
        },
      );

      await t.step(
        "vm ports shows servers started in the guest, with a link for HTTP",
        async () => {
          await ok(
            "vm",
            "exec",
            "wsg",
            "--",
            "sh",
            "-c",
            "nohup socat TCP-LISTEN:8080,fork,reuseaddr EXEC:cat >/dev/null 2>&1 & " +
              `nohup socat TCP-LISTEN:8081,fork,reuseaddr SYSTEM:'printf "HTTP/1.0 200 OK\\r\\n\\r\\nok"' >/dev/null 2>&1 & ` +
              "for i in 1 2 3 4 5 6 7 8 9 10; do ss -Htln | grep -q ':8081 ' && break; sleep 0.2; done",
          );
          const r = await ok("vm", "ports", "wsg", "--json");
          const ports = JSON.parse(r.stdout)[0].ports as {
            port: number;
            url?: string;
            processes: string[];
          }[];
          const echo = ports.find((p) => p.port === 8080);
          const http = ports.find((p) => p.port === 8081);
          assert(echo && http, r.stdout);
          assertEquals(echo.processes, ["socat"]);
          assertEquals(echo.url, undefined, "an echo server is not HTTP");
          assertEquals(http.url, "http://wsg.vm:8081/");
        },
      );
    } finally {
      await cli("vm", "delete", "-f", "wsg");
      await cli("daemon", "stop", "--force");
      await Deno.remove(top, { recursive: true }).catch(() => {});
    }
  },
);
