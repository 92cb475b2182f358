"""Print a fresh secrets.env for deploy/kubernetes (kustomize's secretGenerator reads it).

    (umask 077; python3 secrets_env.py > secrets.env)

Every value is 32 random bytes as 64 hex digits: long enough for the cluster key (at least 32
bytes) and the API keys (at least 16 characters), and URL-safe for the Redis password, which
goes into the hub's Redis URL.
"""

from __future__ import annotations

import secrets

NAMES = ("MCPHUB_CLUSTER_KEY", "MCPHUB_API_KEY", "MCPHUB_METRICS_KEY", "REDIS_PASSWORD")

if __name__ == "__main__":
    for name in NAMES:
        print(f"{name}={secrets.token_hex(32)}")
