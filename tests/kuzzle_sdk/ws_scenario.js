// Kuzzle's own JS SDK against the gateway, over WebSocket. Usage: node ws_scenario.js PORT
// Prints one JSON line per step, as scenario.js. At the step "restart-me" the test restarts the
// gateway; the SDK must reconnect by itself.
const { Kuzzle, WebSocket } = require('kuzzle-sdk');

const port = Number(process.argv[2]);
const kuzzle = new Kuzzle(new WebSocket('127.0.0.1', { port, reconnectionDelay: 300 }));

function print(entry) {
  console.log(JSON.stringify(entry));
}

async function step(name, fn) {
  try {
    const value = await fn();
    print({ step: name, ok: true, value: value === undefined ? null : value });
  } catch (error) {
    print({ step: name, ok: false, error: { id: error.id, status: error.status, message: error.message, class: error.constructor && error.constructor.name } });
  }
}

(async () => {
  await step('connect', () => kuzzle.connect());
  await step('protocol', () => kuzzle.protocol.constructor.name);
  await step('now', () => kuzzle.server.now());
  await step('anonymous create', () => kuzzle.query({ controller: 'notes/notes', action: 'create', body: { text: 'x' } }));
  await step('login', async () => typeof (await kuzzle.auth.login('local', { username: 'alice', password: 'alice-password' })));
  await step('getCurrentUser', async () => (await kuzzle.auth.getCurrentUser())._id);
  await step('create', async () => (await kuzzle.query({ controller: 'notes/notes', action: 'create', body: { text: 'over websocket' } })).result._source.text);
  await step('unknown action', () => kuzzle.query({ controller: 'auth', action: 'noSuchAction' }));
  await step('restart', () => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reconnection within 30s')), 30000);
    kuzzle.once('reconnected', () => { clearTimeout(timer); resolve(true); });
    print({ step: 'restart-me', ok: true, value: null });
  }));
  await step('create after restart', async () => (await kuzzle.query({ controller: 'notes/notes', action: 'create', body: { text: 'again' } })).result._source.text);
  await step('getCurrentUser after restart', async () => (await kuzzle.auth.getCurrentUser())._id);
  kuzzle.disconnect();
})();
