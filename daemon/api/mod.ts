/**
 * The daemon's wire API: every RPC method with its request and response schema, grouped
 * in `daemon/api/*.ts`. The CLI imports the group files it needs (cheap to load) and the
 * protocol; the server routes on {@linkcode METHODS}.
 *
 * @module
 */

import { methodTable } from "./protocol.ts";
import { daemonShutdown, daemonStatus } from "./daemon.ts";
import * as image from "./image.ts";
import * as vm from "./vm.ts";
import * as workspace from "./workspace.ts";

export * from "./protocol.ts";
export * from "./daemon.ts";
export * from "./image.ts";
export * from "./vm.ts";
export * from "./workspace.ts";
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
  vm.vmPortPublish,
  vm.vmPortUnpublish,
  vm.vmPortList,
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
