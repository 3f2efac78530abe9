import { instanceFor } from "../../../host/instance.ts";
import { HelperOps } from "../../../host/helper/client.ts";
import { HelperServer } from "../../../host/helper/server.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import { readWriteDenial } from "../../../host/privileged/_host_probe.ts";
import { helperSocket, vmsDir } from "../../../host/layout.ts";
import { pathExists } from "../../../host/os/libc.ts";
import { opIdScope } from "../../../host/op_id_scope.ts";
import { PrivilegedOpsError } from "../../../host/privileged/privileged_ops.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "../../fixtures/assert.ts";
import { Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import {
  callHelperAs,
  OWNER,
  ownerDenoDir,
  type SystemRoot,
  systemRoot,
} from "../../fixtures/system_root.ts";

interface Running extends AsyncDisposable {
  sys: SystemRoot;
  ns: Netns;
  socket: string;
  client: HelperOps;
  logs: string[];
}

/** A helper served in-process (root) inside a fresh netns, for a temp system install. */
async function running(): Promise<Running> {
  const sys = await systemRoot();
  const ns = await Netns.create();
  const entered = ns.enter();
  const logs: string[] = [];
  const socket = helperSocket(sys.root);
  const ops = new InProcessOps(sys.layout, { owner: { uid: OWNER.uid, gid: OWNER.gid } });
  const server = new HelperServer({
    socketPath: socket,
    ops,
    ownerUid: OWNER.uid,
    ownerGid: OWNER.gid,
    version: "test",
    log: (l) => void logs.push(l),
  });
  await server.listen();
  return {
    sys,
    ns,
    socket,
    logs,
    client: new HelperOps({ socketPath: socket, local: new InProcessOps(sys.layout) }),
    async [Symbol.asyncDispose]() {
      await server.close();
      entered[Symbol.dispose]();
      await ns[Symbol.asyncDispose]();
      await sys[Symbol.asyncDispose]();
    },
  };
}

const needs = [root(), programs("setpriv", "ip")];

gatedTest(
  "HelperServer creates banger taps owned by the owner uid, over its socket (root, netns)",
  needs,
  async () => {
    await using h = await running();
    const bridge = `bg-h${crypto.randomUUID().slice(0, 6)}`;
    const tap = `${instanceFor(h.sys.layout.stateDir).tapPrefix}${
      Math.floor(Math.random() * 9999)
    }`;
    assertEquals((await h.client.ping()).owner_uid, OWNER.uid);
    await h.client.ensureBridge({ name: bridge, address: "172.30.9.1/24" });
    await h.client.createTap({ name: tap, bridge });
    const owner = (await h.ns.exec(["cat", `/sys/class/net/${tap}/owner`])).trim();
    assertEquals(owner, String(OWNER.uid));
    assert((await h.client.listTaps()).some((t) => t.name === tap));
    assertEquals(await h.client.deleteTap({ name: tap }), true);
    const socket = await Deno.lstat(h.socket);
    assertEquals([socket.uid, (socket.mode ?? 0) & 0o777], [OWNER.uid, 0o600]);
  },
);

gatedTest(
  "HelperServer refuses tap and bridge requests for names that are not banger's (root, netns)",
  needs,
  async (t) => {
    await using h = await running();
    const refused: [string, () => Promise<unknown>, string][] = [
      [
        "createTap eth0",
        () => h.client.createTap({ name: "eth0", bridge: "bg-br0" }),
        "invalid_argument",
      ],
      [
        "createTap onto docker0",
        () => h.client.createTap({ name: "bg-tap1", bridge: "docker0" }),
        "invalid_argument",
      ],
      [
        "ensureBridge docker0",
        () => h.client.ensureBridge({ name: "docker0", address: "172.17.0.1/16" }),
        "invalid_argument",
      ],
      [
        "ensureBridge with a bad address",
        () => h.client.ensureBridge({ name: "bg-br0", address: "1.2.3/99" }),
        "invalid_argument",
      ],
      ["deleteTap lo", () => h.client.deleteTap({ name: "lo" }), "invalid_argument"],
      [
        "createTap for another uid",
        () => h.client.createTap({ name: "bg-tap1", bridge: "bg-br0", owner: 0 }),
        "permission_denied",
      ],
      [
        "addNat for a bad address",
        () => h.client.addNat({ vmId: "a", guestIp: "300.1.1.1", bridge: "bg-br0" }),
        "invalid_argument",
      ],
      [
        "detachLoop of a non-loop device",
        () => h.client.detachLoop({ path: "/dev/sda" }),
        "invalid_argument",
      ],
      [
        "readProcFile of another process's environ",
        () => h.client.readProcFile({ path: "/proc/1/environ" }),
        "permission_denied",
      ],
    ];
    for (const [name, fn, code] of refused) {
      await t.step(name, async () => {
        const err = await assertRejects(fn, PrivilegedOpsError);
        assertEquals(err.code, code, err.message);
      });
    }
    const links = await h.ns.exec(["ip", "-o", "link", "show"]);
    assertEquals(links.trim().split("\n").length, 1, "only lo exists in the namespace");
  },
);

gatedTest(
  "HelperServer refuses a client uid that is neither root nor the owner (root, setpriv)",
  needs,
  async (t) => {
    await using h = await running();
    await using denoDir = await ownerDenoDir();
    const ping = { op: "ping", op_id: "op-test0001" };
    await t.step("the owner uid is served", async () => {
      assertStringIncludes(
        await callHelperAs(OWNER.uid, h.socket, ping, denoDir.path),
        '"ok":true',
      );
    });
    await t.step("another uid cannot even connect to the 0600 socket", async () => {
      assertStringIncludes(
        await callHelperAs(1, h.socket, ping, denoDir.path),
        "CONNECT-ERROR PermissionDenied",
      );
    });
    await t.step("another uid that gets past the file mode is refused by SO_PEERCRED", async () => {
      await Deno.chmod(h.socket, 0o666);
      const answer = JSON.parse(await callHelperAs(1, h.socket, ping, denoDir.path));
      assertEquals(answer.ok, false);
      assertEquals(answer.error.code, "permission_denied");
      assertStringIncludes(answer.error.message, "uid 1 is neither root nor the owner (uid 65534)");
      assert(h.logs.some((l) => l.includes('"helper rpc refused"') && l.includes('"peer_uid":1')));
    });
  },
);

gatedTest("HelperServer answers malformed requests with a typed error (root)", needs, async (t) => {
  await using h = await running();
  const raw = async (text: string) => {
    const conn = await Deno.connect({ transport: "unix", path: h.socket });
    await conn.write(new TextEncoder().encode(text + "\n"));
    return JSON.parse(await new Response(conn.readable).text());
  };
  const cases: [string, string, string, string][] = [
    ["not JSON", "{nope", "invalid_argument", "Cannot parse the request"],
    ["no op id", JSON.stringify({ op: "ping" }), "invalid_argument", "op_id"],
    [
      "an unknown field",
      JSON.stringify({ op: "ping", op_id: "a", x: 1 }),
      "invalid_argument",
      '"x"',
    ],
    [
      "an unknown op",
      JSON.stringify({ op: "rmRf", op_id: "a" }),
      "invalid_argument",
      "does not offer",
    ],
    [
      "an ext4 op (runs unprivileged in the daemon)",
      JSON.stringify({ op: "writeExt4", op_id: "a", args: {} }),
      "invalid_argument",
      "does not offer",
    ],
    [
      "a path outside banger's dirs",
      JSON.stringify({ op: "rootDiskStrategy", op_id: "a", args: { dir: "/etc" } }),
      "permission_denied",
      "outside banger's directories",
    ],
  ];
  for (const [name, text, code, message] of cases) {
    await t.step(name, async () => {
      const answer = await raw(text);
      assertEquals([answer.ok, answer.error?.code], [false, code]);
      assertStringIncludes(answer.error.message, message);
    });
  }
  await t.step("a request over 4 MiB", async () => {
    const conn = await Deno.connect({ transport: "unix", path: h.socket });
    const big = new TextEncoder().encode(
      `{"op":"ping","op_id":"a","args":"${"x".repeat(5 << 20)}"}\n`,
    );
    for (let at = 0; at < big.length;) at += await conn.write(big.subarray(at));
    const answer = JSON.parse(await new Response(conn.readable).text());
    assertEquals([answer.ok, answer.error.code], [false, "too_large"]);
    assertStringIncludes(answer.error.message, "larger than 4194304 bytes");
  });
});

gatedTest(
  "HelperServer logs one JSON line per call with the op id forwarded by HelperOps (root)",
  needs,
  async () => {
    await using h = await running();
    await opIdScope.run("op-1a2b3c4d", () => h.client.listTaps());
    const line = h.logs.map((l) => JSON.parse(l)).find((l) => l.op === "listTaps");
    assertEquals(
      [line?.msg, line?.op_id, line?.peer_uid, line?.peer_pid],
      ["helper rpc completed", "op-1a2b3c4d", 0, Deno.pid],
    );
  },
);

/**
 * `sh` blocked on stdin, naming `file` in its argv, run through `prefix` (e.g. setpriv);
 * resolves once `sh` itself runs (it prints a line), so the pid is no longer setpriv's.
 */
async function blocker(file: string, prefix: string[] = []): Promise<Deno.ChildProcess> {
  const argv = [...prefix, "sh", "-c", "echo ready; read x; :", "blocker", file];
  const child = new Deno.Command(argv[0], { args: argv.slice(1), stdin: "piped", stdout: "piped" })
    .spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  reader.releaseLock();
  return child;
}

gatedTest(
  "HelperServer probes the host for the owner and signals only the owner's VMMs (root, setpriv)",
  needs,
  async (t) => {
    await using h = await running();
    const vmDir = `${vmsDir(h.sys.layout)}/v1`;
    await Deno.mkdir(vmDir, { recursive: true });
    const asOwner = ["setpriv", `--reuid=${OWNER.uid}`, `--regid=${OWNER.gid}`, "--clear-groups"];
    const rootVmm = await blocker(`${vmDir}/fc.sock`);
    const ownerVmm = await blocker(`${vmDir}/fc.sock`, asOwner);
    try {
      await t.step("probeHost judges /dev/kvm for the owner uid", async () => {
        const facts = await h.client.probeHost({});
        assertEquals(facts.devices.netTun, pathExists("/dev/net/tun"));
        if (facts.kvm.present) {
          const node = Deno.statSync("/dev/kvm");
          const denial = readWriteDenial(
            { mode: node.mode ?? 0, uid: node.uid ?? 0, gid: node.gid ?? 0 },
            { uid: OWNER.uid, gid: OWNER.gid, groups: [] },
          );
          assertEquals(facts.kvm.accessible, denial === undefined, facts.kvm.openError);
        }
      });
      await t.step("a root process naming the VM dir is refused", async () => {
        const err = await assertRejects(
          () => h.client.signalVmm({ pid: rootVmm.pid, signal: "SIGTERM", vmDir }),
          PrivilegedOpsError,
        );
        assertEquals(err.code, "permission_denied");
        assertStringIncludes(err.message, `it runs as uid 0, not as the owner (uid ${OWNER.uid})`);
      });
      await t.step("the owner's VMM is signalled", async () => {
        assertEquals(
          await h.client.signalVmm({ pid: ownerVmm.pid, signal: "SIGTERM", vmDir }),
          true,
        );
        assertEquals((await ownerVmm.status).signal, "SIGTERM");
      });
      await t.step("signals are logged; host probes are not", () => {
        const ops = h.logs.map((l) => JSON.parse(l) as { op?: string; msg: string });
        assert(ops.some((l) => l.op === "signalVmm" && l.msg === "helper rpc completed"));
        assert(ops.some((l) => l.op === "signalVmm" && l.msg === "helper rpc failed"));
        assert(!ops.some((l) => l.op === "probeHost"));
      });
    } finally {
      for (const c of [rootVmm, ownerVmm]) {
        try {
          c.kill("SIGKILL");
        } catch {
          // already gone
        }
        await c.stdout.cancel();
        await c.status;
      }
    }
  },
);
