/**
 * The RPC method → service call table. Handlers only translate: wire request in, service
 * call, view out. Rules live in the services.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { BangerError } from "../../host/errors.ts";
import type { METHODS } from "../api/mod.ts";
import type { BulkResult } from "../api/vm.ts";
import type { DaemonStatus } from "../api/daemon.ts";
import type { Handlers } from "./server.ts";
import type { DaemonServices } from "../services.ts";
import { guestHealth, inspectVm, readLogs, sshInvocation, vmStats } from "../vm/inspect.ts";
import { guestPorts } from "../vm/ports.ts";
import { publishedView, publishPort, unpublishPort } from "../vm/port_publishing.ts";
import { resolveVmRef } from "../vm/spec.ts";
import { imageView, kernelView } from "../vm/views.ts";
import type { BulkOutcome } from "../vm/vm_service.ts";

/** The services the handlers call, and the daemon's own status and shutdown. */
export type HandlerServices =
  & Pick<
    DaemonServices,
    "layout" | "images" | "blobs" | "kernels" | "vms" | "vmDeps" | "workspaces" | "sshConfig"
  >
  & {
    status(opId: string): DaemonStatus;
    shutdown(force: boolean, opId: string): { pid: number };
  };

/** Every daemon method's implementation. */
export function buildHandlers(s: HandlerServices): Handlers<typeof METHODS> {
  const bulk = async (outcomes: Promise<BulkOutcome[]>, opId: string): Promise<BulkResult> => ({
    op_id: opId,
    results: await Promise.all((await outcomes).map(async (o) => {
      if (o.error !== undefined || !o.vm) {
        const e = o.error;
        return {
          ref: o.ref,
          ok: false,
          error: errorBody(e),
        };
      }
      return { ref: o.ref, ok: true, vm: await inspectVm(o.vm, s.vmDeps) };
    })),
  });
  const afterChange = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } finally {
      await s.sshConfig.refresh().catch(() => {});
    }
  };
  return {
    "daemon.status": (_req, ctx) => Promise.resolve(s.status(ctx.opId)),
    "daemon.shutdown": (req, ctx) => Promise.resolve(s.shutdown(req.force ?? false, ctx.opId)),

    "image.pull": async (req, ctx) => {
      const { image, already } = await s.images.pull(
        { source: req.source, name: req.name, kernelRef: req.kernel_ref, size: req.size },
        ctx,
      );
      return { image: imageView(image, s.images.usedBy(image)), already };
    },
    "image.list": async (req, ctx) => ({
      images: s.images.list().map((i) => imageView(i, s.images.usedBy(i))),
      available: req.available ? await s.images.available(ctx.signal) : [],
    }),
    "image.show": (req) => {
      const image = s.images.get(req.name);
      return Promise.resolve(imageView(image, s.images.usedBy(image)));
    },
    "image.delete": async (req, ctx) => {
      await s.images.delete(req.name, ctx);
      return { name: req.name };
    },
    "image.register": async (req, ctx) => {
      const image = await s.images.register({
        name: req.name,
        rootfs: req.rootfs,
        kernelRef: req.kernel_ref,
        kernel: req.kernel,
        initrd: req.initrd,
      }, ctx);
      return imageView(image, []);
    },
    "image.promote": async (req, ctx) => {
      const image = await s.images.promote(req.name, ctx);
      return imageView(image, s.images.usedBy(image));
    },
    "image.cache.prune": (req) => s.blobs.prune(req.dry_run ?? false),

    "kernel.pull": async (req, ctx) => {
      const { kernel, already } = await s.kernels.pull(req.name, ctx);
      return { kernel: kernelView(kernel, s.kernels.usedBy(kernel.name)), already };
    },
    "kernel.list": async (req, ctx) => ({
      kernels: s.kernels.list().map((k) => kernelView(k, s.kernels.usedBy(k.name))),
      available: req.available ? await s.kernels.available(ctx.signal) : [],
    }),
    "kernel.show": (req) => {
      const k = s.kernels.get(req.name);
      return Promise.resolve(kernelView(k, s.kernels.usedBy(k.name)));
    },
    "kernel.rm": async (req, ctx) => {
      await s.kernels.remove(req.name, ctx);
      return { name: req.name };
    },
    "kernel.import": async (req, ctx) => {
      const k = await s.kernels.import(req.name, req.from, ctx);
      return kernelView(k, []);
    },

    "vm.create": (req, ctx) =>
      afterChange((async () => inspectVm(await s.vms.create(req, ctx), s.vmDeps))()),
    "vm.list": async () => ({
      vms: await Promise.all(s.vms.list().map((v) => inspectVm(v, s.vmDeps))),
    }),
    "vm.show": (req) => inspectVm(s.vms.find(req.ref), s.vmDeps),
    "vm.start": (req, ctx) => bulk(s.vms.start(req.refs, ctx), ctx.opId),
    "vm.stop": (req, ctx) => bulk(s.vms.stop(req.refs, ctx), ctx.opId),
    "vm.restart": (req, ctx) => bulk(s.vms.restart(req.refs, ctx), ctx.opId),
    "vm.kill": (req, ctx) => bulk(s.vms.kill(req.refs, req.signal ?? "SIGKILL", ctx), ctx.opId),
    "vm.delete": (req, ctx) =>
      afterChange(bulk(s.vms.delete(req.refs, ctx, { refuseRunning: !req.force }), ctx.opId)),
    "vm.prune": async (_req, ctx) => ({ deleted: await afterChange(s.vms.prune(ctx)) }),
    "vm.set": (req, ctx) => bulk(s.vms.set(req.refs, req, ctx), ctx.opId),
    "vm.logs": (req) => readLogs(s.vms.find(req.ref), req),
    "vm.stats": (req) => vmStats(s.vms.find(req.ref), s.vmDeps),
    "vm.ssh": async (req) => {
      const vm = s.vms.find(req.ref);
      return {
        argv: sshInvocation(vm, s.vmDeps, req),
        vm: await inspectVm(vm, s.vmDeps),
        warnings: [],
      };
    },
    "ssh_config.update": (req) => s.sshConfig.update(req.home, req.action),

    "vm.workspace.prepare": (req, ctx) =>
      s.workspaces.prepare({
        ref: req.ref,
        hostPath: req.path,
        dryRun: req.dry_run,
        includeUntracked: req.include_untracked,
        readonly: req.readonly,
        mode: req.mode,
        branch: req.branch,
        from: req.from,
        guestPath: req.guest_path,
      }, ctx),
    "vm.workspace.export": async (req, ctx) => {
      const r = await s.workspaces.export({
        ref: req.ref,
        baseCommit: req.base_commit,
        guestPath: req.guest_path,
      }, ctx);
      return {
        patch_base64: Buffer.from(r.patch).toString("base64"),
        bytes: r.patch.length,
        base_commit: r.baseCommit,
        guest_path: r.guestPath,
      };
    },
    "vm.exec": async (req, ctx) => {
      const r = await s.workspaces.exec({
        ref: req.ref,
        command: req.command,
        guestPath: req.guest_path,
        autoPrepare: req.auto_prepare,
        tty: req.tty,
      }, ctx);
      return {
        argv: r.argv,
        vm: await inspectVm(r.vm, s.vmDeps),
        warnings: r.warnings,
        guest_path: r.guestPath,
      };
    },
    "vm.ports": async (req) => {
      const snapshot = s.vms.list();
      return {
        results: await Promise.all(req.refs.map(async (ref) => {
          try {
            const vm = resolveVmRef(snapshot, ref);
            return { ref, ok: true, vm: vm.name, ports: await guestPorts(vm, s.vmDeps) };
          } catch (e) {
            return { ref, ok: false, error: errorBody(e) };
          }
        })),
      };
    },
    "vm.health": (req) => guestHealth(s.vms.find(req.ref), s.vmDeps),
    "vm.port.publish": async (req, ctx) =>
      publishedView(await publishPort(s.vms, s.vmDeps, req.ref, req.publish, ctx), s.vmDeps),
    "vm.port.unpublish": async (req, ctx) =>
      publishedView(
        await unpublishPort(s.vms, s.vmDeps, req.ref, req.host_port, req.proto, ctx),
        s.vmDeps,
      ),
    "vm.port.list": (req) => Promise.resolve(publishedView(s.vms.find(req.ref), s.vmDeps)),
  };
}

function errorBody(e: unknown): { code: string; message: string; hint?: string } {
  return e instanceof BangerError
    ? { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }
    : { code: "internal", message: e instanceof Error ? e.message : String(e) };
}
