// Renders the OpenAPI document with the vendored Swagger UI: a file, not inline script (CSP).
// Loaded with `defer` after the bundle, so the page is parsed and SwaggerUIBundle defined.
window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapiUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
