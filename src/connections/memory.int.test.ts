import { MemoryConnectionRegistry } from './memory';
import { describeConnectionRegistry } from './registry.contract';

describeConnectionRegistry('memory', async () => {
  const registry = new MemoryConnectionRegistry();
  return { registry, cleanup: () => registry.close() };
});
