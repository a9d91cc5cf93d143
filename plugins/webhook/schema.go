package webhook

// configSchema is the JSON Schema of the `config` block (see Config).
const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "webhook sink config",
  "type": "object",
  "additionalProperties": false,
  "required": ["url"],
  "oneOf": [{"required": ["secret"]}, {"required": ["secrets"]}],
  "properties": {
    "url": {"type": "string", "format": "uri", "pattern": "^https?://", "description": "Receiver URL (http or https)."},
    "secret": {"type": "string", "pattern": "^whsec_", "description": "Standard Webhooks signing secret."},
    "secrets": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^whsec_"}, "description": "Several secrets during a rotation; each signs every message."},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Extra request headers; cannot replace content-type or webhook-* headers."},
    "timeout": {"type": "string", "default": "10s", "description": "Bound on one attempt (Go duration)."},
    "max_in_flight": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 64, "description": "Concurrent requests to the URL."},
    "retry": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "schedule": {"type": "array", "items": {"type": "string"}, "default": ["5s", "5m", "30m", "2h", "5h", "10h", "10h"], "description": "Waits before each retry; len+1 attempts in all."}
      }
    },
    "allow_private_networks": {"type": "boolean", "default": false, "description": "Allow loopback, private, link-local and metadata addresses."},
    "max_retry_after": {"type": "string", "default": "1h", "description": "Cap on a receiver's Retry-After."}
  }
}`
