/**
 * Fuzzes every helper operation's argument schema over the helper's socket, against the
 * real `InProcessOps` in owner mode inside a fresh network namespace: valid bodies (found
 * from `PRIVILEGED_OP_ARGS`) and seeded mutations, with paths aimed inside banger's
 * directories, at a sentinel tree outside them, and through a symlink planted in a
 * managed directory. Every answer must be a result or a typed error with a message (a
 * body the schema refuses: `invalid_argument`), and the sentinel tree must be untouched.
 */
import { HelperServer } from "../../../host/helper/server.ts";
import { HELPER_OPS } from "../../../host/helper/protocol.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import { helperSocket } from "../../../host/layout.ts";
import { PRIVILEGED_OP_ARGS } from "../../../host/privileged/privileged_ops.ts";
import { assert, assertEquals } from "../../fixtures/assert.ts";
import { discoverValid, fuzzSeed, mutatedBodies, seededRandom } from "../../fixtures/fuzz.ts";
import { Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { OWNER, systemRoot } from "../../fixtures/system_root.ts";

const seed = fuzzSeed();

async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      const st = await Deno.lstat(p);
      const data = st.isFile ? await Deno.readTextFile(p) : "";
      out.push(`${p} ${st.mode} ${st.uid} ${st.size} ${st.mtime?.getTime()} ${data}`);
      if (st.isDirectory) await walk(p);
    }
  };
  await walk(dir);
  return out.sort();
}

gatedTest(
  `HelperServer answers every fuzzed request with a result or a typed error and never touches files outside banger's dirs (root, netns, seed ${seed})`,
  [root(), programs("ip", "nft")],
  async () => {
    await using sys = await systemRoot();
    await using ns = await Netns.create();
    const entered = ns.enter();
    const sentinel = await Deno.makeTempDir({ dir: "/tmp", prefix: "bgs-sentinel-" });
    const state = sys.layout.stateDir;
    const server = new HelperServer({
      socketPath: helperSocket(sys.root),
      ops: new InProcessOps(sys.layout, { owner: { uid: OWNER.uid, gid: OWNER.gid } }),
      ownerUid: OWNER.uid,
      ownerGid: OWNER.gid,
      version: "fuzz",
      log: () => {},
    });
    try {
      await Deno.writeTextFile(`${sentinel}/file`, "sentinel");
      await Deno.mkdir(`${sentinel}/dir`);
      await Deno.writeTextFile(`${sentinel}/dir/root.ext4`, "sentinel disk");
      await Deno.mkdir(`${state}/vms/real`, { recursive: true });
      await Deno.mkdir(`${state}/images/i`, { recursive: true });
      await Deno.writeFile(`${state}/images/i/rootfs.ext4`, new Uint8Array(1 << 20));
      await Deno.symlink(`${sentinel}/dir`, `${state}/vms/evil`);
      const before = await snapshot(sentinel);
      await server.listen();
      const paths = [
        `${state}/vms/real`,
        `${state}/images/i/rootfs.ext4`,
        `${state}/vms/new1`,
        `${state}/vms/evil`,
        `${state}/vms/evil/root.ext4`,
        `${sentinel}/file`,
        `${sentinel}/dir`,
        "/etc/passwd",
        `${state}/../../../etc`,
      ];
      const strings = (path: string, expected: string, i: number): string => {
        if (/absolute path/.test(expected)) return paths[i % paths.length];
        if (/tap name/.test(expected)) return `bg-tapfz${i % 3}`;
        if (/bridge name/.test(expected)) return "bg-fz";
        if (/interface address/.test(expected)) return "172.29.0.1/24";
        if (/CIDR/.test(expected)) return "172.29.0.0/24";
        if (/MAC/.test(expected)) return "06:00:ac:1d:00:02";
        if (/IPv4/.test(expected)) return "172.29.0.2";
        if (/loop device/.test(expected)) return "/dev/loop7";
        if (/dm name/.test(expected)) return "bg-root-fz1";
        if (/device \/dev\/dm-N/.test(expected)) return "/dev/dm-0";
        if (path.endsWith("path")) return `/proc/${Deno.pid}/stat`;
        return ["fz1", "fz-2"][i % 2];
      };
      const rng = seededRandom(seed);
      const counts = { ok: 0, refused: 0 };
      for (const op of HELPER_OPS) {
        const schema = PRIVILEGED_OP_ARGS[op];
        const valid = discoverValid(schema, strings);
        assert(valid !== undefined, `found valid arguments for ${op}`);
        for (const body of [JSON.stringify(valid), ...mutatedBodies(valid, rng, 30)]) {
          let schemaOk = true;
          try {
            schema.parse(JSON.parse(body === "" ? "{}" : body), "");
          } catch {
            schemaOk = false;
          }
          const args = body === "" ? "{}" : body;
          const conn = await Deno.connect({ transport: "unix", path: helperSocket(sys.root) });
          const line = `{"op":"${op}","op_id":"op-fuzz","args":${args}}\n`;
          const bytes = new TextEncoder().encode(line);
          for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
          const text = await new Response(conn.readable).text();
          const where = `${op} ${args.slice(0, 150)} → ${text.slice(0, 300)}`;
          let answer: { ok: boolean; error?: { code: string; message: string } };
          try {
            answer = JSON.parse(text);
          } catch {
            // A body that is not JSON makes the whole request line unparseable.
            throw new Error(`no JSON answer: ${where}`);
          }
          if (answer.ok) counts.ok++;
          else {
            counts.refused++;
            assert(
              typeof answer.error?.message === "string" && answer.error.message.length > 0,
              where,
            );
            if (!schemaOk) assertEquals(answer.error?.code, "invalid_argument", where);
          }
        }
      }
      assertEquals(await snapshot(sentinel), before, "the sentinel tree is untouched");
      const links = (await ns.exec(["ip", "-o", "link", "show"])).trim().split("\n")
        .map((l) => l.split(": ")[1].split("@")[0]);
      assert(links.every((l) => l === "lo" || l.startsWith("bg-")), links.join(", "));
      assert(counts.ok > 0 && counts.refused > 0, JSON.stringify(counts));
    } finally {
      await server.close();
      entered[Symbol.dispose]();
      await Deno.remove(sentinel, { recursive: true });
    }
  },
);
