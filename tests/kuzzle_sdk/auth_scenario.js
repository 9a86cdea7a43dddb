// Kuzzle's own JS SDK against the gateway's auth, API key and server actions, over HTTP or
// WebSocket. Usage: node auth_scenario.js PORT [http|websocket]. Prints one JSON line per step.
const { Kuzzle, Http, WebSocket } = require('kuzzle-sdk');

const port = Number(process.argv[2]);
const Protocol = process.argv[3] === 'websocket' ? WebSocket : Http;
const kuzzle = new Kuzzle(new Protocol('127.0.0.1', { port }));

async function step(name, fn) {
  try {
    const value = await fn();
    console.log(JSON.stringify({ step: name, ok: true, value: value === undefined ? null : value }));
  } catch (error) {
    console.log(JSON.stringify({ step: name, ok: false, error: { id: error.id, status: error.status, message: error.message } }));
  }
}

const alice = { username: 'alice', password: 'alice-password' };

(async () => {
  await step('connect', () => kuzzle.connect());
  await step('anonymous createApiKey', () => kuzzle.auth.createApiKey('nope'));
  // the generic query: GET /_login/local?username=..&password=..
  await step('query login', async () => typeof (await kuzzle.query({ controller: 'auth', action: 'login', strategy: 'local', ...alice })).result.jwt);
  await step('login', () => kuzzle.auth.login('local', alice));
  let key;
  await step('createApiKey', async () => {
    key = await kuzzle.auth.createApiKey('sdk key', { _id: 'sdk-key' });
    return { _id: key._id, userId: key._source.userId, expiresAt: key._source.expiresAt, token: typeof key._source.token };
  });
  await step('searchApiKeys', async () => {
    const found = await kuzzle.auth.searchApiKeys({ match: { description: 'sdk' } });
    return { total: found.total, ids: found.hits.map((h) => h._id), tokens: found.hits.filter((h) => 'token' in h._source).length };
  });
  await step('searchApiKeys koncorde', async () => (await kuzzle.auth.searchApiKeys({ equals: { description: 'sdk key' } }, { lang: 'koncorde' })).total);
  await step('checkRights allowed', () => kuzzle.auth.checkRights({ controller: 'auth', action: 'logout' }));
  await step('checkRights denied', () => kuzzle.auth.checkRights({ controller: 'security', action: 'createUser' }));
  await step('checkRights missing', () => kuzzle.auth.checkRights({ action: 'logout' }));
  let single;
  await step('createToken', async () => {
    single = (await kuzzle.query({ controller: 'auth', action: 'createToken', expiresIn: 60000, singleUse: true })).result;
    return single.singleUse;
  });
  const aliceJwt = kuzzle.jwt;
  await step('use single token', async () => { kuzzle.jwt = single.token; return (await kuzzle.auth.getCurrentUser())._id; });
  await step('reuse single token', async () => (await kuzzle.auth.getCurrentUser())._id);
  await step('use api key', async () => { kuzzle.jwt = key._source.token; return (await kuzzle.auth.getCurrentUser())._id; });
  await step('checkToken api key', async () => (await kuzzle.auth.checkToken(key._source.token)).valid);
  kuzzle.jwt = aliceJwt;
  await step('deleteApiKey', () => kuzzle.auth.deleteApiKey('sdk-key'));
  await step('deleteApiKey unknown', () => kuzzle.auth.deleteApiKey('sdk-key'));
  await step('use deleted key', async () => { kuzzle.jwt = key._source.token; return (await kuzzle.auth.getCurrentUser())._id; });
  kuzzle.jwt = undefined;
  await step('admin login', () => kuzzle.auth.login('local', { username: 'admin', password: 'admin-password' }));
  await step('security createApiKey', async () => (await kuzzle.security.createApiKey('alice', 'by admin', { _id: 'adm' }))._source.userId);
  await step('security searchApiKeys', async () => (await kuzzle.security.searchApiKeys('alice', {})).hits.map((h) => h._id));
  await step('security deleteApiKey', () => kuzzle.security.deleteApiKey('alice', 'adm'));
  await step('security createApiKey unknown user', () => kuzzle.security.createApiKey('nobody', 'x'));
  await step('server info', async () => {
    const info = (await kuzzle.server.info()).serverInfo;
    return { version: typeof info.kuzzle.version, python: typeof info.kuzzle.pythonVersion, storage: info.services.storage.status };
  });
  await step('server capabilities', async () => (await kuzzle.server.capabilities()).limits.loginsPerSecond);
  await step('server getConfig', async () => JSON.stringify(await kuzzle.server.getConfig()));
  kuzzle.disconnect();
})();
