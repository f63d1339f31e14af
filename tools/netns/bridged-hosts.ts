/** Hosts as network namespaces on a bridge: the helper lives in libs/testing, where specs of apps reach it too. */
export {
  bridgedHostsUnavailable,
  createBridgedHosts,
  type BridgedHost,
  type BridgedHosts,
} from '@ccm/testing';
