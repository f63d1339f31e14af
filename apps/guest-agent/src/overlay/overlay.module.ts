import { GuestOverlay } from './guest-overlay.service.js';
import { GuestOverlayCommands } from './overlay-commands.handler.js';

/** The guest side of the overlay (docs/network-overlay.md, "Inside the guest"). */
export const overlayProviders = [GuestOverlay, GuestOverlayCommands];
