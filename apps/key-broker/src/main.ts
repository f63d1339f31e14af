import { runService } from '@ccm/runtime';
import { keyBroker } from './app.js';

await runService(keyBroker);
