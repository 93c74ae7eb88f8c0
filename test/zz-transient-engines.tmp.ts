import { PrivateFerretDb, PrivateKafka, PrivateNats } from '/work/wt-transient/test/private-engines';
(async () => {
  const f = await PrivateFerretDb.create(); await f.start();
  const k = await PrivateKafka.create(); await k.start();
  const n = await PrivateNats.create(); await n.start();
  console.log(`export MONGODB_URI=${f.uri} KAFKA_BROKERS=${k.brokers} NATS_URL=${n.url}`);
  const stop = async () => { await f.remove(); await k.remove(); await n.remove(); process.exit(0); };
  process.on('SIGTERM', stop); process.on('SIGINT', stop);
  setInterval(() => {}, 1000);
})();
