/**
 * The owner against the root helper: a real non-root process (the owner uid, through
 * setpriv) sends each attack over the helper's socket, or swaps files under the helper in
 * a loop, and every attack must be refused with a clear error and leave nothing behind.
 */
import { HelperServer } from "../../../host/helper/server.ts";
import { InProcessOps } from "../../../host/privileged/in_process_ops.ts";
import { helperSocket, vmsDir } from "../../../host/layout.ts";
import { instanceFor } from "../../../host/instance.ts";
import { listLoops } from "../../../host/disk/loop.ts";
import { assert, assertEquals } from "../../fixtures/assert.ts";
import { Netns } from "../../fixtures/netns.ts";
import { gatedTest, programs, root } from "../../fixtures/requires.ts";
import { callHelperAs, OWNER, ownerDenoDir, systemRoot } from "../../fixtures/system_root.ts";

gatedTest(
  "the owner, as a non-root process, is refused every attack on the helper and leaves nothing behind (root, netns, setpriv)",
  [root(), programs("setpriv", "ip", "nft")],
  async (t) => {
    await using sys = await systemRoot();
    await using ns = await Netns.create();
    await using denoDir = await ownerDenoDir();
    const entered = ns.enter();
    const network = {
      bridgeName: "bg-bra",
      bridgeIp: "172.30.40.1",
      cidr: "172.30.40.0/24",
    };
    const socket = helperSocket(sys.root);
    const server = new HelperServer({
      socketPath: socket,
      ops: new InProcessOps(sys.layout, { owner: { uid: OWNER.uid, gid: OWNER.gid }, network }),
      ownerUid: OWNER.uid,
      ownerGid: OWNER.gid,
      version: "adversarial",
      log: () => {},
    });
    await server.listen();
    const mine = instanceFor(sys.layout.stateDir);
    const theirs = instanceFor("/var/lib/another-banger");
    const state = sys.layout.stateDir;
    const vms = vmsDir(sys.layout);
    const secret = `${sys.root}/secret`;
    const asOwner = async (argv: string[]) => {
      const out = await new Deno.Command("setpriv", {
        args: [`--reuid=${OWNER.uid}`, `--regid=${OWNER.gid}`, "--clear-groups", ...argv],
        env: { DENO_DIR: denoDir.path },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout).trim();
    };
    const call = async (op: string, args: unknown) =>
      JSON.parse(await callHelperAs(OWNER.uid, socket, { op, args }, denoDir.path)) as {
        ok: boolean;
        error?: { code: string; message: string };
      };
    try {
      await Deno.writeTextFile(secret, "root only", { mode: 0o600 });
      await Deno.mkdir(vms, { recursive: true });
      await Deno.mkdir(`${state}/images/i`, { recursive: true });
      await Deno.chown(vms, OWNER.uid, OWNER.gid);
      await Deno.chown(`${state}/images`, OWNER.uid, OWNER.gid);
      await Deno.chown(`${state}/images/i`, OWNER.uid, OWNER.gid);
      await Deno.writeFile(`${state}/images/i/rootfs.ext4`, new Uint8Array(1 << 20));
      await Deno.chown(`${state}/images/i/rootfs.ext4`, OWNER.uid, OWNER.gid);
      // Another instance's tap on the host, which the owner must not delete or guard.
      await ns.exec(["ip", "tuntap", "add", "dev", `${theirs.tapPrefix}0`, "mode", "tap"]);
      // What the owner plants in its own directories.
      await asOwner(["sh", "-c", `mkdir -p "${vms}/a" && ln -s "${secret}" "${vms}/a/root.ext4"`]);
      await asOwner(["ln", "-s", secret, `${state}/images/i/link.ext4`]);
      const loopOfSecret = new Deno.Command("losetup", {
        args: ["-f", "--show", secret],
        stdout: "piped",
      })
        .outputSync();
      const secretLoop = new TextDecoder().decode(loopOfSecret.stdout).trim();
      const attacks: [string, string, unknown][] = [
        ["another instance's tap name", "createTap", {
          name: `${theirs.tapPrefix}1`,
          bridge: "bg-bra",
        }],
        ["deleting another instance's tap", "deleteTap", { name: `${theirs.tapPrefix}0` }],
        ["guarding another instance's tap", "guardTap", {
          vmId: "v1",
          tap: `${theirs.tapPrefix}0`,
          guestIp: "172.30.40.2",
          mac: "06:00:ac:1e:28:02",
        }],
        ["the LAN gateway's address on its bridge", "ensureBridge", {
          name: "bg-bra",
          address: "192.168.1.1/24",
        }],
        ["NAT for a source outside its CIDR", "addNat", {
          vmId: "v1",
          guestIp: "10.1.2.3",
          bridge: "bg-bra",
        }],
        ["a tap for root's group", "createTap", {
          name: `${mine.tapPrefix}1`,
          bridge: "bg-bra",
          group: 0,
        }],
        ["a copy of root's file planted as root.ext4", "createRootDisk", {
          id: "a",
          baseImage: `${state}/images/i/rootfs.ext4`,
          vmDir: `${vms}/a`,
          cowBytes: 1 << 20,
        }],
        ["root's file as the base image, through a symlink", "createRootDisk", {
          id: "b",
          baseImage: `${state}/images/i/link.ext4`,
          vmDir: `${vms}/b`,
          cowBytes: 1 << 20,
        }],
        ["detaching a loop of root's file", "detachLoop", { path: secretLoop }],
        ["reading root's files", "readProcFile", { path: "/etc/shadow" }],
        ["signalling init", "signalVmm", { pid: 1, signal: "SIGKILL", vmDir: `${vms}/a` }],
      ];
      for (const [what, op, args] of attacks) {
        await t.step(what, async () => {
          const answer = await call(op, args);
          assertEquals(answer.ok, false, `${what}: ${JSON.stringify(answer)}`);
          assert(
            ["permission_denied", "invalid_argument", "failed_precondition"].includes(
              answer.error?.code ?? "",
            ),
            `${what}: ${JSON.stringify(answer.error)}`,
          );
          assert((answer.error?.message ?? "").startsWith("Cannot "), answer.error?.message);
        });
      }
      const links =
        (JSON.parse(await ns.exec(["ip", "-j", "link", "show"])) as { ifname: string }[])
          .map((l) => l.ifname).sort();
      assertEquals(
        links,
        [`${theirs.tapPrefix}0`, "lo"],
        "no bridge or tap was made, theirs survives",
      );
      assertEquals(await Deno.readTextFile(secret), "root only");
      assertEquals(
        [...Deno.readDirSync(`${vms}/a`)].map((e) => e.name),
        ["root.ext4"],
        "nothing copied",
      );
      assertEquals(await Deno.lstat(`${vms}/b`).then(() => true, () => false), false);
      assert(listLoops().some((l) => l.path === secretLoop), "root's loop is still attached");
      new Deno.Command("losetup", { args: ["-d", secretLoop] }).outputSync();
      const tables = await ns.exec(["nft", "list", "tables"]);
      assertEquals(tables.trim(), "", "no nftables table was made");
    } finally {
      await server.close();
      entered[Symbol.dispose]();
    }
  },
);
