"""A stdio MCP server on the official Python SDK (`MCPServer`) with one tool, `write_file`.

The SDK's stdio reads with universal newlines (a bare `\r` ends a line), as servers on Java's
`BufferedReader` or .NET's `ReadLine` do; the end-to-end tests check what reaches such a server
through `zt mcp-gateway`.
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("writer")


@server.tool()
def write_file(path: str, content: str) -> str:
    """Writes `content` to `path`."""
    with open(path, "w", encoding="utf-8") as file:
        file.write(content)
    return f"wrote {path}"


if __name__ == "__main__":
    server.run()
