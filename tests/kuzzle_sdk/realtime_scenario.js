// Kuzzle's own JS SDK, realtime: two clients over WebSocket. Usage:
// node realtime_scenario.js PORT [PORT_B]  (b on another cluster member when PORT_B is given)
// Prints one JSON line per step, as scenario.js.
const { Kuzzle, WebSocket } = require('kuzzle-sdk');

const port = Number(process.argv[2]);
const portB = Number(process.argv[3] || port);
const a = new Kuzzle(new WebSocket('127.0.0.1', { port }));
const b = new Kuzzle(new WebSocket('127.0.0.1', { port: portB }));

function print(entry) {
  console.log(JSON.stringify(entry));
}

async function step(name, fn) {
  try {
    const value = await fn();
    print({ step: name, ok: true, value: value === undefined ? null : value });
  } catch (error) {
    print({ step: name, ok: false, error: { id: error.id, status: error.status, message: error.message } });
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, ms = 5000) {
  const end = Date.now() + ms;
  while (!predicate() && Date.now() < end) {
    await sleep(10);
  }
}

const paid = { equals: { status: 'paid' } };
const inbox = { all: [], out: [], none: [], b: [] };
const strip = (n) => ({
  type: n.type, action: n.action, scope: n.scope, user: n.user, event: n.event,
  index: n.index, collection: n.collection, result: n.result, volatile: n.volatile,
});

(async () => {
  await step('connect', async () => { await a.connect(); await b.connect(); return true; });
  let roomId;
  await step('subscribe', async () => {
    roomId = await a.realtime.subscribe('shop', 'orders', paid,
      (n) => inbox.all.push(strip(n)), { users: 'all', volatile: { who: 'a' } });
    return typeof roomId;
  });
  await step('subscribe out', () => a.realtime.subscribe('shop', 'orders', { exists: 'status' },
    (n) => inbox.out.push(strip(n)), { scope: 'out' }).then((id) => typeof id));
  await step('subscribe none', () => a.realtime.subscribe('shop', 'orders', { exists: 'total' },
    (n) => inbox.none.push(strip(n)), { scope: 'none' }).then((id) => typeof id));
  await step('same room', async () => {
    const other = await b.realtime.subscribe('shop', 'orders', { in: { status: ['paid'] } },
      (n) => inbox.b.push(strip(n)), { volatile: { who: 'b' } });
    return other === roomId;
  });
  await until(() => inbox.all.length >= 1);
  await step('user in', () => inbox.all.shift());
  await step('count', () => b.realtime.count(roomId));
  await step('publish', async () => {
    await b.realtime.publish('shop', 'orders', { status: 'paid', total: 10 }, { _id: 'o-1' });
    await b.realtime.publish('shop', 'orders', { status: 'new', total: 1 });
    return true;
  });
  await until(() => inbox.all.length >= 1 && inbox.b.length >= 1);
  await sleep(200); // nothing else may come
  await step('document', () => inbox.all);
  await step('document to b', () => inbox.b);
  await step('scope out and none', () => [inbox.out.length, inbox.none.length]);
  inbox.all.length = 0;
  await step('unsubscribe', async () => { await b.realtime.unsubscribe(roomId); return true; });
  await until(() => inbox.all.length >= 1);
  await step('user out', () => inbox.all);
  await step('count after', () => a.realtime.count(roomId));
  a.disconnect();
  b.disconnect();
})();
