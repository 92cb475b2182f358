"""MCP federation hub: one MCP endpoint over a fleet of MCP servers."""
