import { MemoryReadStore } from './memory';
import { describeReadStore } from './readstore.contract';

describeReadStore('memory', async () => ({ store: new MemoryReadStore(), cleanup: async () => {} }));
