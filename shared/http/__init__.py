"""The HTTP layer, framework-free: what every route shares, and the registry of the routes.

- :mod:`answers` — ``HttpAnswer`` (what a service answers), ``Refusal`` and the refusals every
  route uses (``refuse``, ``unavailable``), the error bodies;
- :mod:`requests` — the checks every request passes, in one order with one wording
  (``gate``: size 413, organization 404), path ids, JSON bodies (strict: camelCase fields,
  no key twice), RFC 3339 query instants, and ``SignedRequest``;
- :mod:`contract` — the contract's response and admin request bodies and header names;
- :mod:`routes` — every route calbridge serves (method, path, auth level, parameters, bodies);
  the trigger decorators in ``functions/`` take theirs from here;
- :mod:`openapi` — the OpenAPI document generated from the registry.

Services (``shared.booking``, ``shared.admin``) return ``HttpAnswer``s, so their tests need no
Functions objects; ``functions/http_functions.py`` turns them into ``func.HttpResponse``. This
package imports the domain models and nothing of the services.
"""
