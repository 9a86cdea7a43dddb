// Renders the gateway's own OpenAPI document (GET /_openapi, next to this page) with Swagger UI.
// A separate file rather than an inline script: the page's Content-Security-Policy allows only
// scripts from the gateway itself.
//
// The document is read with the visitor's rights. When they may not read it (a gateway closed
// to anonymous users answers 401), the page shows a sign-in document instead of an error: the
// Authorize button and the login route, with what to do. A token authorized on the page (typed
// in Authorize, or answered by a login tried from the page) reloads the document with it. The
// token stays in the page's memory: nothing is stored, a reload of the page forgets it.
window.addEventListener("load", function () {
  "use strict";
  var DOC = new URL("../_openapi", window.location.href).href;
  var token = null;
  var signingIn = false;
  var forgetting = false;
  var ui = null;

  function read() {
    var headers = { Accept: "application/json" };
    if (token) {
      headers.Authorization = "Bearer " + token;
    }
    return fetch(DOC, { credentials: "same-origin", headers: headers }).then(
      function (answer) {
        return answer.json().then(
          function (body) { return { status: answer.status, body: body }; },
          function () { return { status: answer.status, body: null }; });
      },
      function (error) { return { status: 0, body: { error: { message: String(error) } } }; });
  }

  function reason(found) {
    var error = found.body && found.body.error;
    var text = error && error.message ? error.message.replace(/[.\s]+$/, "") : "no answer";
    return found.status ? found.status + " " + text : text;
  }

  // What a visitor who may not read the document sees: how to get and give a token.
  function signIn(found) {
    var refused = token
      ? "The token you authorized was refused (" + reason(found) + "): authorize another one."
      : "`GET /_openapi` answered " + reason(found) + ": this gateway shows its API only " +
        "to users whose rights include `server:openapi`, and you are not logged in.";
    return {
      openapi: "3.1.0",
      info: {
        title: "Log in to see this gateway's API",
        version: "sanic-gateway",
        description: refused + "\n\n" +
          "- **Authorize** (the button on the right) with a token: the `jwt` that " +
          "`POST /_login/local` answers, or an API key. The API is then loaded with it, " +
          "and the requests you try from this page carry it.\n" +
          "- Or log in here: open `POST /_login/{strategy}` below, **Try it out** with your " +
          "`username` and `password`, **Execute**. The token it answers is authorized " +
          "for you. With `cookieAuth` true, the browser keeps it in its `authToken` cookie " +
          "instead, and the API is loaded with that.\n\n" +
          "The page keeps the token in memory only: reloading the page forgets it.",
      },
      paths: {
        "/_login/{strategy}": {
          post: {
            operationId: "auth:login",
            summary: "log in: answers a token (auth:login)",
            tags: ["auth"],
            parameters: [
              { name: "strategy", in: "path", required: true,
                schema: { type: "string", default: "local" } },
              { name: "cookieAuth", in: "query", required: false,
                description: "true: the token goes in an HttpOnly authToken cookie",
                schema: { type: "boolean" } },
            ],
            requestBody: {
              required: true,
              content: { "application/json": {
                schema: { type: "object", properties: {
                  username: { type: "string" }, password: { type: "string" } } },
                example: { username: "admin", password: "" } } },
            },
            responses: { 200: { description: "`result.jwt`: the token" },
                         401: { description: "wrong credentials" } },
          },
        },
      },
      components: { securitySchemes: {
        bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT",
                  description: "a token from auth:login, or an API key" } } },
    };
  }

  function documentOf(found) {
    var readable = found.status === 200 && found.body && found.body.openapi;
    signingIn = !readable;
    return readable ? found.body : signIn(found);
  }

  function show(found) {
    var doc = documentOf(found);
    if (signingIn && token) {  // refused: Authorize asks for another token
      token = null;
      forgetting = true;
      ui.authActions.logout(["bearer"]);
      forgetting = false;
    }
    ui.specActions.updateSpec(JSON.stringify(doc));
  }

  function reload() {
    return read().then(show);
  }

  // Authorize and Logout of the bearer token reload the document with (or without) it.
  function TokenReloads() {
    return { statePlugins: { auth: { wrapActions: {
      authorize: function (original, system) {
        return function (payload) {
          var done = original(payload);
          var bearer = payload && payload.bearer;
          var value = bearer && (typeof bearer.get === "function" ? bearer.get("value")
                                                                  : bearer.value);
          if (value) {
            token = value;
            system.authActions.showDefinitions(false);
            reload();
          }
          return done;
        };
      },
      logout: function (original) {
        return function (names) {
          var done = original(names);
          if (!forgetting && names && typeof names.indexOf === "function"
              && names.indexOf("bearer") >= 0) {
            token = null;
            reload();
          }
          return done;
        };
      },
    } } } };
  }

  // A login tried from the sign-in document: its token is authorized (or its cookie used).
  function afterLogin(response) {
    if (signingIn && response.ok && /\/_login\/[^/?#]+/.test(response.url)) {
      var jwt = response.body && response.body.result && response.body.result.jwt;
      if (jwt) {
        ui.authActions.authorize({ bearer: {
          name: "bearer", value: jwt,
          schema: { type: "http", scheme: "bearer", bearerFormat: "JWT" } } });
      } else {
        reload();  // cookieAuth: the browser sends the cookie from now on
      }
    }
    return response;
  }

  read().then(function (found) {
    ui = SwaggerUIBundle({
      spec: documentOf(found),
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      withCredentials: true,
      persistAuthorization: false,
      responseInterceptor: afterLogin,
      plugins: [TokenReloads],
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
    window.ui = ui;
  });
});
