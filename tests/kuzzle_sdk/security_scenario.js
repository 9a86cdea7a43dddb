// Kuzzle's own JS SDK driving the security controller of the gateway, over HTTP or WebSocket.
// Usage: node security_scenario.js PORT [http|websocket]. Prints one JSON line per step.
const { Kuzzle, Http, WebSocket } = require('kuzzle-sdk');

const port = Number(process.argv[2]);
const Protocol = process.argv[3] === 'websocket' ? WebSocket : Http;
const kuzzle = new Kuzzle(new Protocol('127.0.0.1', { port }));
kuzzle.on('networkError', (error) => console.log(JSON.stringify({ step: 'networkError', ok: false, error: String(error) })));

async function step(name, fn) {
  try {
    const value = await fn();
    console.log(JSON.stringify({ step: name, ok: true, value: value === undefined ? null : value }));
  } catch (error) {
    console.log(JSON.stringify({ step: name, ok: false, error: { id: error.id, status: error.status, message: error.message } }));
  }
}

const sec = kuzzle.security;
const ids = (result) => result.hits.map((h) => h._id).sort();

(async () => {
  await step('connect', () => kuzzle.connect());
  await step('login', () => kuzzle.auth.login('local', { username: 'admin', password: 'admin-password' }));
  await step('checkRights allowed', () => sec.checkRights('alice', { controller: 'rec/api', action: 'echo' }));
  await step('checkRights denied', () => sec.checkRights('alice', { controller: 'security', action: 'createUser' }));
  await step('checkRights unknown user', () => sec.checkRights('nobody', { controller: 'auth', action: 'login' }));
  await step('createRestrictedUser', async () => (await sec.createRestrictedUser(
    { content: { name: 'Rita' }, credentials: { local: { username: 'rita', password: 'rita-password' } } }, 'rita')).profileIds);
  await step('createRestrictedUser profileIds', () => sec.createRestrictedUser({ content: { profileIds: ['admin'] } }, 'x'));
  await step('upsertUser', async () => (await kuzzle.query({ controller: 'security', action: 'upsertUser', _id: 'ursula',
    body: { content: { profileIds: ['readers'], name: 'Ursula' }, default: { lang: 'fr' } } })).result._source);
  await step('getCredentialFields', () => sec.getCredentialFields('local'));
  await step('getAllCredentialFields', () => sec.getAllCredentialFields());
  await step('getUserMapping', () => sec.getUserMapping());
  await step('updateUserMapping', () => sec.updateUserMapping({ properties: { name: { type: 'keyword' } } }));
  await step('searchUsers term', async () => ids(await sec.searchUsers({ query: { term: { name: 'Rita' } } })));
  await step('searchUsers koncorde', async () => ids(await sec.searchUsers({ query: { equals: { name: 'Ursula' } } }, { lang: 'koncorde' })));
  await step('searchUsers unknown keyword', () => sec.searchUsers({ query: { equals: { name: 'Ursula' } } }, { lang: 'elasticsearch' }));
  await step('searchUsers scroll', async () => {
    let page = await sec.searchUsers({ query: { terms: { profileIds: ['default', 'readers'] } } }, { size: 1, scroll: '10s' });
    const seen = [];
    while (page) {
      seen.push(...page.hits.map((u) => u._id));
      page = await page.next();
    }
    return seen.sort();
  });
  await step('searchUsers sorted pages', async () => {
    let page = await sec.searchUsers({ query: { match_all: {} }, sort: [{ _id: 'desc' }] }, { size: 2 });
    const seen = [];
    while (page) {
      seen.push(...page.hits.map((u) => u._id));
      page = await page.next();
    }
    return seen;
  });
  await step('searchProfiles scroll', async () => {
    let page = await sec.searchProfiles({ query: { term: { 'policies.roleId': 'reader' } } }, { size: 1, scroll: '10s' });
    const seen = [];
    while (page) {
      seen.push(...page.hits.map((p) => p._id));
      page = await page.next();
    }
    return seen.sort();
  });
  await step('searchRoles controllers', async () => ids(await sec.searchRoles({ controllers: ['rec/api'] }, { size: 100 })));
  await step('searchUsersByCredentials', async () => (await kuzzle.query({ controller: 'security', action: 'searchUsersByCredentials',
    strategy: 'local', body: { query: { term: { username: 'rita' } } } })).result.hits);
  await step('createProfile tags', async () => (await sec.createProfile('tagged', { policies: [{ roleId: 'reader' }], tags: ['ops'] })).tags);
  await step('createRole unknown controller', () => sec.createRole('bad', { controllers: { nope: { actions: { '*': true } } } }));
  await step('createRole unknown action', () => sec.createRole('bad', { controllers: { auth: { actions: { logn: true } } } }));
  await step('createRole force', async () => (await sec.createRole('later', { controllers: { 'other/api': { actions: { x: true } } } }, { force: true }))._id);
  await step('updateUser tagged', async () => (await sec.updateUser('rita', { profileIds: ['default', 'tagged'] })).profileIds);
  await step('deleteProfile in use', () => sec.deleteProfile('tagged'));
  await step('deleteProfile remove', () => sec.deleteProfile('tagged', { onAssignedUsers: 'remove' }));
  await step('rita profiles', async () => (await sec.getUser('rita')).profileIds);
  await step('getUserStrategies anonymous', () => sec.getUserStrategies('-1'));
  await step('mGetUsers', async () => (await sec.mGetUsers(['admin', 'alice'])).map((u) => u._id));
  await step('refresh', () => sec.refresh('users'));
  await step('getRoleMapping', async () => Object.keys((await sec.getRoleMapping()).mapping).sort());
  await step('getProfileMapping', async () => Object.keys((await sec.getProfileMapping()).mapping).sort());
  await step('revokeTokens', async () => (await kuzzle.query({ controller: 'security', action: 'revokeTokens', _id: 'alice' })).result);
  await step('mDeleteUsers', () => sec.mDeleteUsers(['rita', 'ursula']));
  await step('mDeleteUsers partial', () => sec.mDeleteUsers(['alice', 'ghost']));
  await step('mDeleteRoles', () => sec.mDeleteRoles(['later']));
  kuzzle.disconnect();
})();
