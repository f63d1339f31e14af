import { runService } from '@ccm/runtime';
import { sagaCoordinator } from './app.js';

await runService(sagaCoordinator);
