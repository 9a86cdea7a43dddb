// Kuzzle's own JS SDK against the gateway, over HTTP. Usage: node scenario.js PORT
// Prints one JSON line per step: {"step": ..., "ok": true, "value": ...} or {"step", "ok": false, "error"}.
const { Kuzzle, Http } = require('kuzzle-sdk');

const port = Number(process.argv[2]);
const kuzzle = new Kuzzle(new Http('127.0.0.1', { port }));
kuzzle.on('networkError', (error) => console.log(JSON.stringify({ step: 'networkError', ok: false, error: String(error) })));

async function step(name, fn) {
  try {
    const value = await fn();
    console.log(JSON.stringify({ step: name, ok: true, value: value === undefined ? null : value }));
  } catch (error) {
    console.log(JSON.stringify({ step: name, ok: false, error: { id: error.id, status: error.status, message: error.message } }));
  }
}

(async () => {
  await step('connect', () => kuzzle.connect());
  await step('now', () => kuzzle.server.now());
  await step('anonymous create', () => kuzzle.query({ controller: 'notes/notes', action: 'create', body: { text: 'from the SDK' } }));
  await step('login', () => kuzzle.auth.login('local', { username: 'alice', password: 'alice-password' }));
  await step('checkToken', async () => (await kuzzle.auth.checkToken()).valid);
  await step('getCurrentUser', async () => (await kuzzle.auth.getCurrentUser())._id);
  await step('create', async () => (await kuzzle.query({ controller: 'notes/notes', action: 'create', body: { text: 'from the SDK' } })).result._source.text);
  await step('list', async () => (await kuzzle.query({ controller: 'notes/notes', action: 'list' })).result.total);
  await step('getMyRights', async () => (await kuzzle.auth.getMyRights()).length > 0);
  await step('createMyCredentials', () => kuzzle.auth.createMyCredentials('apikey', { key: 'sdk-key-0123456789abcdefgh' }));
  await step('logout', () => kuzzle.auth.logout());
  await step('login apikey', async () => typeof (await kuzzle.auth.login('apikey', { key: 'sdk-key-0123456789abcdefgh' })));
  await step('wrong password', () => kuzzle.auth.login('local', { username: 'alice', password: 'nope' }));
  kuzzle.disconnect();
})();
