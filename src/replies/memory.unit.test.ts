import { MemoryReplyClaims } from './memory';
import { CONTRACT_DEAD_AFTER_MS, describeReplyClaims } from './claims.contract';

describeReplyClaims('memory', async () => ({ claims: new MemoryReplyClaims({ deadAfterMs: CONTRACT_DEAD_AFTER_MS }), cleanup: async () => {} }));
