/**
 * The daemon's wire API: every RPC method with its request and response schema, grouped
 * in `daemon/api/*.ts`. The CLI imports the group files it needs (cheap to load) and the
 * protocol; the server routes on {@linkcode METHODS}.
 *
 * @module
 */

import { methodTable } from "./rpc_protocol.ts";
import { daemonShutdown, daemonStatus } from "./api/daemon.ts";
import * as image from "./api/image.ts";
import * as vm from "./api/vm.ts";
import * as workspace from "./api/workspace.ts";

export * from "./rpc_protocol.ts";
export * from "./api/daemon.ts";
export * from "./api/image.ts";
export * from "./api/vm.ts";
export * from "./api/workspace.ts";
export { formatSize, formatSizeShort, parseSize } from "./size.ts";

/** Every method the daemon serves, by name. */
export const METHODS = methodTable(
  daemonStatus,
  daemonShutdown,
  image.imagePull,
  image.imageList,
  image.imageShow,
  image.imageDelete,
  image.imageRegister,
  image.imagePromote,
  image.imageCachePrune,
  image.kernelPull,
  image.kernelList,
  image.kernelShow,
  image.kernelRemove,
  image.kernelImport,
  vm.vmCreate,
  vm.vmList,
  vm.vmShow,
  vm.vmStart,
  vm.vmStop,
  vm.vmRestart,
  vm.vmKill,
  vm.vmDelete,
  vm.vmPrune,
  vm.vmSet,
  vm.vmLogs,
  vm.vmStats,
  vm.vmSsh,
  vm.sshConfigUpdate,
  workspace.vmWorkspacePrepare,
  workspace.vmWorkspaceExport,
  workspace.vmExec,
  workspace.vmPorts,
  workspace.vmHealth,
);

/** Names of all methods. */
export type MethodName = keyof typeof METHODS;
