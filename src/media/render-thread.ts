import { parentPort } from 'node:worker_threads';
import { renderTask, type RenderReply, type RenderTask } from './renderer';

// Entry of a media render thread (see renderer.ts): one task at a time, the
// bytes transferred back rather than cloned.
parentPort?.on('message', ({ id, task }: { id: number; task: RenderTask }) => {
  let reply: RenderReply;
  try {
    const result = renderTask(task);
    // A copy the thread owns outright, so it can be transferred.
    const bytes = new Uint8Array(result.bytes);
    reply = { id, ok: true, result: { ...result, bytes: bytes as Buffer } };
    parentPort!.postMessage(reply, [bytes.buffer]);
  } catch (err) {
    reply = { id, ok: false, message: err instanceof Error ? err.message : String(err) };
    parentPort!.postMessage(reply);
  }
});
