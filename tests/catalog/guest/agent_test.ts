import { agent } from "../../../catalog/guest/agent.ts";
import { assertEquals } from "../../fixtures/assert.ts";

const SHELLS = [["sh"], ...(exists("/bin/busybox") ? [["/bin/busybox", "sh"]] : [])];

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const SS =
  `udp   UNCONN 0      0          127.0.0.1:323        0.0.0.0:*    users:(("chronyd",pid=401,fd=5))
tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*    users:(("sshd",pid=312,fd=3))
tcp   LISTEN 0      128             [::]:22            [::]:*    users:(("sshd",pid=312,fd=4))
tcp   LISTEN 0      4096   127.0.0.53%lo:53         0.0.0.0:*    users:(("systemd-resolve",pid=200,fd=14),("helper",pid=201,fd=3))
tcp   LISTEN 0      5                  *:8080             *:*
`;

async function runAgent(
  shell: string[],
  args: string[],
  stdin?: string,
): Promise<{ code: number; out: string }> {
  const dir = await Deno.makeTempDir({ prefix: "bgt-agent-" });
  try {
    await Deno.writeTextFile(`${dir}/agent`, agent.script);
    await Deno.writeTextFile(`${dir}/ss.txt`, SS);
    await Deno.mkdir(`${dir}/proc/sys/kernel/random`, { recursive: true });
    await Deno.writeTextFile(`${dir}/proc/uptime`, "12.34 20.01\n");
    await Deno.writeTextFile(`${dir}/proc/sys/kernel/hostname`, "dev\n");
    await Deno.writeTextFile(
      `${dir}/proc/sys/kernel/random/boot_id`,
      "0f8d3f0c-1b7e-4c5e-9a55-2f3d4b6c7d8e\n",
    );
    const child = new Deno.Command(shell[0], {
      args: [...shell.slice(1), `${dir}/agent`, ...args],
      env: { BANGER_AGENT_SS_FILE: `${dir}/ss.txt`, BANGER_PROC: `${dir}/proc` },
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
    }).spawn();
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    }
    const out = await child.output();
    return { code: out.code, out: new TextDecoder().decode(out.stdout) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("banger-agent ports turns ss output into JSON with protocols, addresses and processes", async (t) => {
  for (const shell of SHELLS) {
    await t.step(shell.join(" "), async () => {
      const r = await runAgent(shell, ["ports"]);
      assertEquals(r.code, 0);
      assertEquals(r.out.endsWith("\n") && !r.out.trimEnd().includes("\n"), true, "one line");
      assertEquals(JSON.parse(r.out), {
        ports: [
          {
            proto: "udp",
            address: "127.0.0.1",
            port: 323,
            processes: [{ name: "chronyd", pid: 401 }],
          },
          { proto: "tcp", address: "0.0.0.0", port: 22, processes: [{ name: "sshd", pid: 312 }] },
          { proto: "tcp", address: "::", port: 22, processes: [{ name: "sshd", pid: 312 }] },
          {
            proto: "tcp",
            address: "127.0.0.53%lo",
            port: 53,
            processes: [{ name: "systemd-resolve", pid: 200 }, { name: "helper", pid: 201 }],
          },
          { proto: "tcp", address: "*", port: 8080, processes: [] },
        ],
      });
    });
  }
});

Deno.test("banger-agent health reports hostname, uptime and boot id", async () => {
  const r = await runAgent(["sh"], ["health"]);
  assertEquals(JSON.parse(r.out), {
    ok: true,
    hostname: "dev",
    uptime_seconds: 12.34,
    boot_id: "0f8d3f0c-1b7e-4c5e-9a55-2f3d4b6c7d8e",
  });
});

Deno.test("banger-agent --serve answers the one request line it reads (CRLF tolerated)", async () => {
  const r = await runAgent(["sh"], ["--serve"], "health\r\n");
  assertEquals(r.code, 0);
  assertEquals(JSON.parse(r.out).hostname, "dev");
  assertEquals(JSON.parse((await runAgent(["sh"], ["--serve"], "ports\n")).out).ports.length, 5);
});

Deno.test("banger-agent answers an unknown request with a JSON error and exit code 2", async () => {
  for (
    const r of [await runAgent(["sh"], ["reboot"]), await runAgent(["sh"], ["--serve"], "x\n")]
  ) {
    assertEquals(r.code, 2);
    assertEquals(JSON.parse(r.out), { error: "unknown request; expected health or ports" });
  }
});
