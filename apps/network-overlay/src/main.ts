import { runService } from '@ccm/runtime';
import { networkOverlay } from './app.js';

await runService(networkOverlay);
