export * from './errors.js';
export {
  interfaceName,
  netnsName,
  wgKey,
  isWgKey,
  parseCidr,
  formatCidr,
  cidrContains,
  cidrsOverlap,
  ipv4ToInt,
  intToIpv4,
  interfaceAddress,
  endpoint,
  type Cidr,
} from './validate.js';
export { generateKeyPair, publicKeyOf, type WgKeyPair } from './keys.js';
export { run, DEFAULT_COMMAND_TIMEOUT_MS, type RunOptions } from './exec.js';
export {
  configureDevice,
  setPeers,
  setPeersArgv,
  showDevice,
  parseDump,
  addAddress,
  removeAddress,
  addRoute,
  linkUp,
  type WgTarget,
  type PeerSpec,
  type PeerState,
  type DeviceState,
} from './device.js';
export {
  createInterface,
  DEFAULT_INTERFACE_TIMEOUT_MS,
  type WgInterface,
  type WgMode,
  type CreateOptions,
} from './interface.js';
export { createNetns, deleteNetns, linkNetns, netnsSupport } from './netns.js';
export { WgLab, type LabNode } from './lab.js';
export { applyPeerSpecs, type PeerEntry } from './peer-table.js';
export {
  BROWNOUT_PACE,
  CONNECTED,
  serveName,
  startProber,
  startSampling,
  brownoutOf,
  type ProbePace,
  type ProbeSample,
  type Prober,
} from './probe.js';
