"""Sluice's described API: the OpenAPI 3.1 document (document.py, Flask-free) at
GET /openapi.json, and Swagger UI at GET /docs (views.py), offline from the package."""

from preprocess.openapi.document import document

__all__ = ["document"]
