// Swagger UI on this service's own document; a file, not an inline script, so the page's
// Content-Security-Policy can say script-src 'self'.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // never ask swagger.io to validate: nothing leaves the machine
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
