// Renders the gateway's own OpenAPI document (GET /_openapi, next to this page) with Swagger UI.
// A separate file rather than an inline script: the page's Content-Security-Policy allows only
// scripts from the gateway itself.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../_openapi", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    withCredentials: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
