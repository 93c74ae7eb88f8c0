import { MemoryBus } from './memory';
import { describeBus } from './bus.contract';

describeBus('memory', async () => {
  const bus = new MemoryBus();
  return { a: bus, b: bus, cleanup: () => bus.close() };
});
