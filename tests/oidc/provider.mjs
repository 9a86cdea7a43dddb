// A real OpenID Connect provider for the tests: oauth2-mock-server on loopback.
// Usage: node tests/oidc/provider.mjs PORT
// POST /_mode {"mode": "..."} changes how the next logins go:
//   normal | wrong_audience | expired | bad_signature | denied | no_id_token | token_error
// and "sub" the user's id; with wrong_audience, "azp" (optional) names the authorized party.
import { OAuth2Server, Events } from 'oauth2-mock-server';

const port = Number(process.argv[2] || 0);
const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
let mode = 'normal';
let subject = 'user-1';
let azp = null;

function setMode(req, res) {
  const body = req.body || {};
  mode = body.mode || 'normal';
  subject = body.sub || subject;
  azp = body.azp || null;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ mode, subject, azp }));
}

if (typeof server.service.addRoute === 'function') {
  // 9.x: addRoute has already read and parsed the body (JSON or form) into req.body
  server.service.addRoute('POST', '/_mode', setMode);
} else {
  // 8.x (the version pinned for Node 20): an Express app whose json() parser runs first;
  // the route goes before its final 404 handler and error handler
  const app = server.service.requestHandler;
  app.post('/_mode', setMode);
  const stack = app.router.stack;
  stack.splice(stack.length - 3, 0, stack.pop());
}

server.service.on(Events.BeforeTokenSigning, (token) => {
  const now = Math.floor(Date.now() / 1000);
  token.payload.sub = subject;
  token.payload.email = `${subject}@example.test`;
  token.payload.name = `User ${subject}`;
  if (mode === 'wrong_audience') {
    token.payload.aud = 'someone-else';
    if (azp) token.payload.azp = azp;
  }
  if (mode === 'expired') { token.payload.iat = now - 7200; token.payload.exp = now - 3600; }
});

server.service.on(Events.BeforeResponse, (response) => {
  if (mode === 'bad_signature' && response.body.id_token) {
    const [h, p, s] = response.body.id_token.split('.');
    response.body.id_token = [h, p, s.slice(0, -4) + (s.endsWith('AAAA') ? 'BBBB' : 'AAAA')].join('.');
  }
  if (mode === 'no_id_token') delete response.body.id_token;
  if (mode === 'token_error') { response.body = { error: 'invalid_grant' }; response.statusCode = 400; }
});

server.service.on(Events.BeforeUserinfo, (response) => {
  response.body = { sub: subject, email: `${subject}@example.test`, name: `User ${subject}` };
});

server.service.on(Events.BeforeAuthorizeRedirect, (redirect) => {
  if (mode === 'denied') {
    redirect.url.searchParams.delete('code');
    redirect.url.searchParams.set('error', 'access_denied');
    redirect.url.searchParams.set('error_description', 'the user said no');
  }
});

await server.start(port, '127.0.0.1');
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
console.log(`READY ${server.issuer.url}`);
process.on('SIGTERM', async () => { await server.stop(); process.exit(0); });
