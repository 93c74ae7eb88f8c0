// A client process of the load generator: runs the users it is given and
// reports progress and records to its parent over IPC.
import { runDriver } from './driver';
import type { DriverMessage, ParentMessage } from './fleet';

const send = (m: DriverMessage) => process.send?.(m);

process.on('message', (m: ParentMessage) => {
  if (m.type !== 'run') return;
  runDriver(m.plan, (progress) => send({ type: 'progress', progress })).then(
    (result) => process.send?.({ type: 'result', result } satisfies DriverMessage, () => process.exit(0)),
    (err) => {
      send({ type: 'failed', error: String(err?.stack ?? err) });
      process.exit(1);
    },
  );
});
send({ type: 'ready' });
