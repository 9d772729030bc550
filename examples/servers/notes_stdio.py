"""An example MCP server over stdio: a notebook kept in memory.

Notes live as long as the process. Run it with::

    python examples/servers/notes_stdio.py

(or let a client or gateway launch it). Tools: ``add_note(title, body)``, ``list_notes()``,
``read_note(title)``; prompt: ``summarize_notes``; resource template: ``notes://{title}``.
Stdout carries only the protocol; anything else goes to stderr.
"""

from __future__ import annotations

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

notes: dict[str, str] = {
    "welcome": "This notebook lives in memory. Add notes with add_note; they vanish on exit.",
}

server = MCPServer(
    "notes",
    instructions="A small in-memory notebook. Titles are unique; adding a title again replaces its note.",
    log_level="WARNING",
)


@server.tool(description="Add a note, or replace the note with the same title.")
def add_note(title: str, body: str) -> str:
    title = title.strip()
    if not title:
        raise ToolError("A note needs a title.")
    replaced = title in notes
    notes[title] = body
    return f"{'Replaced' if replaced else 'Added'} note {title!r}."


@server.tool(description="The titles of all notes, oldest first.")
def list_notes() -> list[str]:
    return list(notes)


@server.tool(description="The body of the note with this title.")
def read_note(title: str) -> str:
    if title not in notes:
        raise ToolError(f"No note titled {title!r}. Titles: {', '.join(notes) or '(none)'}")
    return notes[title]


@server.prompt(description="Ask the model to summarize every note in the notebook.")
def summarize_notes() -> str:
    if not notes:
        return "The notebook is empty. Say so in one sentence."
    listing = "\n\n".join(f"## {title}\n{body}" for title, body in notes.items())
    return f"Summarize these notes in a few bullet points, one per theme:\n\n{listing}"


@server.resource("notes://{title}", name="note", mime_type="text/plain", description="One note, by title.")
def note(title: str) -> str:
    if title not in notes:
        raise ResourceError(f"No note titled {title!r}")
    return notes[title]


if __name__ == "__main__":
    server.run("stdio")
