"""`python -m hub.config > config/hub.schema.json`: print the config file's JSON schema."""

from __future__ import annotations

import json

from hub.config.loader import json_schema

print(json.dumps(json_schema(), indent=2, sort_keys=True))
