"""The booking-platform contract: request signatures (inbound check, outbound signing), the
HTTP route registry with its request/response models, and the OpenAPI document built from it."""
