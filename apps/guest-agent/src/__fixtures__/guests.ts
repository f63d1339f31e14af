export {
  ccmFailure as typedFailure,
  guestClient,
  startGuest,
  tamperingProxy,
  type GuestClient,
  type GuestProcess,
  type Tamper,
} from '@ccm/testing';
