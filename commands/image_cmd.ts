/**
 * `banger image …` and `banger kernel …`.
 *
 * @module
 */

import {
  imageCachePrune,
  imageDelete,
  imageList,
  imagePromote,
  imagePull,
  imageRegister,
  imageShow,
  type ImageView,
  kernelImport,
  kernelList,
  kernelPull,
  kernelRemove,
  kernelShow,
  type KernelView,
} from "../daemon/api/image.ts";
import { formatSize, formatSizeShort } from "../daemon/api/size.ts";
import { type CommandDef, Flags, UsageError } from "./command_line.ts";
import { callWithProgress, printJson } from "./call.ts";
import { callDaemon } from "./client/daemon_control.ts";
import type { CliEnv } from "./env.ts";
import { userPath } from "./_paths.ts";
import { renderFields, renderTable } from "./output.ts";

const json = { name: "json", kind: "bool", help: "Print JSON" } as const;

function showImage(env: CliEnv, i: ImageView): void {
  env.out(renderFields([
    ["name", i.name],
    ["id", i.id],
    ["rootfs", i.rootfs],
    ["size", formatSize(i.size_bytes)],
    ["kernel", i.kernel],
    ["source", i.source],
    ["managed", i.managed ? "yes" : "no (banger image promote)"],
    ["guest pieces", i.guest_pieces ? "yes" : "no"],
    ["used by", i.used_by.join(", ") || "-"],
    ["created", i.created_at],
  ]));
}

function showKernel(env: CliEnv, k: KernelView): void {
  env.out(renderFields([
    ["name", k.name],
    ["version", k.version],
    ["vmlinux", k.vmlinux],
    ["initrd", k.initrd ?? "-"],
    ["source", k.source],
    ["sha256", k.sha256],
    ["used by", k.used_by.join(", ") || "-"],
    ["created", k.created_at],
  ]));
}

/** The `image` command group. */
export const imageCommand: CommandDef<CliEnv> = {
  name: "image",
  summary: "Pull and manage root filesystem images",
  description: "An image is a root filesystem (rootfs.ext4) and the kernel it boots with. " +
    "`vm create` pulls the image it needs automatically.",
  subcommands: [
    {
      name: "pull",
      summary: "Pull a catalog image or an OCI image (e.g. docker.io/library/debian:bookworm)",
      args: [{ name: "source" }],
      flags: [
        {
          name: "name",
          kind: "string",
          help: "Name of the image (default: derived from the source)",
        },
        { name: "kernel-ref", kind: "string", help: "Kernel to boot it with", complete: "kernel" },
        {
          name: "size",
          kind: "string",
          placeholder: "SIZE",
          help: "rootfs.ext4 size (OCI; default content × 1.5, ≥ 1G)",
        },
        json,
      ],
      examples: [
        "banger image pull debian-bookworm",
        "banger image pull docker.io/library/alpine:3.20 --name alpine",
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const r = await callWithProgress(env, imagePull, {
          source: inv.args[0],
          name: f.string("name"),
          kernel_ref: f.string("kernel-ref"),
          size: f.string("size"),
        });
        if (f.bool("json")) printJson(env, r);
        else {env.out(
            r.already
              ? `${r.image.name} is already pulled\n`
              : `pulled ${r.image.name} (${formatSize(r.image.size_bytes)})\n`,
          );}
        return 0;
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      summary: "List images (--available: what the catalog offers)",
      flags: [{ name: "available", kind: "bool", help: "List catalog images too" }, json],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const r = await callDaemon(env, imageList, { available: f.bool("available") });
        // Every list prints one JSON array: the rows its table shows.
        if (f.bool("json")) {
          return void printJson(env, f.bool("available") ? r.available : r.images);
        }
        if (f.bool("available")) {
          env.out(
            renderTable(
              ["NAME", "PULLED", "DESCRIPTION"],
              r.available.map((a) => [a.name, a.pulled ? "yes" : "no", a.description]),
            ),
          );
          return 0;
        }
        env.out(renderTable(
          ["NAME", "SIZE", "KERNEL", "SOURCE", "USED BY"],
          r.images.map((
            i,
          ) => [
            i.name,
            formatSizeShort(i.size_bytes),
            i.kernel,
            i.source,
            i.used_by.join(",") || "-",
          ]),
        ));
        return 0;
      },
    },
    {
      name: "show",
      summary: "Show one image",
      args: [{ name: "name", complete: "image" }],
      flags: [json],
      run: async (inv, env) => {
        const i = await callDaemon(env, imageShow, { name: inv.args[0] });
        if (new Flags(inv).bool("json")) printJson(env, i);
        else showImage(env, i);
        return 0;
      },
    },
    {
      name: "delete",
      aliases: ["rm"],
      summary: "Delete an image (refused while a VM uses it)",
      args: [{ name: "name", complete: "image" }],
      run: async (inv, env) => {
        await callDaemon(env, imageDelete, { name: inv.args[0] });
        env.out(`deleted ${inv.args[0]}\n`);
        return 0;
      },
    },
    {
      name: "register",
      summary: "Use an existing rootfs in place (unmanaged)",
      flags: [
        { name: "name", kind: "string", help: "Image name (required)" },
        {
          name: "rootfs",
          kind: "string",
          help: "Path of an ext4 root filesystem (required)",
          complete: "file",
        },
        { name: "kernel-ref", kind: "string", help: "Boot with this kernel", complete: "kernel" },
        { name: "kernel", kind: "string", help: "Boot with this kernel file", complete: "file" },
        { name: "initrd", kind: "string", help: "Initrd for --kernel", complete: "file" },
      ],
      examples: [
        "banger image register --name mine --rootfs /srv/rootfs.ext4 --kernel-ref debian-6.1-cloud",
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const name = f.string("name");
        const rootfs = f.string("rootfs");
        if (!name || !rootfs) {
          throw new UsageError('"banger image register" needs --name and --rootfs', [
            "image",
            "register",
          ]);
        }
        const i = await callDaemon(env, imageRegister, {
          name,
          rootfs: absolute(rootfs),
          kernel_ref: f.string("kernel-ref"),
          kernel: optAbsolute(f.string("kernel")),
          initrd: optAbsolute(f.string("initrd")),
        });
        env.out(`registered ${i.name}\n`);
        return 0;
      },
    },
    {
      name: "promote",
      summary: "Copy a registered image's files into banger's store",
      args: [{ name: "name", complete: "image" }],
      run: async (inv, env) => {
        const i = await callWithProgress(env, imagePromote, { name: inv.args[0] });
        env.out(`promoted ${i.name} (${i.rootfs})\n`);
        return 0;
      },
    },
    {
      name: "cache",
      summary: "Manage the OCI blob cache",
      subcommands: [{
        name: "prune",
        summary: "Delete cached OCI blobs",
        flags: [{ name: "dry-run", kind: "bool", help: "Only say what would be freed" }],
        run: async (inv, env) => {
          const dry = new Flags(inv).bool("dry-run");
          const r = await callDaemon(env, imageCachePrune, { dry_run: dry });
          env.out(
            `${dry ? "would free" : "freed"} ${
              formatSize(r.bytes)
            } across ${r.files} blob(s) in ${r.dir}\n`,
          );
          return 0;
        },
      }],
    },
  ],
};

/** The `kernel` command group. */
export const kernelCommand: CommandDef<CliEnv> = {
  name: "kernel",
  summary: "Pull and manage guest kernels",
  subcommands: [
    {
      name: "pull",
      summary: "Pull a kernel from the catalog",
      args: [{ name: "name", complete: "kernel" }],
      flags: [json],
      examples: ["banger kernel pull debian-6.1-cloud"],
      run: async (inv, env) => {
        const r = await callWithProgress(env, kernelPull, { name: inv.args[0] });
        if (new Flags(inv).bool("json")) printJson(env, r);
        else {env.out(
            r.already
              ? `${r.kernel.name} is already pulled\n`
              : `pulled ${r.kernel.name} (${r.kernel.version})\n`,
          );}
        return 0;
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      summary: "List kernels (--available: what the catalog offers)",
      flags: [{ name: "available", kind: "bool", help: "List catalog kernels too" }, json],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const r = await callDaemon(env, kernelList, { available: f.bool("available") });
        if (f.bool("json")) {
          return void printJson(env, f.bool("available") ? r.available : r.kernels);
        }
        if (f.bool("available")) {
          env.out(
            renderTable(
              ["NAME", "PULLED", "DESCRIPTION"],
              r.available.map((a) => [a.name, a.pulled ? "yes" : "no", a.description]),
            ),
          );
          return 0;
        }
        env.out(
          renderTable(
            ["NAME", "VERSION", "INITRD", "USED BY"],
            r.kernels.map((
              k,
            ) => [k.name, k.version, k.initrd ? "yes" : "no", k.used_by.join(",") || "-"]),
          ),
        );
        return 0;
      },
    },
    {
      name: "show",
      summary: "Show one kernel",
      args: [{ name: "name", complete: "kernel" }],
      flags: [json],
      run: async (inv, env) => {
        const k = await callDaemon(env, kernelShow, { name: inv.args[0] });
        if (new Flags(inv).bool("json")) printJson(env, k);
        else showKernel(env, k);
        return 0;
      },
    },
    {
      name: "rm",
      aliases: ["delete"],
      summary: "Remove a kernel (refused while an image uses it)",
      args: [{ name: "name", complete: "kernel" }],
      run: async (inv, env) => {
        await callDaemon(env, kernelRemove, { name: inv.args[0] });
        env.out(`removed ${inv.args[0]}\n`);
        return 0;
      },
    },
    {
      name: "import",
      summary: "Publish a kernel from a directory holding vmlinux (and initrd.img)",
      args: [{ name: "name" }],
      flags: [{
        name: "from",
        kind: "string",
        help: "Directory with vmlinux (required)",
        complete: "dir",
      }],
      run: async (inv, env) => {
        const from = new Flags(inv).string("from");
        if (!from) {
          throw new UsageError('"banger kernel import" needs --from DIR', ["kernel", "import"]);
        }
        const k = await callDaemon(env, kernelImport, { name: inv.args[0], from: absolute(from) });
        env.out(`imported ${k.name}\n`);
        return 0;
      },
    },
  ],
};

function absolute(path: string): string {
  return userPath(path);
}

function optAbsolute(path: string | undefined): string | undefined {
  return path === undefined ? undefined : absolute(path);
}
