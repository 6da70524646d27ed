"""The access-provider API (SPEC §6): its routes, the shapes it validates and answers with,
the OpenAPI document made from them, and how a filing is described to its provider."""
